"""The node's work consumer: one set of settings, for the coordinator that creates it and
the node that keeps its assignments alive."""

from __future__ import annotations

from dataclasses import replace

import pytest
from nats.js.api import AckPolicy, DeliverPolicy

from eventsrc.errors import InvalidIdError
from eventsrc.events.subjects import CLUSTER_SUBJECT, assignments_filter
from eventsrc.node.agent import KEEP_ALIVE_S
from eventsrc.store.assignments import (
    ASSIGNMENT_ACK_WAIT_S,
    assignment_consumer,
    assignment_consumer_name,
    carries_elections,
)


def test_the_consumer_is_named_and_filtered_after_its_node() -> None:
    config = assignment_consumer("gpu-1")
    assert config.durable_name == assignment_consumer_name("gpu-1") == "node-gpu-1"
    # Its assignments, and the leader elections its fence follows in stream order.
    assert config.filter_subjects == [assignments_filter("gpu-1"), CLUSTER_SUBJECT]
    assert carries_elections(config)
    assert config.ack_policy == AckPolicy.EXPLICIT
    assert config.deliver_policy == DeliverPolicy.NEW
    assert config.max_deliver == -1  # an assignment is never dropped for its redeliveries
    assert config.ack_wait == ASSIGNMENT_ACK_WAIT_S


def test_a_consumer_made_before_elections_came_along_is_told_apart() -> None:
    older = replace(
        assignment_consumer("gpu-1"),
        filter_subject=assignments_filter("gpu-1"),
        filter_subjects=None,
    )
    assert not carries_elections(older)


def test_running_assignments_are_marked_well_within_the_ack_wait() -> None:
    assert 2 * KEEP_ALIVE_S < ASSIGNMENT_ACK_WAIT_S


@pytest.mark.parametrize("node_id", ["a/b", "a\\b"])
def test_an_id_jetstream_refuses_in_a_consumer_name_is_refused(node_id: str) -> None:
    with pytest.raises(InvalidIdError, match="consumer name"):
        assignment_consumer(node_id)

"""Pure rules of membership a new user meets first: a drain holds across a node's
re-joins until undone, and a node id held by a live process is not taken over."""

from __future__ import annotations

from datetime import timedelta

import pytest

from eventsrc.commands.base import Origin
from eventsrc.commands.registry import in_use_message, live_holder
from eventsrc.commands.tasks import DrainNode, decide_drain
from eventsrc.events import NodeDrainCancelled, NodeDrainRequested, decode
from eventsrc.projections.state import ClusterState
from tests.factories import T0, envelope
from tests.projections.builders import Fold, joined, leader, left, node_expired


def _decide(state: ClusterState, command: DrainNode) -> tuple[object, ...]:
    return decide_drain(state, command, stamp=Origin(epoch=1).stamp(T0))


def test_a_drain_holds_across_rejoins_until_undrained() -> None:
    run = Fold()
    run.fold(leader(1), joined("n1", "i1"))
    (drain,) = _decide(run.state, DrainNode(node_id="n1"))
    assert isinstance(drain, NodeDrainRequested)
    run.fold(drain)
    assert run.state.nodes["n1"].state == "draining"

    run.fold(left("n1", "i1"), joined("n1", "i2"))
    assert run.state.nodes["n1"].state == "draining", "a restart must not undo a drain"
    run.fold(node_expired("n1", "i2"), joined("n1", "i3"))
    assert run.state.nodes["n1"].state == "draining"
    assert _decide(run.state, DrainNode(node_id="n1")) == ()  # already drained

    (undrain,) = _decide(run.state, DrainNode(node_id="n1", off=True))
    assert isinstance(undrain, NodeDrainCancelled)
    run.fold(undrain)
    assert run.state.nodes["n1"].state == "alive" and not run.state.nodes["n1"].drained
    assert _decide(run.state, DrainNode(node_id="n1", off=True)) == ()  # nothing to undo


def test_an_undrain_of_a_node_that_is_not_drained_is_counted_late() -> None:
    run = Fold()
    run.fold(leader(1), joined("n1"))
    run.fold(NodeDrainCancelled(**envelope("coordinator", epoch=1), node_id="n1"))
    assert run.state.problems.late == 1
    assert run.state.nodes["n1"].state == "alive"


# (what the id's member did, seconds since its last sign of life, newcomer replaces it?,
#  refused?)
CASES = [
    ("alive", 1.0, False, True),
    ("alive", 29.0, False, True),
    ("alive", 31.0, False, False),  # silent past stale_after: dead, may be taken over
    ("alive", 1.0, True, False),  # the newcomer found its pid gone on the same host
    ("left", 1.0, False, False),
    ("expired", 1.0, False, False),
]


@pytest.mark.parametrize(("member", "silent_s", "replaces", "refused"), CASES)
def test_a_live_holder_keeps_its_id(
    member: str, silent_s: float, replaces: bool, refused: bool
) -> None:
    run = Fold()
    run.fold(leader(1), joined("n1", "old"))
    if member == "left":
        run.fold(left("n1", "old"))
    if member == "expired":
        run.fold(node_expired("n1", "old"))
    joined_at = run.state.nodes["n1"].joined_at
    assert joined_at is not None
    holder = live_holder(
        run.state,
        node_id="n1",
        incarnation="new",
        replaces="old" if replaces else "",
        now=joined_at + timedelta(seconds=silent_s),
        stale_after_s=30.0,
    )
    assert (holder is not None) == refused
    if holder is not None:
        message = in_use_message(run.state, holder, stale_after_s=30.0)
        assert message.startswith("node id n1 is in use by a live process on host")
        assert "--node-id" in message


def test_the_same_process_saying_hello_again_is_not_refused() -> None:
    run = Fold()
    run.fold(leader(1), joined("n1", "i1"))
    assert (
        live_holder(
            run.state, node_id="n1", incarnation="i1", replaces="", now=T0, stale_after_s=30.0
        )
        is None
    )


def test_a_drain_written_before_drains_held_ends_at_the_next_join() -> None:
    # A version 1 drain as an older eventsrc stored it: it meant "until the node leaves".
    old = NodeDrainRequested(**envelope("coordinator", epoch=1), node_id="n1")
    raw = old.model_dump_json(exclude={"until_undrained"}).replace(
        '"schema_version":2', '"schema_version":1'
    )
    upcast = decode(raw.encode())
    assert isinstance(upcast, NodeDrainRequested) and upcast.schema_version == 2
    assert upcast.until_undrained is False

    run = Fold()
    run.fold(leader(1), joined("n1", "i1"), upcast)
    assert run.state.nodes["n1"].state == "draining"
    run.fold(left("n1", "i1"), joined("n1", "i2"))
    assert run.state.nodes["n1"].state == "alive"

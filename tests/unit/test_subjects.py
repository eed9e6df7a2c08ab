"""The subject and filter functions, the one place subjects are made."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from eventsrc.events import aggregate_of
from eventsrc.events.subjects import (
    ALL_NODES_FILTER,
    ALL_SUBMISSIONS_FILTER,
    CLUSTER_SUBJECT,
    EVENTS_FILTER,
    HEARTBEATS_FILTER,
    assignments_filter,
    bench_raw_subject,
    from_node_subject,
    heartbeat_subject,
    is_heartbeat_subject,
    lifecycle_subject,
    node_subject,
    reports_filter,
    skill_subject,
    subject_matches,
    task_filter,
    task_id_of,
    to_node_subject,
)
from eventsrc.ports import EVENTS_STREAM, HEARTBEATS_STREAM, stream_filter
from eventsrc.store import stream_for

MADE: list[tuple[Callable[[], str], str]] = [
    (lambda: node_subject("n1"), "evt.node.n1"),
    (lambda: heartbeat_subject("n1"), "hb.n1"),
    (lambda: skill_subject("python"), "evt.skill.python"),
    (lambda: task_filter("t1"), "evt.task.t1.>"),
    (lambda: lifecycle_subject("t1"), "evt.task.t1.lifecycle"),
    (lambda: to_node_subject("t1", "n1"), "evt.task.t1.to.n1"),
    (lambda: from_node_subject("t1", "n1"), "evt.task.t1.from.n1"),
    (lambda: assignments_filter("n1"), "evt.task.*.to.n1"),
    (lambda: reports_filter("n1"), "evt.task.*.from.n1"),
    (lambda: bench_raw_subject("evt.task.t1.lifecycle"), "evt.bench.raw.t1.lifecycle"),
    (lambda: bench_raw_subject(task_filter("t1")), "evt.bench.raw.t1.>"),
]


@pytest.mark.parametrize(("make", "expected"), MADE)
def test_each_function_makes_its_documented_subject(make: Callable[[], str], expected: str) -> None:
    assert make() == expected


def test_the_constants_keep_their_values() -> None:
    assert (EVENTS_FILTER, HEARTBEATS_FILTER) == ("evt.>", "hb.>")
    assert CLUSTER_SUBJECT == "evt.cluster"
    assert ALL_NODES_FILTER == "evt.node.*"
    assert ALL_SUBMISSIONS_FILTER == "evt.task.*.lifecycle"


@pytest.mark.parametrize(
    ("subject", "task_id"),
    [
        ("evt.task.t1.lifecycle", "t1"),
        ("evt.task.t1.to.n1", "t1"),
        ("evt.task.t1.from.n1", "t1"),
        ("evt.task.t1.>", "t1"),
        ("evt.task.t-1_x", "t-1_x"),
        ("evt.cluster", None),
        ("evt.node.n1", None),
        ("evt.skill.evt", None),
        ("hb.n1", None),
        ("evt.tasks.t1.lifecycle", None),
    ],
)
def test_task_id_of_reads_the_token_after_the_task_prefix(
    subject: str, task_id: str | None
) -> None:
    assert task_id_of(subject) == task_id


@pytest.mark.parametrize("task_id", ["t1", "a-b", "x" * 80])
def test_task_id_of_inverts_every_task_subject(task_id: str) -> None:
    for subject in (
        task_filter(task_id),
        lifecycle_subject(task_id),
        to_node_subject(task_id, "n1"),
        from_node_subject(task_id, "n1"),
    ):
        assert task_id_of(subject) == task_id
        assert aggregate_of(subject) == task_filter(task_id)


@pytest.mark.parametrize(
    "subject", [CLUSTER_SUBJECT, node_subject("n1"), skill_subject("s"), heartbeat_subject("n1")]
)
def test_other_subjects_are_their_own_aggregate(subject: str) -> None:
    assert aggregate_of(subject) == subject


def test_a_task_aggregate_covers_its_subjects_and_no_other_task() -> None:
    aggregate = task_filter("t1")
    assert subject_matches(aggregate, lifecycle_subject("t1"))
    assert subject_matches(aggregate, to_node_subject("t1", "n1"))
    assert subject_matches(aggregate, from_node_subject("t1", "n1"))
    assert not subject_matches(aggregate, lifecycle_subject("t10"))
    assert not subject_matches(aggregate, CLUSTER_SUBJECT)


def test_node_filters_cover_that_node_only() -> None:
    assert subject_matches(assignments_filter("n1"), to_node_subject("t1", "n1"))
    assert not subject_matches(assignments_filter("n1"), to_node_subject("t1", "n2"))
    assert not subject_matches(assignments_filter("n1"), from_node_subject("t1", "n1"))
    assert subject_matches(reports_filter("n1"), from_node_subject("t1", "n1"))
    assert not subject_matches(reports_filter("n1"), to_node_subject("t1", "n1"))
    assert subject_matches(ALL_NODES_FILTER, node_subject("n1"))
    assert subject_matches(ALL_SUBMISSIONS_FILTER, lifecycle_subject("t1"))
    assert not subject_matches(ALL_SUBMISSIONS_FILTER, to_node_subject("t1", "n1"))


def test_streams_and_their_filters_agree() -> None:
    assert stream_filter(EVENTS_STREAM) == EVENTS_FILTER
    assert stream_filter(HEARTBEATS_STREAM) == HEARTBEATS_FILTER
    for subject in (CLUSTER_SUBJECT, node_subject("n1"), lifecycle_subject("t1")):
        assert not is_heartbeat_subject(subject)
        assert stream_for(subject) == EVENTS_STREAM
        assert subject_matches(EVENTS_FILTER, subject)
    assert is_heartbeat_subject(heartbeat_subject("n1"))
    assert stream_for(heartbeat_subject("n1")) == HEARTBEATS_STREAM
    assert subject_matches(HEARTBEATS_FILTER, heartbeat_subject("n1"))
    # The benchmark's raw copies live in the events stream but outside every task filter.
    raw = bench_raw_subject(lifecycle_subject("t1"))
    assert subject_matches(EVENTS_FILTER, raw)
    assert task_id_of(raw) is None

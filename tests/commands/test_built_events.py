"""The coordinator builds its hottest events without validating them again
(``model_construct``): what it builds must be exactly what validation would build, so
that stored bytes, decoded events and replayed states do not depend on the shortcut."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import pytest

from eventsrc.commands.tasks import MAX_ONE_EVENT_PAYLOAD, SubmitTask, decide_submit, reconcile
from eventsrc.events import (
    EVENT_ADAPTER,
    ONE_EVENT_SUBMISSIONS,
    Event,
    EventBase,
    TaskAssigned,
    TaskSpec,
    TaskSubmitted,
    decode,
    encode,
)
from tests.factories import T0
from tests.projections.builders import started, succeeded
from tests.unit.cluster import Cluster, decided, python_on

NOW = T0

SPECS: list[dict[str, Any]] = [
    {},
    {"payload": {"code": "print(1)", "n": [1, 2.5, None, {"deep": True}]}, "task_type": "eval"},
    {"payload": "text", "priority": 10, "labels": {"zone": "a"}, "model": "openai/gpt-x"},
    {"node_id": "a", "run_timeout_s": 30, "max_attempts": 5, "backoff_s": 0.5},
    {"payload": 7, "queue_timeout_s": 0},
]


def checked(event: Event) -> None:
    """The event equals its validated self, and its bytes decode back to it."""
    assert EVENT_ADAPTER.validate_python(event.model_dump()) == event
    raw = encode(event)
    assert decode(raw) == event
    assert encode(decode(raw)) == raw


def submit_on_two_nodes(spec: dict[str, Any]) -> tuple[Cluster, SubmitTask]:
    """Two python nodes, and a submission of task t1 with ``spec`` (and its extras)."""
    cluster = python_on("a", "b", labels={"zone": "a"})
    command = SubmitTask(
        task_id="t1",
        spec=TaskSpec.model_validate({"skills": ("python",), **spec}),
        submitted_by="alice",
        broadcast_id="b1",
    )
    return cluster, command


@pytest.mark.parametrize("spec", SPECS)
def test_a_submission_placed_at_once_builds_valid_events(spec: dict[str, Any]) -> None:
    cluster, command = submit_on_two_nodes(spec)
    events = decide_submit(cluster.state, command, stamp=decided(NOW))
    submitted, assignment = events
    assert isinstance(submitted, TaskSubmitted) and isinstance(assignment, TaskAssigned)
    assert assignment.candidates  # the evidence, built the same way
    for event in events:
        checked(event)


def test_an_assignment_by_reconcile_carrying_a_chained_result_is_valid() -> None:
    cluster = python_on("a")
    first = SubmitTask(task_id="a", spec=TaskSpec(skills=("python",)))
    for event in decide_submit(cluster.state, first, stamp=decided(NOW)):
        cluster.run.fold(event)
    after = SubmitTask(task_id="b", spec=TaskSpec(skills=("python",), after="a", payload={"x": 1}))
    for event in decide_submit(cluster.state, after, stamp=decided(NOW)):
        checked(event)
        cluster.run.fold(event)
    cluster.run.fold(started("a", "a"), succeeded("a", "a", result={"n": [1, "two"]}))
    later = NOW + timedelta(seconds=5)
    placed = [e for _, events in reconcile(cluster.state, stamp=decided(later)) for e in events]
    (assignment,) = placed
    assert isinstance(assignment, TaskAssigned)
    assert assignment.payload == {"x": 1, "after": {"task_id": "a", "result": {"n": [1, "two"]}}}
    checked(assignment)


ENVELOPE = set(EventBase.model_fields)


@pytest.mark.parametrize("spec", SPECS)
def test_a_task_placed_at_once_in_one_event_is_valid_and_replays_as_the_two(
    spec: dict[str, Any],
) -> None:
    def decided_and_applied(one_event: bool) -> tuple[tuple[Event, ...], dict[str, Any]]:
        cluster, command = submit_on_two_nodes(spec)
        events = decide_submit(cluster.state, command, stamp=decided(NOW), one_event=one_event)
        cluster.run.fold(*events)
        view = dataclasses.asdict(cluster.state.tasks["t1"])
        # What differs by design: the event that stands for the submission, and when
        # (each applied event is a second later here).
        for key in ("submit_event_id", "submitted_at", "queued_since", "not_before"):
            view.pop(key)
        return events, {
            "task": view,
            "running": {n: set(v.running) for n, v in cluster.state.nodes.items()},
            "waiting": set(cluster.state.waiting),
        }

    (one,), in_one = decided_and_applied(one_event=True)
    (submitted, assigned), in_two = decided_and_applied(one_event=False)
    checked(one)
    assert isinstance(one, TaskAssigned) and one.submitted is not None
    assert isinstance(submitted, TaskSubmitted) and isinstance(assigned, TaskAssigned)
    assert one.subject == assigned.subject == "evt.task.t1.to.a"
    just_placed = {*ENVELOPE, "submitted"}
    assert one.model_dump(exclude=just_placed) == assigned.model_dump(exclude=just_placed)
    as_submitted = one.submission()
    assert as_submitted is not None and as_submitted.event_id == one.event_id
    assert as_submitted.model_dump(exclude=ENVELOPE) == submitted.model_dump(exclude=ENVELOPE)
    assert one.causation_id == submitted.causation_id  # caused by what caused the submission
    assert in_one == in_two and in_one["task"]["state"] == "assigned"


def test_a_task_waiting_or_too_large_for_one_event_keeps_its_submission_event() -> None:
    cluster = python_on("a")
    big = {"blob": "x" * (MAX_ONE_EVENT_PAYLOAD + 1)}
    cases = [
        SubmitTask(task_id="big", spec=TaskSpec(skills=("python",), payload=big)),
        SubmitTask(task_id="none", spec=TaskSpec(skills=("python",), node_id="nowhere")),
        SubmitTask(
            task_id="labels",
            spec=TaskSpec(skills=("python",), labels={"note": "x" * MAX_ONE_EVENT_PAYLOAD}),
        ),
    ]
    for command in cases:
        events = decide_submit(cluster.state, command, stamp=decided(NOW), one_event=True)
        assert isinstance(events[0], TaskSubmitted), command.task_id
        assert all(getattr(e, "submitted", None) is None for e in events)


def test_a_node_not_yet_upgraded_gets_the_submission_and_its_assignment() -> None:
    # A node of an older event schema would take a submission carried by its
    # assignment for an assignment of an unknown task: it gets the two events.
    cluster = python_on("a", event_schema=ONE_EVENT_SUBMISSIONS - 1)
    command = SubmitTask(task_id="t1", spec=TaskSpec(skills=("python",)))
    events = decide_submit(cluster.state, command, stamp=decided(NOW), one_event=True)
    assert [type(e) for e in events] == [TaskSubmitted, TaskAssigned]
    assert isinstance(events[1], TaskAssigned) and events[1].submitted is None


def test_a_submission_placed_at_once_at_another_attempt_is_skipped_whole() -> None:
    cluster = python_on("a")
    command = SubmitTask(task_id="t1", spec=TaskSpec(skills=("python",)))
    (one,) = decide_submit(cluster.state, command, stamp=decided(NOW), one_event=True)
    assert isinstance(one, TaskAssigned)
    cluster.run.fold(one.model_copy(update={"attempt": 2}))
    assert "t1" not in cluster.state.tasks and cluster.state.problems.illegal == 1
    cluster.run.fold(one)
    assert cluster.state.tasks["t1"].state == "assigned"

"""The coordinator builds its hottest events without validating them again
(``model_construct``): what it builds must be exactly what validation would build, so
that stored bytes, decoded events and replayed states do not depend on the shortcut."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from eventsrc.commands.tasks import SubmitTask, decide_submit, reconcile
from eventsrc.events import (
    EVENT_ADAPTER,
    Event,
    TaskAssigned,
    TaskSpec,
    TaskSubmitted,
    decode,
    encode,
)
from tests.factories import T0
from tests.projections.builders import started, succeeded
from tests.unit.cluster import decided, python_on

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


@pytest.mark.parametrize("spec", SPECS)
def test_a_submission_placed_at_once_builds_valid_events(spec: dict[str, Any]) -> None:
    cluster = python_on("a", "b", labels={"zone": "a"})
    command = SubmitTask(
        task_id="t1",
        spec=TaskSpec.model_validate({"skills": ("python",), **spec}),
        submitted_by="alice",
        broadcast_id="b1",
    )
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

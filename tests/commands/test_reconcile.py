"""Pure decisions of the control loop and the sweep: no server, a given clock."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from eventsrc.commands.base import COORDINATOR
from eventsrc.commands.registry import ExpireStale, decide_expire_stale
from eventsrc.commands.tasks import SubmitTask, decide_submit, reconcile
from eventsrc.errors import InvalidRequestError
from eventsrc.events import Heartbeat, NodeExpired, TaskRejected, TaskSpec
from eventsrc.projections.apply import apply_heartbeat
from eventsrc.projections.state import ClusterState
from tests.factories import T0, envelope
from tests.projections.builders import (
    Fold,
    assigned,
    instance,
    joined,
    requeued,
    skill_registered,
    submitted,
)


def test_a_task_whose_every_attempt_was_lost_ends_instead_of_cycling() -> None:
    run = Fold()
    run.fold(skill_registered("python"), joined("n1"), instance("python", "n1"))
    run.fold(submitted("t1", max_attempts=1), assigned("t1", "n1"), requeued("t1", "n1"))
    decisions = reconcile(run.state, stamp=COORDINATOR.stamp(T0 + timedelta(hours=2)))
    ((task_id, events),) = decisions
    assert task_id == "t1" and isinstance(events[0], TaskRejected)
    assert "lost" in events[0].reason


def test_a_new_incarnation_is_not_expired_on_its_predecessors_heartbeat() -> None:
    run = Fold()
    run.fold(joined("n1", incarnation="old"))
    old_beat = Heartbeat(**envelope("node:n1"), node_id="n1", incarnation="old")
    apply_heartbeat(run.state, old_beat, seq=1, time=T0)
    run.fold(joined("n1", incarnation="new"))  # joined_at is the fold's later time
    now = Fold.time(run.seq) + timedelta(seconds=1)
    events = decide_expire_stale(
        run.state, ExpireStale(stale_after_s=5), stamp=COORDINATOR.stamp(now)
    )
    assert events == ()
    later = decide_expire_stale(
        run.state,
        ExpireStale(stale_after_s=5),
        stamp=COORDINATOR.stamp(now + timedelta(seconds=10)),
    )
    assert [type(e) for e in later] == [NodeExpired]
    assert later[0].incarnation == "new"  # type: ignore[union-attr]


def test_unbounded_timeouts_are_refused_at_the_door() -> None:
    with pytest.raises(ValidationError):
        TaskSpec(skills=("python",), run_timeout_s=1e12)
    with pytest.raises(ValidationError):
        TaskSpec(skills=("python",), backoff_factor=1e200)


def test_a_payload_json_cannot_hold_is_refused() -> None:
    command = SubmitTask(task_id="big", spec=TaskSpec(skills=("python",), payload={"n": 2**70}))
    with pytest.raises(InvalidRequestError, match="cannot be stored as JSON"):
        decide_submit(ClusterState(), command, stamp=COORDINATOR.stamp(T0))

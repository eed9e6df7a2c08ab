"""Small builders of task, node and cluster events for the projection tests.

Coordinator events carry ``epoch=1`` unless told otherwise; node events carry none.
``Fold`` applies events to a state with increasing stream sequences and server times,
the way the runner would.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from eventsrc.events import (
    Event,
    LeaderElected,
    NodeExpired,
    NodeJoined,
    NodeLeft,
    SkillCategory,
    SkillInstanceRegistered,
    SkillInstanceUnregistered,
    SkillMetadata,
    SkillRegistered,
    TaskAssigned,
    TaskCancelled,
    TaskFailed,
    TaskQueued,
    TaskRequeued,
    TaskRetried,
    TaskSpec,
    TaskStarted,
    TaskSubmitted,
    TaskSucceeded,
    TaskTimedOut,
)
from eventsrc.projections.apply import apply
from eventsrc.projections.state import ClusterState, Retention
from tests.factories import T0, envelope

LATER = T0 + timedelta(hours=1)


def coord(epoch: int | None = 1) -> dict[str, Any]:
    return envelope("coordinator", epoch=epoch)


def by_node(node_id: str) -> dict[str, Any]:
    return envelope(f"node:{node_id}")


def leader(epoch: int, coordinator_id: str = "c1") -> LeaderElected:
    return LeaderElected(**coord(epoch), coordinator_id=coordinator_id)


def skill_registered(name: str, *deps: str) -> SkillRegistered:
    meta = SkillMetadata(name=name, category=SkillCategory.SYSTEM, dependencies=deps)
    return SkillRegistered(**coord(), metadata=meta)


def submitted(
    task_id: str, *skills: str, max_attempts: int = 3, epoch: int | None = 1
) -> TaskSubmitted:
    spec = TaskSpec(skills=skills or ("python",), max_attempts=max_attempts)
    return TaskSubmitted(**coord(epoch), task_id=task_id, spec=spec, queue_deadline=LATER)


def queued(task_id: str, reason: str = "no free slot", *, epoch: int | None = 1) -> TaskQueued:
    return TaskQueued(**coord(epoch), task_id=task_id, reason=reason)


def assigned(
    task_id: str, node_id: str, attempt: int = 1, *, epoch: int | None = 1
) -> TaskAssigned:
    return TaskAssigned(
        **coord(epoch),
        task_id=task_id,
        node_id=node_id,
        attempt=attempt,
        skills=("python",),
        run_timeout_s=60,
        run_deadline=LATER,
    )


def started(task_id: str, node_id: str, attempt: int = 1) -> TaskStarted:
    return TaskStarted(**by_node(node_id), task_id=task_id, node_id=node_id, attempt=attempt)


def succeeded(task_id: str, node_id: str, attempt: int = 1, result: Any = "ok") -> TaskSucceeded:
    return TaskSucceeded(
        **by_node(node_id), task_id=task_id, node_id=node_id, attempt=attempt, result=result
    )


def failed(
    task_id: str, node_id: str, attempt: int = 1, *, retryable: bool, error: str = "boom"
) -> TaskFailed:
    return TaskFailed(
        **by_node(node_id),
        task_id=task_id,
        node_id=node_id,
        attempt=attempt,
        error=error,
        retryable=retryable,
    )


def retried(task_id: str, failed_attempt: int, next_attempt: int | None = None) -> TaskRetried:
    return TaskRetried(
        **coord(),
        task_id=task_id,
        failed_attempt=failed_attempt,
        next_attempt=next_attempt or failed_attempt + 1,
        not_before=LATER,
    )


def requeued(
    task_id: str, node_id: str, attempt: int = 1, reason: str = "node expired"
) -> TaskRequeued:
    return TaskRequeued(**coord(), task_id=task_id, node_id=node_id, attempt=attempt, reason=reason)


def timed_out(task_id: str, phase: Literal["queue", "run"], attempt: int = 0) -> TaskTimedOut:
    return TaskTimedOut(
        **coord(),
        task_id=task_id,
        phase=phase,
        attempt=attempt,
        deadline=LATER,
        observed_at=LATER,
    )


def cancelled(task_id: str, reason: str = "user") -> TaskCancelled:
    return TaskCancelled(**coord(), task_id=task_id, reason=reason)


def joined(node_id: str, incarnation: str = "i1", capacity: int = 2) -> NodeJoined:
    return NodeJoined(
        **by_node(node_id), node_id=node_id, incarnation=incarnation, capacity=capacity
    )


def left(node_id: str, incarnation: str = "i1") -> NodeLeft:
    return NodeLeft(**by_node(node_id), node_id=node_id, incarnation=incarnation)


def node_expired(node_id: str, incarnation: str = "i1") -> NodeExpired:
    return NodeExpired(
        **coord(), node_id=node_id, incarnation=incarnation, swept_at=LATER, stale_after_s=15
    )


def instance(skill: str, node_id: str) -> SkillInstanceRegistered:
    return SkillInstanceRegistered(**by_node(node_id), node_id=node_id, skill=skill)


def uninstance(skill: str, node_id: str) -> SkillInstanceUnregistered:
    return SkillInstanceUnregistered(**by_node(node_id), node_id=node_id, skill=skill)


def lifecycle(task_id: str, node_id: str) -> list[Event]:
    """A task that runs and succeeds on ``node_id`` at attempt 1."""
    return [
        submitted(task_id),
        assigned(task_id, node_id),
        started(task_id, node_id),
        succeeded(task_id, node_id),
    ]


@dataclass
class Fold:
    """A state plus the next stream sequence: ``fold(*events)`` applies them in order."""

    state: ClusterState = field(default_factory=ClusterState)
    seq: int = 0

    @classmethod
    def with_retention(cls, retention: Retention) -> Fold:
        return cls(ClusterState(retention=retention))

    def fold(self, *events: Event) -> ClusterState:
        for event in events:
            self.seq += 1
            apply(self.state, event, seq=self.seq, time=self.time(self.seq))
        return self.state

    @staticmethod
    def time(seq: int) -> datetime:
        return T0 + timedelta(seconds=seq)

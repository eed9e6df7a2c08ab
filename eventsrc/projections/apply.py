"""``apply(state, event, seq=, time=)``: the one entry point that folds an event in.

Pure: no I/O, no clock, no logging. Handles position tracking (anything at or below
``state.last_seq`` is skipped), leader-epoch fencing (coordinator events of an older
epoch are kept in the stream for audit but change nothing) and problem counting.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from eventsrc.errors import UndecodableEventError
from eventsrc.events import (
    EVENT_CLASSES,
    Event,
    EventBase,
    Heartbeat,
    LeaderElected,
    TaskOutput,
    aggregate_of,
    is_fenced,
    is_newer_election,
)
from eventsrc.events.subjects import task_id_of
from eventsrc.ports import Record
from eventsrc.projections import limits, membership, schedules, tasks
from eventsrc.projections.problem import Problem
from eventsrc.projections.state import ClusterState

Handler = Callable[[ClusterState, Any, datetime], None]
"""Folds one event in, or raises Problem before changing anything."""

HANDLERS: dict[str, Handler] = {
    "SkillRegistered": membership.skill_registered,
    "SkillUpdated": membership.skill_registered,
    "SkillInstanceRegistered": membership.instance_registered,
    "SkillInstanceUnregistered": membership.instance_gone,
    "SkillInstanceExpired": membership.instance_gone,
    "NodeJoined": membership.node_joined,
    "NodeLeft": membership.node_left,
    "NodeExpired": membership.node_expired,
    "NodeDrainRequested": membership.drain_requested,
    "NodeDrainCancelled": membership.drain_cancelled,
    "NodeCapabilitiesReported": membership.capabilities,
    "LeaderElected": membership.leader_elected,
    "ClusterSettingsChanged": membership.settings_changed,
    "LimitSet": limits.limit_set,
    "LimitRemoved": limits.limit_removed,
    "TaskSubmitted": tasks.submitted,
    "TaskQueued": tasks.queued,
    "TaskRejected": tasks.rejected,
    "TaskAssigned": tasks.assigned,
    "TaskStarted": tasks.started,
    "TaskSucceeded": tasks.succeeded,
    "TaskFailed": tasks.failed,
    "TaskRetried": tasks.retried,
    "TaskRequeued": tasks.requeued,
    "TaskTimedOut": tasks.timed_out,
    "TaskCancelRequested": tasks.cancel_requested,
    "TaskCancelled": tasks.cancelled,
    "ScheduleAdded": schedules.added,
    "SchedulePaused": schedules.paused,
    "ScheduleResumed": schedules.resumed,
    "ScheduleRemoved": schedules.removed,
    "ScheduleFired": schedules.fired,
    "ScheduleSkipped": schedules.skipped,
}


_NOT_HERE: dict[type[EventBase], str] = {
    Heartbeat: "a heartbeat in the events stream",
    TaskOutput: "task output in the events stream",
}
"""Event types of the soft-state streams: illegal in the events stream."""

_FOLDS: dict[type[EventBase], tuple[Handler, bool]] = {
    cls: (HANDLERS[name], cls.WRITTEN_BY == "coordinator")
    for name, cls in EVENT_CLASSES.items()
    if cls not in _NOT_HERE
}
"""HANDLERS by event class, with whether the epoch fences it: one lookup per event."""


def apply(state: ClusterState, event: Event, *, seq: int, time: datetime) -> None:
    """Fold one event of ``EVENTSRC_EVENTS`` (stream sequence ``seq``, server ``time``)."""
    if seq <= state.last_seq:
        return
    state.last_seq = seq
    try:
        fold = _FOLDS.get(type(event))
        if fold is None:
            raise Problem("illegal", _NOT_HERE.get(type(event), f"{event.type} not foldable"))
        handler, fenceable = fold
        if fenceable and _fenced(state, event):
            raise Problem(
                "fenced", f"{event.type} of epoch {event.epoch}; leader epoch is {state.epoch}"
            )
        handler(state, event, time)
    except Problem as problem:
        state.problems.note(problem.kind, f"seq {seq}: {problem.text}")
    # The server compares expected sequences with every stored event of an aggregate,
    # late and fenced ones included, so the position moves whatever the outcome.
    _track_aggregate(state, event.aggregate_subject, seq)


def _track_aggregate(state: ClusterState, aggregate: str, seq: int) -> None:
    # Every stored event counts, even on a task never submitted (a stray result): the
    # server's expectation check sees it, so the next conditional append must too.
    # Eviction drops a finished task's entry; the coordinator looks such ids up in the
    # stream before accepting them again. Strays on tasks the state does not hold are
    # kept for the newest ``max_finished`` of them only, so junk cannot grow memory
    # without bound (an older stray's id is refused by the server's own check).
    task_id = task_id_of(aggregate)
    if task_id is not None and task_id not in state.tasks:
        strays = state.strays
        strays[aggregate] = None
        strays.move_to_end(aggregate)
        while len(strays) > state.retention.max_finished:
            oldest, _ = strays.popitem(last=False)
            if task_id_of(oldest) not in state.tasks:
                state.aggregate_seq.pop(oldest, None)
    state.aggregate_seq[aggregate] = seq


def _fenced(state: ClusterState, event: Event) -> bool:
    if isinstance(event, LeaderElected):
        return not is_newer_election(event.epoch, state.epoch)
    return is_fenced(event.epoch, state.epoch)


def apply_undecodable(state: ClusterState, error: UndecodableEventError) -> None:
    """Count a stored message that is not an event and move past it."""
    if error.seq and error.seq <= state.last_seq:
        return
    state.last_seq = max(state.last_seq, error.seq)
    if error.subject:
        _track_aggregate(state, aggregate_of(error.subject), error.seq)
    state.problems.note("undecodable", f"seq {error.seq}: {error.reason}")


def apply_heartbeat(state: ClusterState, event: Heartbeat, *, seq: int, time: datetime) -> None:
    """Fold a heartbeat from ``EVENTSRC_HEARTBEATS`` (soft state)."""
    membership.heartbeat(state, event, seq=seq, time=time)


def apply_undecodable_heartbeat(state: ClusterState, error: UndecodableEventError) -> None:
    """Count a message of ``EVENTSRC_HEARTBEATS`` that is not a heartbeat (soft state:
    not part of the hashed state, whose problems come from the events stream only)."""
    state.heartbeat_problems.note(
        "undecodable", f"heartbeat seq {error.seq} ({error.subject}): {error.reason}"
    )


def apply_record(state: ClusterState, record: Record) -> None:
    """Fold one record of the events stream, whatever it is."""
    if isinstance(record, UndecodableEventError):
        apply_undecodable(state, record)
    else:
        apply(state, record.event, seq=record.seq, time=record.time)

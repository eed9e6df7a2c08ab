"""Folding schedule events: the aggregate ``evt.schedule.<name>``.

A handler raises ``Problem`` before changing anything when an event does not fit the
schedule as it stands (a fire for an unknown schedule, an occurrence at or before the
cursor: handled already). Never raised past ``apply``: a projection never crashes.
"""

from __future__ import annotations

from datetime import datetime

from eventsrc.events import (
    ScheduleAdded,
    ScheduleFired,
    SchedulePaused,
    ScheduleRemoved,
    ScheduleResumed,
    ScheduleSkipped,
)
from eventsrc.projections.problem import Problem
from eventsrc.projections.state import ClusterState, ScheduleView


def _schedule(state: ClusterState, name: str, what: str) -> ScheduleView:
    schedule = state.schedules.get(name)
    if schedule is None:
        raise Problem("illegal", f"{what} for unknown schedule {name}")
    return schedule


def added(state: ClusterState, event: ScheduleAdded, time: datetime) -> None:
    if event.name in state.schedules:
        raise Problem("illegal", f"schedule {event.name} added twice")
    state.schedules[event.name] = ScheduleView(
        name=event.name,
        timing=event.timing,
        task=event.task,
        cursor=event.anchor,
        added_at=time,
    )


def paused(state: ClusterState, event: SchedulePaused, time: datetime) -> None:
    _schedule(state, event.name, "SchedulePaused").paused = True


def resumed(state: ClusterState, event: ScheduleResumed, time: datetime) -> None:
    schedule = _schedule(state, event.name, "ScheduleResumed")
    schedule.paused = False
    schedule.cursor = max(schedule.cursor, event.anchor)


def removed(state: ClusterState, event: ScheduleRemoved, time: datetime) -> None:
    _schedule(state, event.name, "ScheduleRemoved")
    del state.schedules[event.name]


def fired(state: ClusterState, event: ScheduleFired, time: datetime) -> None:
    schedule = _schedule(state, event.name, "ScheduleFired")
    _advance(schedule, event.occurrence, f"fired for {event.occurrence.isoformat()}")
    schedule.fired += 1
    schedule.last_occurrence = event.occurrence
    schedule.last_task_id = event.task_id
    schedule.pending_task = event.task_id if event.task_id not in state.tasks else None


def skipped(state: ClusterState, event: ScheduleSkipped, time: datetime) -> None:
    schedule = _schedule(state, event.name, "ScheduleSkipped")
    _advance(schedule, event.last, f"skipped up to {event.last.isoformat()}")
    schedule.skipped += event.count


def _advance(schedule: ScheduleView, upto: datetime, what: str) -> None:
    """Move the cursor to ``upto``; an occurrence handled already is a late event."""
    if upto <= schedule.cursor:
        raise Problem(
            "late",
            f"schedule {schedule.name} {what}, handled already "
            f"(up to {schedule.cursor.isoformat()})",
        )
    schedule.cursor = upto

"""Schedules: the commands on them, ``decide_fire`` (the leader's pass over the due
occurrences) and their views, as pure functions with the time passed in. When each
fires is ``eventsrc.commands.timing``'s."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from typing import Annotated, Any, Final

from pydantic import Field

from eventsrc.commands.base import Command, Stamp
from eventsrc.commands.tasks import Limits, SubmitTask, decide_submit
from eventsrc.commands.timing import check_timing, first_due, next_fire, occurrences, task_id_for
from eventsrc.commands.views import View
from eventsrc.errors import DomainError, NotFoundError
from eventsrc.events import (
    Event,
    ScheduleAdded,
    ScheduleFired,
    SchedulePaused,
    ScheduleRemoved,
    ScheduleResumed,
    ScheduleSkipped,
    ScheduleTiming,
    TaskAssigned,
    TaskSpec,
    TaskSubmitted,
    Token,
)
from eventsrc.events.schedule import MAX_SCHEDULE_NAME
from eventsrc.projections.state import ClusterState, ScheduleView

MAX_FIRES_PER_PASS: Final = 100
"""Occurrences of one schedule one pass fires at most (the next pass goes on)."""
MAX_COUNTED: Final = 100_000
"""Missed cron occurrences counted one by one at most per pass (the next pass goes on)."""
MAX_REASON: Final = 1000

ScheduleName = Annotated[Token, Field(max_length=MAX_SCHEDULE_NAME)]


class AddSchedule(Command):
    """Add a schedule; adding the same one again changes nothing."""

    name: ScheduleName
    timing: ScheduleTiming
    task: TaskSpec
    added_by: str = Field(default="", max_length=MAX_REASON)


class ScheduleCommand(Command):
    """Pause, resume or remove the schedule ``name``."""

    name: ScheduleName
    reason: str = Field(default="", max_length=MAX_REASON)


class ShowSchedule(Command):
    """The next ``count`` occurrences of the schedule ``name``."""

    name: ScheduleName
    count: int = Field(default=5, ge=1, le=1000)


class FireDue(Command):
    """The leader's pass: fire (or skip) every due occurrence."""

    limits: Limits = Field(default_factory=Limits)


def _existing(state: ClusterState, name: str) -> ScheduleView:
    schedule = state.schedules.get(name)
    if schedule is None:
        raise NotFoundError(f"no schedule {name}; see `eventsrc schedule list`")
    return schedule


def decide_add(state: ClusterState, command: AddSchedule, *, stamp: Stamp) -> tuple[Event, ...]:
    """ScheduleAdded, anchored now; nothing when the same schedule exists."""
    check_timing(command.timing)
    existing = state.schedules.get(command.name)
    if existing is not None:
        if existing.timing == command.timing and existing.task == command.task:
            return ()
        raise DomainError(
            f"schedule {command.name} exists with other settings; remove it first "
            f"(eventsrc schedule remove {command.name}) or use another name"
        )
    # The task must be one a submission accepts (its payload size, most of all).
    decide_submit(
        ClusterState(),
        SubmitTask(task_id=task_id_for(command.name, stamp.now), spec=command.task),
        stamp=stamp,
    )
    return (
        ScheduleAdded(
            **stamp.envelope(),
            name=command.name,
            timing=command.timing,
            task=command.task,
            anchor=stamp.now,
            added_by=command.added_by,
        ),
    )


def decide_pause(
    state: ClusterState, command: ScheduleCommand, *, stamp: Stamp
) -> tuple[Event, ...]:
    if _existing(state, command.name).paused:
        return ()
    return (SchedulePaused(**stamp.envelope(), name=command.name, reason=command.reason),)


def decide_resume(
    state: ClusterState, command: ScheduleCommand, *, stamp: Stamp
) -> tuple[Event, ...]:
    if not _existing(state, command.name).paused:
        return ()
    return (ScheduleResumed(**stamp.envelope(), name=command.name, anchor=stamp.now),)


def decide_remove(
    state: ClusterState, command: ScheduleCommand, *, stamp: Stamp
) -> tuple[Event, ...]:
    _existing(state, command.name)
    return (ScheduleRemoved(**stamp.envelope(), name=command.name, reason=command.reason),)


def decide_fire(
    state: ClusterState,
    command: FireDue,
    *,
    stamp: Stamp,
    planned: Mapping[str, int] | None = None,
) -> tuple[Event, ...]:
    """Every schedule's due occurrences as of ``stamp.now``, each one event on the
    schedule's aggregate, followed by its task's submission and first placement.

    Occurrences more than the schedule's ``grace_s`` old count as missed: with catch-up
    ``once`` the latest of them fires (``missed`` says how many it stands for), with
    ``skip`` one ScheduleSkipped covers them. A fired occurrence whose submission a
    fail-over cut off is submitted now. ``planned``: assignments decided elsewhere and
    not applied yet, per node.
    """
    events: list[Event] = []
    counted: Counter[str] = Counter(planned or {})
    for name in sorted(state.schedules):
        schedule = state.schedules[name]
        if schedule.pending_task is not None and schedule.last_occurrence is not None:
            # Not now if the cluster refuses it (the queue is full): a later pass.
            with contextlib.suppress(DomainError):
                events += _submit(
                    state, schedule, schedule.last_occurrence, None, command.limits, counted, stamp
                )
        if not schedule.paused:
            events += _fire_schedule(state, schedule, command.limits, counted, stamp)
    return tuple(events)


def _fire_schedule(
    state: ClusterState,
    schedule: ScheduleView,
    limits: Limits,
    planned: Counter[str],
    stamp: Stamp,
) -> list[Event]:
    now, timing = stamp.now, schedule.timing
    if first_due(timing, schedule.cursor) > now:
        return []
    due = occurrences(timing, schedule.cursor)
    at = next(due)
    events: list[Event] = []
    on_time_from = now - timedelta(seconds=timing.grace_s)
    if at < on_time_from:
        first, last, count = _missed(timing, at, due, on_time_from)
        if timing.catch_up == "once":
            events += _fire(state, schedule, last, limits, planned, stamp, missed=(first, count))
        else:
            events.append(
                ScheduleSkipped(
                    **stamp.envelope(),
                    name=schedule.name,
                    first=first,
                    last=last,
                    count=count,
                    reason=f"missed by more than {timing.grace_s:g} s (catch-up skip)",
                )
            )
        due = occurrences(timing, last)
        at = next(due)
    fired = 0
    while at <= now and fired < MAX_FIRES_PER_PASS:
        events += _fire(state, schedule, at, limits, planned, stamp)
        fired += 1
        at = next(due)
    return events


def _missed(
    timing: ScheduleTiming, first: datetime, rest: Iterator[datetime], before: datetime
) -> tuple[datetime, datetime, int]:
    """(first, last, count) of the occurrences from ``first`` on before ``before``."""
    if timing.every_s is not None:
        step = timedelta(seconds=timing.every_s)
        count = (before - first - timedelta(microseconds=1)) // step + 1
        return first, first + step * (count - 1), count
    last, count = first, 1
    for at in rest:
        if at >= before or count >= MAX_COUNTED:
            break
        last, count = at, count + 1
    return first, last, count


def _fire(
    state: ClusterState,
    schedule: ScheduleView,
    occurrence: datetime,
    limits: Limits,
    planned: Counter[str],
    stamp: Stamp,
    *,
    missed: tuple[datetime, int] | None = None,
) -> list[Event]:
    """ScheduleFired and the task's submission; a ScheduleSkipped instead when the
    cluster refuses the task. ``missed``: the first missed occurrence and how many this
    one fire stands for (catch-up ``once``)."""
    first, count = missed or (occurrence, 0)
    fired = ScheduleFired(
        **stamp.envelope(),
        name=schedule.name,
        occurrence=occurrence,
        task_id=task_id_for(schedule.name, occurrence),
        missed=count,
    )
    try:
        submission = _submit(state, schedule, occurrence, fired, limits, planned, stamp)
    except DomainError as err:  # the queue is full, or the task is not acceptable now
        return [
            ScheduleSkipped(
                **stamp.envelope(),
                name=schedule.name,
                first=first,
                last=occurrence,
                count=max(count, 1),
                reason=f"task refused: {err}"[:MAX_REASON],
            )
        ]
    return [fired, *submission]


def _submit(
    state: ClusterState,
    schedule: ScheduleView,
    occurrence: datetime,
    fired: ScheduleFired | None,
    limits: Limits,
    planned: Counter[str],
    stamp: Stamp,
) -> list[Event]:
    """The submission of the task for ``occurrence`` (``fired``: the decision it follows;
    None: one stored already, whose submission is missing)."""
    task_id = task_id_for(schedule.name, occurrence)
    command = SubmitTask(
        task_id=task_id, spec=schedule.task, submitted_by=f"schedule {schedule.name}"
    )
    events = decide_submit(state, command, stamp=stamp, limits=limits, planned=planned)
    planned.update(e.node_id for e in events if isinstance(e, TaskAssigned))
    causation = fired.event_id if fired is not None else None
    return [
        event.model_copy(
            update={
                "schedule": schedule.name,
                "occurrence": occurrence,
                "causation_id": causation or event.causation_id,
            }
        )
        if isinstance(event, TaskSubmitted)
        else event
        for event in events
    ]


class ScheduleInfo(View):
    name: str
    cron: str | None
    tz: str
    every_s: int | None
    catch_up: str
    grace_s: float
    state: str
    skills: tuple[str, ...]
    payload: Any = None
    next_fire: datetime | None
    fired: int
    skipped: int
    last_occurrence: datetime | None
    last_task_id: str | None
    added_at: datetime


def schedule_info(schedule: ScheduleView, *, now: datetime) -> ScheduleInfo:
    timing = schedule.timing
    upcoming = None if schedule.paused else next_fire(timing, max(schedule.cursor, now))
    return ScheduleInfo(
        name=schedule.name,
        cron=timing.cron,
        tz=timing.tz,
        every_s=timing.every_s,
        catch_up=timing.catch_up,
        grace_s=timing.grace_s,
        state="paused" if schedule.paused else "active",
        skills=schedule.task.skills,
        payload=schedule.task.payload,
        next_fire=upcoming,
        fired=schedule.fired,
        skipped=schedule.skipped,
        last_occurrence=schedule.last_occurrence,
        last_task_id=schedule.last_task_id,
        added_at=schedule.added_at,
    )


def list_schedules(state: ClusterState, *, now: datetime) -> list[ScheduleInfo]:
    return [schedule_info(state.schedules[n], now=now) for n in sorted(state.schedules)]


def upcoming(state: ClusterState, command: ShowSchedule, *, now: datetime) -> dict[str, object]:
    """The schedule and its next ``count`` occurrences after now (none while paused)."""
    schedule = _existing(state, command.name)
    times: list[datetime] = []
    if not schedule.paused:
        due = occurrences(schedule.timing, max(schedule.cursor, now))
        times = [next(due) for _ in range(command.count)]
    return {"schedule": schedule_info(schedule, now=now), "next": times}

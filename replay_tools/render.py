"""Text for people: a one-line summary of every event type; ``Progress`` (the bars on a
terminal, from ``eventsrc.progress``) for the modules that import it from here."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from eventsrc.events import (
    ClusterSettingsChanged,
    Event,
    Heartbeat,
    LeaderElected,
    LimitRemoved,
    LimitSet,
    NodeCapabilitiesReported,
    NodeDrainCancelled,
    NodeDrainRequested,
    NodeExpired,
    NodeJoined,
    NodeLeft,
    ScheduleAdded,
    ScheduleFired,
    SchedulePaused,
    ScheduleRemoved,
    ScheduleResumed,
    ScheduleSkipped,
    SkillInstanceExpired,
    SkillInstanceRegistered,
    SkillInstanceUnregistered,
    SkillRegistered,
    SkillUpdated,
    TaskAssigned,
    TaskCancelled,
    TaskCancelRequested,
    TaskFailed,
    TaskQueued,
    TaskRejected,
    TaskRequeued,
    TaskRetried,
    TaskStarted,
    TaskSubmitted,
    TaskSucceeded,
    TaskTimedOut,
)
from eventsrc.progress import Progress as Progress
from replay_tools.common import jsonable, short_time

MAX_SUMMARY = 160


def print_json(value: Any) -> None:
    """One JSON document on stdout."""
    print(json.dumps(jsonable(value), indent=2, default=str))


def _reason(text: str) -> str:
    return f" ({text})" if text else ""


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_SUMMARY else text[: MAX_SUMMARY - 1] + "…"


def _skill(event: SkillRegistered | SkillUpdated) -> str:
    meta = event.metadata
    verb = "registered" if isinstance(event, SkillRegistered) else "updated"
    deps = f", depends on {', '.join(meta.dependencies)}" if meta.dependencies else ""
    return f"skill {meta.name} {verb}: v{meta.version}, {meta.category.value}{deps}"


def _joined(event: NodeJoined) -> str:
    host = f", host {event.hostname}" if event.hostname else ""
    return (
        f"{event.node_id} joined: incarnation {event.incarnation}, capacity {event.capacity}{host}"
    )


def _expired(event: NodeExpired) -> str:
    seen = short_time(event.last_heartbeat_at) if event.last_heartbeat_at else "never"
    return (
        f"{event.node_id} expired: last heartbeat {seen}, swept {short_time(event.swept_at)}, "
        f"stale after {event.stale_after_s:g} s"
    )


def _capabilities(event: NodeCapabilitiesReported) -> str:
    names = ", ".join(skill.name for skill in event.unavailable) or "nothing"
    return f"{event.node_id} found but cannot run: {names}"


def _submitted(event: TaskSubmitted) -> str:
    spec = event.spec
    by = f" by {event.submitted_by}" if event.submitted_by else ""
    pin = f", pinned to {spec.node_id}" if spec.node_id else ""
    parent = f", sub-task of {event.parent_task_id}" if event.parent_task_id else ""
    waits = "".join(
        f", {what} {value}"
        for what, value in (
            ("after", spec.after),
            ("not before", spec.not_before and short_time(spec.not_before)),
            ("delay", spec.delay_s is not None and f"{spec.delay_s:g} s"),
            ("deadline", spec.deadline and short_time(spec.deadline)),
            ("limit key", spec.limit_key),
        )
        if value
    )
    fired = (
        f", occurrence {short_time(event.occurrence)} of schedule {event.schedule}"
        if event.schedule and event.occurrence
        else ""
    )
    return (
        f"submitted{by}: skills {', '.join(spec.skills)}, priority {spec.priority}, "
        f"max attempts {spec.max_attempts}{pin}{parent}{waits}{fired}"
    )


def _schedule_added(event: ScheduleAdded) -> str:
    timing = event.timing
    when = f"cron {timing.cron} ({timing.tz})" if timing.cron else f"every {timing.every_s}s"
    return (
        f"schedule {event.name}: {when}, catch-up {timing.catch_up}, grace "
        f"{timing.grace_s:g} s, skills {', '.join(event.task.skills)}"
    )


def _schedule_fired(event: ScheduleFired) -> str:
    missed = f" (once for {event.missed} missed)" if event.missed else ""
    return f"{event.name} fired {short_time(event.occurrence)}{missed} -> task {event.task_id}"


def _schedule_skipped(event: ScheduleSkipped) -> str:
    return (
        f"{event.name} skipped {event.count} from {short_time(event.first)} to "
        f"{short_time(event.last)}: {event.reason}"
    )


def _assigned(event: TaskAssigned) -> str:
    ranked = ", ".join(f"{c.node_id} {c.running}/{c.capacity}" for c in event.candidates)
    limits = "; ".join(
        f"limit {use.name}: {use.running}"
        + (f" of {use.max_running}" if use.max_running else "")
        + " running"
        + (f", {len(use.window_starts)} started in the {use.rate} window" if use.rate else "")
        for use in event.limits
    )
    placed = (
        f"attempt {event.attempt} -> {event.node_id}"
        + (f" (candidates {ranked})" if ranked else "")
        + (f" ({limits})" if limits else "")
    )
    submission = event.submission()
    # Placed at its submission, in one event: the submission first, as it happened.
    return placed if submission is None else f"{_submitted(submission)}; {placed}"


def _failed(event: TaskFailed) -> str:
    retry = ", retryable" if event.retryable else ""
    return f"attempt {event.attempt} failed on {event.node_id}{retry}: {event.error}"


def _succeeded(event: TaskSucceeded) -> str:
    return f"attempt {event.attempt} succeeded on {event.node_id} in {event.duration_ms:.0f} ms"


def _heartbeat(event: Heartbeat) -> str:
    return (
        f"{event.node_id}: cpu {event.cpu_percent:.0f}%, memory {event.memory_percent:.0f}%, "
        f"running {event.running_tasks}/{event.capacity}"
    )


_SUMMARIES: dict[type[Any], Callable[[Any], str]] = {
    SkillRegistered: _skill,
    SkillUpdated: _skill,
    NodeJoined: _joined,
    NodeLeft: lambda e: f"{e.node_id} left{_reason(e.reason)}",
    NodeExpired: _expired,
    NodeDrainRequested: lambda e: f"drain {e.node_id}{_reason(e.reason)}",
    NodeDrainCancelled: lambda e: f"undrain {e.node_id}{_reason(e.reason)}",
    SkillInstanceRegistered: lambda e: f"{e.node_id} offers {e.skill}",
    SkillInstanceUnregistered: lambda e: f"{e.node_id} withdrew {e.skill}{_reason(e.reason)}",
    SkillInstanceExpired: lambda e: (
        f"{e.skill} on {e.node_id} expired: last seen {short_time(e.last_seen_at)}, "
        f"stale after {e.stale_after_s:g} s"
    ),
    NodeCapabilitiesReported: _capabilities,
    TaskSubmitted: _submitted,
    TaskQueued: lambda e: f"waiting: {e.reason}",
    TaskRejected: lambda e: (
        f"rejected: {e.reason}"
        + (f" (missing {', '.join(e.missing_skills)})" if e.missing_skills else "")
    ),
    TaskAssigned: _assigned,
    TaskCancelRequested: lambda e: f"cancel attempt {e.attempt} on {e.node_id}{_reason(e.reason)}",
    TaskStarted: lambda e: f"attempt {e.attempt} started on {e.node_id}",
    TaskSucceeded: _succeeded,
    TaskFailed: _failed,
    TaskRetried: lambda e: (
        f"attempt {e.next_attempt} after attempt {e.failed_attempt} failed, not before "
        f"{short_time(e.not_before)}"
    ),
    TaskRequeued: lambda e: f"attempt {e.attempt} on {e.node_id} lost: {e.reason}",
    TaskTimedOut: lambda e: (
        f"timed out {'in the queue' if e.phase == 'queue' else f'running attempt {e.attempt}'} "
        f"(deadline {short_time(e.deadline)})"
    ),
    TaskCancelled: lambda e: f"cancelled{_reason(e.reason)}",
    LeaderElected: lambda e: f"{e.coordinator_id} leads from epoch {e.epoch}",
    ClusterSettingsChanged: lambda e: (
        "settings: " + ", ".join(f"{k}={v}" for k, v in sorted(e.settings.items()))
    ),
    LimitSet: lambda e: (
        f"limit {e.key}: "
        + ", ".join(
            part
            for part in (
                f"at most {e.max_running} running" if e.max_running else "",
                f"rate {e.rate}" if e.rate else "",
            )
            if part
        )
    ),
    LimitRemoved: lambda e: f"limit {e.key} removed",
    Heartbeat: _heartbeat,
    ScheduleAdded: _schedule_added,
    SchedulePaused: lambda e: f"pause {e.name}{_reason(e.reason)}",
    ScheduleResumed: lambda e: f"resume {e.name} from {short_time(e.anchor)}",
    ScheduleRemoved: lambda e: f"remove {e.name}{_reason(e.reason)}",
    ScheduleFired: _schedule_fired,
    ScheduleSkipped: _schedule_skipped,
}


def summary(event: Event) -> str:
    """One line saying what an event means."""
    describe = _SUMMARIES.get(type(event))
    return _clip(describe(event) if describe is not None else event.type)

"""Builders of valid events for tests: one of every type, with fresh ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from eventsrc.events import (
    EVENT_CLASSES,
    Candidate,
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
    OutputLine,
    ScheduleAdded,
    ScheduleFired,
    SchedulePaused,
    ScheduleRemoved,
    ScheduleResumed,
    ScheduleSkipped,
    ScheduleTiming,
    SkillCategory,
    SkillInstanceExpired,
    SkillInstanceRegistered,
    SkillInstanceUnregistered,
    SkillMetadata,
    SkillRegistered,
    SkillUpdated,
    TaskAssigned,
    TaskCancelled,
    TaskCancelRequested,
    TaskFailed,
    TaskOutput,
    TaskQueued,
    TaskRejected,
    TaskRequeued,
    TaskRetried,
    TaskSpec,
    TaskStarted,
    TaskSubmitted,
    TaskSucceeded,
    TaskTimedOut,
    UnavailableSkill,
    new_event_id,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def envelope(producer: str = "test", **extra: Any) -> dict[str, Any]:
    """Envelope fields with a fresh event id."""
    return {"event_id": new_event_id(), "time": T0, "producer": producer, **extra}


def one_of_each(task_id: str = "t1", node_id: str = "n1", skill: str = "python") -> list[Event]:
    """A valid event of every type in the catalog (the list covers EVENT_CLASSES)."""
    later = T0 + timedelta(seconds=30)
    meta = SkillMetadata(
        name=skill,
        description="runs code",
        category=SkillCategory.SYSTEM,
        tags=("code",),
        dependencies=("base",),
        resources={"memory_mb": 512, "cpu": "high"},
    )
    spec = TaskSpec(skills=(skill,), payload={"code": "print(1)"}, priority=2, labels={"zone": "a"})
    coord = envelope("coordinator", epoch=1)
    events: list[Event] = [
        LeaderElected(**coord, coordinator_id="c1"),
        ClusterSettingsChanged(**envelope("coordinator", epoch=1), settings={"stale_after": 15}),
        SkillRegistered(**envelope("coordinator", epoch=1), metadata=meta),
        SkillUpdated(
            **envelope("coordinator", epoch=1),
            metadata=meta.model_copy(update={"version": "1.1.0"}),
        ),
        NodeJoined(
            **envelope(f"node:{node_id}"),
            node_id=node_id,
            incarnation="i1",
            capacity=4,
            labels={"zone": "a"},
            cpu_count=2,
            memory_total_mb=2048,
        ),
        SkillInstanceRegistered(**envelope(f"node:{node_id}"), node_id=node_id, skill=skill),
        NodeCapabilitiesReported(
            **envelope(f"node:{node_id}"),
            node_id=node_id,
            unavailable=(
                UnavailableSkill(
                    name="ffmpeg",
                    missing_bins=("ffmpeg",),
                    install=({"kind": "apt", "package": "ffmpeg"},),
                ),
            ),
        ),
        Heartbeat(
            **envelope(f"node:{node_id}"),
            node_id=node_id,
            incarnation="i1",
            cpu_percent=12.5,
            running_tasks=1,
            capacity=4,
            skills=(skill,),
        ),
        TaskSubmitted(
            **envelope("coordinator", epoch=1), task_id=task_id, spec=spec, queue_deadline=later
        ),
        TaskQueued(
            **envelope("coordinator", epoch=1),
            task_id=task_id,
            reason="no node with python has a free slot",
        ),
        TaskAssigned(
            **envelope("coordinator", epoch=1),
            task_id=task_id,
            node_id=node_id,
            attempt=1,
            skills=(skill,),
            payload=spec.payload,
            run_timeout_s=60,
            run_deadline=later,
            candidates=(Candidate(node_id=node_id, running=0, capacity=4),),
        ),
        TaskStarted(**envelope(f"node:{node_id}"), task_id=task_id, node_id=node_id, attempt=1),
        TaskFailed(
            **envelope(f"node:{node_id}"),
            task_id=task_id,
            node_id=node_id,
            attempt=1,
            error="boom",
            retryable=True,
        ),
        TaskRetried(
            **envelope("coordinator", epoch=1),
            task_id=task_id,
            failed_attempt=1,
            next_attempt=2,
            not_before=later,
            error="boom",
        ),
        TaskRequeued(
            **envelope("coordinator", epoch=1),
            task_id=task_id,
            attempt=2,
            node_id=node_id,
            reason="node expired",
        ),
        TaskCancelRequested(
            **envelope("coordinator", epoch=1),
            task_id=task_id,
            node_id=node_id,
            attempt=2,
            reason="user",
        ),
        TaskSucceeded(
            **envelope(f"node:{node_id}"),
            task_id=task_id,
            node_id=node_id,
            attempt=2,
            result={"stdout": "1\n"},
            duration_ms=3.5,
        ),
        TaskCancelled(**envelope("coordinator", epoch=1), task_id=task_id, reason="user"),
        TaskTimedOut(
            **envelope("coordinator", epoch=1),
            task_id=task_id,
            phase="run",
            attempt=2,
            deadline=later,
            observed_at=later,
        ),
        TaskRejected(
            **envelope("coordinator", epoch=1),
            task_id=task_id,
            reason="unknown skills",
            missing_skills=("nope",),
        ),
        SkillInstanceUnregistered(**envelope(f"node:{node_id}"), node_id=node_id, skill=skill),
        SkillInstanceExpired(
            **envelope("coordinator", epoch=1),
            node_id=node_id,
            skill=skill,
            swept_at=later,
            stale_after_s=15,
        ),
        NodeDrainRequested(**envelope("coordinator", epoch=1), node_id=node_id),
        NodeDrainCancelled(**envelope("coordinator", epoch=1), node_id=node_id),
        NodeExpired(
            **envelope("coordinator", epoch=1),
            node_id=node_id,
            incarnation="i1",
            swept_at=later,
            stale_after_s=15,
        ),
        NodeLeft(**envelope(f"node:{node_id}"), node_id=node_id, incarnation="i1"),
        LimitSet(**envelope("coordinator", epoch=1), key="openai", max_running=2, rate="30/m"),
        LimitRemoved(**envelope("coordinator", epoch=1), key="openai"),
        TaskOutput(
            **envelope(f"node:{node_id}"),
            task_id=task_id,
            node_id=node_id,
            attempt=1,
            lines=(
                OutputLine(kind="stdout", text="fetched"),
                OutputLine(kind="progress", text="half", fraction=0.5),
            ),
            progress=0.5,
            progress_message="half",
        ),
        *schedule_events(spec, later),
    ]
    assert {event.type for event in events} == set(EVENT_CLASSES), "factory misses a type"
    return events


def schedule_events(spec: TaskSpec, later: datetime, name: str = "daily") -> list[Event]:
    """One schedule's life: added, skipped, fired, paused, resumed, removed."""
    timing = ScheduleTiming(cron="0 9 * * 1-5", tz="Europe/Berlin", catch_up="once")
    return [
        ScheduleAdded(
            **envelope("coordinator", epoch=1), name=name, timing=timing, task=spec, anchor=T0
        ),
        ScheduleSkipped(
            **envelope("coordinator", epoch=1),
            name=name,
            first=later,
            last=later,
            count=1,
            reason="missed",
        ),
        ScheduleFired(
            **envelope("coordinator", epoch=1),
            name=name,
            occurrence=later + timedelta(days=1),
            task_id=f"{name}-20260102T080000Z",
        ),
        SchedulePaused(**envelope("coordinator", epoch=1), name=name, reason="holiday"),
        ScheduleResumed(
            **envelope("coordinator", epoch=1), name=name, anchor=later + timedelta(days=2)
        ),
        ScheduleRemoved(**envelope("coordinator", epoch=1), name=name),
    ]

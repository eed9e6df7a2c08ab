"""``apply`` for every event type in the catalog: what each changes, and each problem
it is counted as instead (never raised)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from eventsrc.errors import UndecodableEventError
from eventsrc.events import (
    EVENT_CLASSES,
    ClusterSettingsChanged,
    Event,
    Heartbeat,
    LimitRemoved,
    LimitSet,
    NodeCapabilitiesReported,
    NodeDrainCancelled,
    NodeDrainRequested,
    NodeJoined,
    ScheduleAdded,
    ScheduleFired,
    SchedulePaused,
    ScheduleRemoved,
    ScheduleResumed,
    ScheduleSkipped,
    ScheduleTiming,
    SkillInstanceExpired,
    SkillMetadata,
    SkillUpdated,
    TaskCancelRequested,
    TaskOutput,
    TaskQueued,
    TaskRejected,
    TaskSpec,
    UnavailableSkill,
)
from eventsrc.projections.apply import apply, apply_heartbeat, apply_undecodable
from eventsrc.projections.state import ClusterState, Retention
from eventsrc.projections.tasks import AWAITING_PLACEMENT
from tests.factories import T0
from tests.projections.builders import (
    LATER,
    Fold,
    assigned,
    by_node,
    cancelled,
    coord,
    failed,
    instance,
    joined,
    leader,
    left,
    node_expired,
    queued,
    requeued,
    retried,
    skill_registered,
    started,
    submitted,
    succeeded,
    timed_out,
    uninstance,
)


def t(seq: int) -> Any:
    """The server time the fold gives the ``seq``-th event."""
    return Fold.time(seq)


def settings(**values: Any) -> ClusterSettingsChanged:
    return ClusterSettingsChanged(**coord(), settings=values)


def updated(name: str, version: str) -> SkillUpdated:
    return SkillUpdated(**coord(), metadata=SkillMetadata(name=name, version=version))


def node(node_id: str = "n1", incarnation: str = "i1") -> NodeJoined:
    return NodeJoined(
        **by_node(node_id),
        node_id=node_id,
        incarnation=incarnation,
        capacity=3,
        labels={"zone": "a"},
        hostname="box",
        cpu_count=4,
        memory_total_mb=2048,
        gpu_count=1,
    )


def capabilities(node_id: str = "n1") -> NodeCapabilitiesReported:
    gated = UnavailableSkill(name="ffmpeg", missing_bins=("ffmpeg",))
    return NodeCapabilitiesReported(**by_node(node_id), node_id=node_id, unavailable=(gated,))


def limit(key: str = "openai", max_running: int | None = 2, rate: str | None = None) -> LimitSet:
    return LimitSet(**coord(), key=key, max_running=max_running, rate=rate)


def unlimit(key: str = "openai") -> LimitRemoved:
    return LimitRemoved(**coord(), key=key)


def drain(node_id: str = "n1") -> NodeDrainRequested:
    return NodeDrainRequested(**coord(), node_id=node_id)


def undrain(node_id: str = "n1") -> NodeDrainCancelled:
    return NodeDrainCancelled(**coord(), node_id=node_id)


def instance_expired(skill: str = "python", node_id: str = "n1") -> SkillInstanceExpired:
    return SkillInstanceExpired(
        **coord(), node_id=node_id, skill=skill, swept_at=LATER, stale_after_s=15
    )


def rejected(task_id: str = "t1") -> TaskRejected:
    return TaskRejected(**coord(), task_id=task_id, reason="never", missing_skills=("x",))


def cancel_requested(task_id: str = "t1", node_id: str = "n1", attempt: int = 1) -> Event:
    return TaskCancelRequested(
        **coord(), task_id=task_id, node_id=node_id, attempt=attempt, reason="stop"
    )


def output(task_id: str = "t1", node_id: str = "n1") -> TaskOutput:
    return TaskOutput(**by_node(node_id), task_id=task_id, node_id=node_id, attempt=1)


def heartbeat(node_id: str = "n1") -> Heartbeat:
    return Heartbeat(**by_node(node_id), node_id=node_id, incarnation="i1", cpu_percent=7.5)


def schedule_added(name: str = "s1") -> ScheduleAdded:
    timing = ScheduleTiming(every_s=60)
    task = TaskSpec(skills=("python",))
    return ScheduleAdded(**coord(), name=name, timing=timing, task=task, anchor=T0)


def schedule_fired(minute: int = 1, name: str = "s1") -> ScheduleFired:
    at = T0 + timedelta(minutes=minute)
    return ScheduleFired(**coord(), name=name, occurrence=at, task_id=f"{name}-{minute}")


def schedule_skipped(last: int = 3, name: str = "s1") -> ScheduleSkipped:
    first, end = T0 + timedelta(minutes=1), T0 + timedelta(minutes=last)
    return ScheduleSkipped(**coord(), name=name, first=first, last=end, count=last, reason="missed")


def member(*more: Event) -> list[Event]:
    """A catalog skill and node n1 (i1) holding it: seqs 1-3."""
    return [skill_registered("python"), joined("n1"), instance("python", "n1"), *more]


def on_n1(*more: Event) -> list[Event]:
    """Task t1 submitted (seq 4) and assigned to n1 (seq 5)."""
    return member(submitted("t1"), assigned("t1", "n1"), *more)


Before = Callable[[], list[Event]]
Observe = Callable[[ClusterState], Any]


def fold(before: Before, event: Event, retention: Retention | None = None) -> ClusterState:
    run = Fold.with_retention(retention) if retention else Fold()
    run.fold(*before(), event)
    return run.state


def task_of(state: ClusterState) -> Any:
    return state.tasks["t1"]


APPLIED: list[Any] = [
    pytest.param(
        lambda: [limit(rate="5/s")],
        lambda: limit(max_running=3),
        lambda s: (s.limits["openai"].max_running, s.limits["openai"].rate),
        (3, None),
        id="LimitSet",
    ),
    pytest.param(
        lambda: [limit()],
        unlimit,
        lambda s: s.limits,
        {},
        id="LimitRemoved",
    ),
    pytest.param(
        list, lambda: leader(2, "c2"), lambda s: (s.epoch, s.leader), (2, "c2"), id="LeaderElected"
    ),
    pytest.param(
        lambda: [leader(1)],
        lambda: leader(3, "c3"),
        lambda s: (s.epoch, s.leader),
        (3, "c3"),
        id="LeaderElected-newer",
    ),
    pytest.param(
        lambda: [settings(stale_after=15, sweep=1)],
        lambda: settings(sweep=2),
        lambda s: s.settings,
        {"stale_after": 15, "sweep": 2},
        id="ClusterSettingsChanged-merges",
    ),
    pytest.param(
        list,
        lambda: skill_registered("python", "base"),
        lambda s: (
            s.skills["python"].dependencies,
            s.skills["python"].created_at,
            s.skills["python"].updated_at,
            s.instances["python"],
        ),
        (("base",), t(1), t(1), {}),
        id="SkillRegistered",
    ),
    pytest.param(
        lambda: [skill_registered("python")],
        lambda: updated("python", "2.0.0"),
        lambda s: (
            s.skills["python"].version,
            s.skills["python"].created_at,
            s.skills["python"].updated_at,
        ),
        ("2.0.0", t(1), t(2)),
        id="SkillUpdated-keeps-created",
    ),
    pytest.param(
        list,
        lambda: updated("python", "2.0.0"),
        lambda s: (s.skills["python"].created_at, s.skills["python"].updated_at),
        (t(1), t(1)),
        id="SkillUpdated-of-a-new-name",
    ),
    pytest.param(
        list,
        node,
        lambda s: (
            s.nodes["n1"].state,
            s.nodes["n1"].incarnation,
            s.nodes["n1"].capacity,
            s.nodes["n1"].labels,
            s.nodes["n1"].hostname,
            (s.nodes["n1"].cpu_count, s.nodes["n1"].memory_total_mb, s.nodes["n1"].gpu_count),
            s.nodes["n1"].joined_at,
        ),
        ("alive", "i1", 3, {"zone": "a"}, "box", (4, 2048, 1), t(1)),
        id="NodeJoined",
    ),
    pytest.param(
        lambda: member(drain(), left("n1")),
        lambda: node(incarnation="i2"),
        lambda s: (s.nodes["n1"].state, s.nodes["n1"].drained, s.nodes["n1"].left_at),
        ("draining", True, None),
        id="NodeJoined-stays-drained",
    ),
    pytest.param(
        member,
        lambda: node(incarnation="i2"),
        lambda s: (
            s.instances["python"]["n1"].status,
            s.node_skills.get("n1"),
            s.holders("python"),
        ),
        ("offline", None, ()),
        id="NodeJoined-new-incarnation-drops-instances",
    ),
    pytest.param(
        member,
        lambda: node(incarnation="i1"),
        lambda s: (s.instances["python"]["n1"].status, s.holders("python")),
        ("active", ("n1",)),
        id="NodeJoined-same-incarnation-keeps-them",
    ),
    pytest.param(
        lambda: [joined("n1"), left("n1")],
        lambda: joined("n1", incarnation="i2"),
        lambda s: (s.nodes["n1"].state, s.nodes["n1"].left_at, s.nodes["n1"].joined_at),
        ("alive", None, t(3)),
        id="NodeJoined-after-leaving",
    ),
    pytest.param(
        lambda: [skill_registered("python"), joined("n1")],
        lambda: instance("python", "n1"),
        lambda s: (
            s.instances["python"]["n1"].status,
            s.instances["python"]["n1"].registered_at,
            s.node_skills["n1"],
            s.instance_registrations,
            s.holders("python"),
        ),
        ("active", t(3), {"python"}, 1, ("n1",)),
        id="SkillInstanceRegistered",
    ),
    pytest.param(
        lambda: member(uninstance("python", "n1")),
        lambda: instance("python", "n1"),
        lambda s: (
            s.instances["python"]["n1"].status,
            s.instances["python"]["n1"].registered_at,
            s.instance_registrations,
            s.instance_unregistrations,
        ),
        ("active", t(5), 2, 1),
        id="SkillInstanceRegistered-again",
    ),
    pytest.param(
        member,
        capabilities,
        lambda s: [u.lacks() for u in s.nodes["n1"].unavailable],
        [("bin:ffmpeg",)],
        id="NodeCapabilitiesReported",
    ),
    pytest.param(
        member,
        lambda: submitted("t1"),
        lambda s: (
            task_of(s).state,
            task_of(s).attempt,
            task_of(s).reason,
            task_of(s).submitted_at,
            task_of(s).queued_since,
            task_of(s).queue_deadline,
            "t1" in s.open_tasks and "t1" in s.waiting,
        ),
        ("queued", 1, AWAITING_PLACEMENT, t(4), t(4), LATER, True),
        id="TaskSubmitted",
    ),
    pytest.param(
        lambda: member(submitted("t1")),
        lambda: TaskQueued(**coord(), task_id="t1", reason="why", would_qualify=("n2 would",)),
        lambda s: (task_of(s).state, task_of(s).reason, task_of(s).would_qualify),
        ("queued", "why", ("n2 would",)),
        id="TaskQueued",
    ),
    pytest.param(
        lambda: member(submitted("t1")),
        rejected,
        lambda s: (
            task_of(s).state,
            task_of(s).reason,
            task_of(s).missing_skills,
            task_of(s).finished_at,
            "t1" in s.open_tasks,
        ),
        ("rejected", "never", ("x",), t(5), False),
        id="TaskRejected",
    ),
    pytest.param(
        lambda: member(submitted("t1")),
        lambda: assigned("t1", "n1"),
        lambda s: (
            task_of(s).state,
            task_of(s).node_id,
            task_of(s).run_deadline,
            task_of(s).reason,
            s.nodes["n1"].running,
            s.instances["python"]["n1"].usage_count,
            "t1" in s.waiting,
        ),
        ("assigned", "n1", LATER, "", {"t1"}, 1, False),
        id="TaskAssigned",
    ),
    pytest.param(
        on_n1,
        lambda: started("t1", "n1"),
        lambda s: (task_of(s).state, task_of(s).started),
        ("running", True),
        id="TaskStarted",
    ),
    pytest.param(
        lambda: on_n1(started("t1", "n1")),
        lambda: succeeded("t1", "n1", result={"out": 1}),
        lambda s: (
            task_of(s).state,
            task_of(s).result,
            task_of(s).finished_at,
            s.nodes["n1"].running,
            s.nodes["n1"].success_count,
            s.instances["python"]["n1"].success_count,
            "t1" in s.open_tasks,
        ),
        ("succeeded", {"out": 1}, t(7), set(), 1, 1, False),
        id="TaskSucceeded",
    ),
    pytest.param(
        on_n1,
        lambda: failed("t1", "n1", retryable=False, error="bad input"),
        lambda s: (
            task_of(s).state,
            task_of(s).error,
            s.nodes["n1"].failure_count,
            s.instances["python"]["n1"].failure_count,
            s.nodes["n1"].running,
        ),
        ("failed", "bad input", 1, 1, set()),
        id="TaskFailed",
    ),
    pytest.param(
        on_n1,
        lambda: failed("t1", "n1", retryable=True),
        lambda s: (
            task_of(s).state,
            task_of(s).retry_pending,
            task_of(s).node_id,
            task_of(s).reason,
            s.nodes["n1"].running,
            "t1" in s.waiting,
        ),
        ("queued", True, None, "attempt 1 failed (boom); retry pending", set(), True),
        id="TaskFailed-retryable",
    ),
    pytest.param(
        lambda: member(submitted("t1", max_attempts=1), assigned("t1", "n1")),
        lambda: failed("t1", "n1", retryable=True),
        lambda s: (task_of(s).state, task_of(s).retry_pending),
        ("failed", False),
        id="TaskFailed-retryable-at-the-last-attempt",
    ),
    pytest.param(
        lambda: on_n1(failed("t1", "n1", retryable=True)),
        lambda: retried("t1", 1),
        lambda s: (
            task_of(s).attempt,
            task_of(s).retry_pending,
            task_of(s).not_before,
            task_of(s).queued_since,
            task_of(s).reason,
        ),
        (2, False, LATER, t(7), f"retry: attempt 2 not before {LATER.isoformat()}"),
        id="TaskRetried",
    ),
    pytest.param(
        lambda: on_n1(started("t1", "n1")),
        lambda: requeued("t1", "n1"),
        lambda s: (
            task_of(s).state,
            task_of(s).attempt,
            task_of(s).node_id,
            task_of(s).started,
            task_of(s).queued_since,
            task_of(s).reason,
            s.nodes["n1"].running,
        ),
        ("queued", 2, None, False, t(7), "requeued: node expired", set()),
        id="TaskRequeued",
    ),
    pytest.param(
        lambda: member(submitted("t1")),
        lambda: timed_out("t1", "queue"),
        lambda s: (task_of(s).state, task_of(s).reason),
        ("timed_out", f"queue deadline {LATER.isoformat()} passed"),
        id="TaskTimedOut-queue",
    ),
    pytest.param(
        on_n1,
        lambda: timed_out("t1", "run", attempt=1),
        lambda s: (task_of(s).state, task_of(s).reason, s.nodes["n1"].running),
        ("timed_out", f"run deadline {LATER.isoformat()} passed", set()),
        id="TaskTimedOut-run",
    ),
    pytest.param(
        lambda: on_n1(started("t1", "n1")),
        cancel_requested,
        lambda s: (task_of(s).state, task_of(s).cancel_requested),
        ("running", True),
        id="TaskCancelRequested",
    ),
    pytest.param(
        on_n1,
        lambda: cancelled("t1", "user"),
        lambda s: (task_of(s).state, task_of(s).reason, s.nodes["n1"].running),
        ("cancelled", "user", set()),
        id="TaskCancelled",
    ),
    pytest.param(
        lambda: member(submitted("t1")),
        lambda: cancelled("t1", ""),
        lambda s: (task_of(s).state, task_of(s).reason),
        ("cancelled", "cancelled"),
        id="TaskCancelled-without-reason",
    ),
    pytest.param(
        member,
        lambda: uninstance("python", "n1"),
        lambda s: (
            s.instances["python"]["n1"].status,
            s.instance_unregistrations,
            s.node_skills["n1"],
            s.holders("python"),
        ),
        ("unregistered", 1, set(), ()),
        id="SkillInstanceUnregistered",
    ),
    pytest.param(
        member,
        instance_expired,
        lambda s: (
            s.instances["python"]["n1"].status,
            s.instance_unregistrations,
            s.holders("python"),
        ),
        ("expired", 0, ()),
        id="SkillInstanceExpired",
    ),
    pytest.param(
        member,
        drain,
        lambda s: (s.nodes["n1"].state, s.nodes["n1"].drained, s.holders("python")),
        ("draining", True, ("n1",)),
        id="NodeDrainRequested",
    ),
    pytest.param(
        lambda: member(drain()),
        undrain,
        lambda s: (s.nodes["n1"].state, s.nodes["n1"].drained),
        ("alive", False),
        id="NodeDrainCancelled",
    ),
    pytest.param(
        lambda: member(drain(), left("n1")),
        undrain,
        lambda s: (s.nodes["n1"].state, s.nodes["n1"].drained),
        ("left", False),
        id="NodeDrainCancelled-of-a-departed-node",
    ),
    pytest.param(
        member,
        lambda: node_expired("n1"),
        lambda s: (
            s.nodes["n1"].state,
            s.nodes["n1"].left_at,
            s.instances["python"]["n1"].status,
            s.holders("python"),
        ),
        ("expired", t(4), "expired", ()),
        id="NodeExpired",
    ),
    pytest.param(
        member,
        lambda: left("n1"),
        lambda s: (
            s.nodes["n1"].state,
            s.nodes["n1"].left_at,
            s.instances["python"]["n1"].status,
            s.holders("python"),
        ),
        ("left", t(4), "offline", ()),
        id="NodeLeft",
    ),
    pytest.param(
        list,
        schedule_added,
        lambda s: (s.schedules["s1"].cursor, s.schedules["s1"].added_at, s.schedules["s1"].paused),
        (T0, t(1), False),
        id="ScheduleAdded",
    ),
    pytest.param(
        lambda: [schedule_added()],
        schedule_fired,
        lambda s: (
            s.schedules["s1"].cursor,
            s.schedules["s1"].fired,
            s.schedules["s1"].last_task_id,
            s.schedules["s1"].pending_task,
        ),
        (T0 + timedelta(minutes=1), 1, "s1-1", "s1-1"),
        id="ScheduleFired",
    ),
    pytest.param(
        lambda: [schedule_added()],
        schedule_skipped,
        lambda s: (s.schedules["s1"].cursor, s.schedules["s1"].skipped),
        (T0 + timedelta(minutes=3), 3),
        id="ScheduleSkipped",
    ),
    pytest.param(
        lambda: [schedule_added()],
        lambda: SchedulePaused(**coord(), name="s1"),
        lambda s: s.schedules["s1"].paused,
        True,
        id="SchedulePaused",
    ),
    pytest.param(
        lambda: [schedule_added(), SchedulePaused(**coord(), name="s1")],
        lambda: ScheduleResumed(**coord(), name="s1", anchor=T0 + timedelta(hours=1)),
        lambda s: (s.schedules["s1"].paused, s.schedules["s1"].cursor),
        (False, T0 + timedelta(hours=1)),
        id="ScheduleResumed",
    ),
    pytest.param(
        lambda: [schedule_added()],
        lambda: ScheduleRemoved(**coord(), name="s1"),
        lambda s: (s.schedules, s.aggregate_seq["evt.schedule.s1"]),
        ({}, 2),
        id="ScheduleRemoved",
    ),
]


@pytest.mark.parametrize(("before", "event", "observe", "expected"), APPLIED)
def test_an_event_changes_the_state_as_its_type_says(
    before: Before, event: Callable[[], Event], observe: Observe, expected: Any
) -> None:
    state = fold(before, event())
    assert observe(state) == expected
    assert state.problems.recent == []


PROBLEMS: list[Any] = [
    pytest.param(
        list,
        unlimit,
        "illegal",
        "LimitRemoved for openai, which has no limit",
        id="LimitRemoved-unknown",
    ),
    pytest.param(list, heartbeat, "illegal", "a heartbeat in the events stream", id="Heartbeat"),
    pytest.param(list, output, "illegal", "task output in the events stream", id="TaskOutput"),
    pytest.param(
        lambda: [leader(2)],
        lambda: queued("t1", epoch=1),
        "fenced",
        "TaskQueued of epoch 1; leader epoch is 2",
        id="fenced-older-epoch",
    ),
    pytest.param(
        lambda: [leader(2)],
        lambda: leader(2, "c9"),
        "fenced",
        "LeaderElected of epoch 2; leader epoch is 2",
        id="fenced-same-leader-epoch",
    ),
    pytest.param(
        lambda: [leader(3)],
        lambda: leader(2, "c9"),
        "fenced",
        "LeaderElected of epoch 2; leader epoch is 3",
        id="fenced-older-leader",
    ),
    pytest.param(
        lambda: member(submitted("t1")),
        lambda: submitted("t1"),
        "illegal",
        "task t1 submitted twice",
        id="TaskSubmitted-twice",
    ),
    pytest.param(
        list,
        lambda: queued("t9"),
        "illegal",
        "TaskQueued for unknown task t9",
        id="TaskQueued-unknown",
    ),
    pytest.param(
        on_n1,
        lambda: queued("t1"),
        "illegal",
        "TaskQueued for t1 while assigned",
        id="TaskQueued-assigned",
    ),
    pytest.param(
        on_n1, rejected, "illegal", "TaskRejected for t1 while assigned", id="TaskRejected-assigned"
    ),
    pytest.param(
        lambda: member(submitted("t1")),
        lambda: assigned("t1", "n1", 2),
        "illegal",
        "TaskAssigned attempt 2 for t1 while queued at attempt 1",
        id="TaskAssigned-wrong-attempt",
    ),
    pytest.param(
        lambda: on_n1(failed("t1", "n1", retryable=True)),
        lambda: assigned("t1", "n1", 1),
        "illegal",
        "TaskAssigned attempt 1 for t1 while queued at attempt 1",
        id="TaskAssigned-before-the-retry",
    ),
    pytest.param(
        on_n1,
        lambda: started("t1", "n2"),
        "late",
        "TaskStarted for t1 attempt 1 on n2; live attempt is 1 on n1",
        id="TaskStarted-other-node",
    ),
    pytest.param(
        lambda: member(submitted("t1")),
        lambda: started("t1", "n1"),
        "late",
        "TaskStarted for t1 attempt 1 while queued",
        id="TaskStarted-while-queued",
    ),
    pytest.param(
        lambda: on_n1(cancelled("t1")),
        lambda: succeeded("t1", "n1"),
        "late",
        "TaskSucceeded for t1 after it ended cancelled",
        id="TaskSucceeded-after-cancel",
    ),
    pytest.param(
        lambda: on_n1(requeued("t1", "n1"), assigned("t1", "n1", 2)),
        lambda: succeeded("t1", "n1", 1),
        "late",
        "TaskSucceeded for t1 attempt 1 on n1; live attempt is 2 on n1",
        id="TaskSucceeded-of-a-requeued-attempt",
    ),
    pytest.param(
        list,
        lambda: failed("t9", "n1", retryable=True),
        "illegal",
        "TaskFailed for unknown task t9",
        id="TaskFailed-unknown",
    ),
    pytest.param(
        on_n1,
        lambda: retried("t1", 1),
        "illegal",
        "TaskRetried for t1 without a pending retry",
        id="TaskRetried-without-failure",
    ),
    pytest.param(
        lambda: on_n1(failed("t1", "n1", retryable=True), cancelled("t1")),
        lambda: retried("t1", 1),
        "late",
        "TaskRetried for t1 after it ended cancelled",
        id="TaskRetried-after-cancel",
    ),
    pytest.param(
        lambda: on_n1(succeeded("t1", "n1")),
        lambda: requeued("t1", "n1"),
        "late",
        "TaskRequeued for t1 after it ended succeeded",
        id="TaskRequeued-after-success",
    ),
    pytest.param(
        on_n1,
        lambda: timed_out("t1", "queue"),
        "illegal",
        "queue timeout for t1 while assigned",
        id="TaskTimedOut-queue-while-assigned",
    ),
    pytest.param(
        on_n1,
        lambda: timed_out("t1", "run", attempt=2),
        "late",
        "run timeout for t1 attempt 2: not live",
        id="TaskTimedOut-run-other-attempt",
    ),
    pytest.param(
        lambda: on_n1(succeeded("t1", "n1")),
        lambda: timed_out("t1", "run", attempt=1),
        "late",
        "TaskTimedOut for t1 after it ended succeeded",
        id="TaskTimedOut-after-success",
    ),
    pytest.param(
        on_n1,
        lambda: cancel_requested(attempt=2),
        "late",
        "TaskCancelRequested for t1 attempt 2 on n1; live attempt is 1 on n1",
        id="TaskCancelRequested-other-attempt",
    ),
    pytest.param(
        lambda: member(submitted("t1"), cancelled("t1")),
        lambda: cancelled("t1"),
        "late",
        "TaskCancelled for t1 after it ended cancelled",
        id="TaskCancelled-twice",
    ),
    pytest.param(
        lambda: member(uninstance("python", "n1")),
        lambda: uninstance("python", "n1"),
        "late",
        "SkillInstanceUnregistered for python on n1: not active",
        id="SkillInstanceUnregistered-twice",
    ),
    pytest.param(
        list,
        instance_expired,
        "late",
        "SkillInstanceExpired for python on n1: not active",
        id="SkillInstanceExpired-never-registered",
    ),
    pytest.param(
        list, lambda: left("n9"), "illegal", "NodeLeft for unknown node n9", id="NodeLeft-unknown"
    ),
    pytest.param(
        lambda: member(left("n1")),
        lambda: left("n1"),
        "late",
        "NodeLeft for n1 while left",
        id="NodeLeft-twice",
    ),
    pytest.param(
        member,
        lambda: node_expired("n1", "i0"),
        "late",
        "NodeExpired for n1 incarnation i0: not the live one",
        id="NodeExpired-other-incarnation",
    ),
    pytest.param(
        list,
        lambda: drain("n9"),
        "illegal",
        "NodeDrainRequested for unknown node n9",
        id="NodeDrainRequested-unknown",
    ),
    pytest.param(
        lambda: member(left("n1")),
        # A drain from before drains held across re-joins meant "until it leaves".
        lambda: NodeDrainRequested(**coord(), node_id="n1", until_undrained=False),
        "late",
        "NodeDrainRequested for n1 while left",
        id="NodeDrainRequested-departed",
    ),
    pytest.param(
        list,
        lambda: undrain("n9"),
        "illegal",
        "NodeDrainCancelled for unknown node n9",
        id="NodeDrainCancelled-unknown",
    ),
    pytest.param(
        member,
        undrain,
        "late",
        "NodeDrainCancelled for n1: not drained",
        id="NodeDrainCancelled-not-drained",
    ),
    pytest.param(
        list,
        lambda: capabilities("n9"),
        "illegal",
        "capabilities for unknown node n9",
        id="NodeCapabilitiesReported-unknown",
    ),
    pytest.param(
        list,
        schedule_fired,
        "illegal",
        "ScheduleFired for unknown schedule s1",
        id="ScheduleFired-unknown",
    ),
    pytest.param(
        lambda: [schedule_added(), schedule_fired(2)],
        lambda: schedule_fired(2),
        "late",
        "schedule s1 fired for 2026-01-01T00:02:00+00:00, handled already (up to "
        "2026-01-01T00:02:00+00:00)",
        id="ScheduleFired-twice",
    ),
    pytest.param(
        lambda: [schedule_added(), schedule_fired(5)],
        lambda: schedule_skipped(3),
        "late",
        "schedule s1 skipped up to 2026-01-01T00:03:00+00:00, handled already (up to "
        "2026-01-01T00:05:00+00:00)",
        id="ScheduleSkipped-handled",
    ),
    pytest.param(
        lambda: [schedule_added()],
        schedule_added,
        "illegal",
        "schedule s1 added twice",
        id="ScheduleAdded-twice",
    ),
]


@pytest.mark.parametrize(("before", "event", "kind", "text"), PROBLEMS)
def test_an_event_that_cannot_apply_is_counted_as_a_problem(
    before: Before, event: Callable[[], Event], kind: str, text: str
) -> None:
    history = before()
    state = fold(lambda: history, event())
    seq = len(history) + 1
    problems = state.problems
    assert problems.recent == [f"seq {seq}: {text}"]
    counts = {k: getattr(problems, k) for k in ("undecodable", "illegal", "late", "fenced")}
    assert counts == {k: int(k == kind) for k in counts}
    assert state.last_seq == seq


def test_every_event_type_of_the_catalog_is_covered() -> None:
    applied = {p.values[1]().type for p in APPLIED}
    problems = {p.values[1]().type for p in PROBLEMS}
    assert applied == set(EVENT_CLASSES) - {"Heartbeat", "TaskOutput"}
    assert applied | problems == set(EVENT_CLASSES)


def test_an_event_at_or_below_the_position_is_skipped() -> None:
    run = Fold()
    run.fold(*member())
    apply(run.state, joined("n2"), seq=3, time=T0)
    apply(run.state, joined("n3"), seq=2, time=T0)
    assert sorted(run.state.nodes) == ["n1"] and run.state.last_seq == 3


def test_node_events_are_never_fenced() -> None:
    # Assigned at epoch 1; a new leader (epoch 5) takes over; the node's word still counts.
    state = fold(lambda: [*on_n1(), leader(5), queued("t2", epoch=1)], started("t1", "n1"))
    assert (task_of(state).state, state.epoch) == ("running", 5)
    assert state.problems.fenced == 1  # the coordinator event of the old epoch


def test_every_stored_event_moves_its_aggregate_position_even_a_problem() -> None:
    state = fold(on_n1, started("t1", "n2"))  # late, still stored
    assert state.aggregate_seq["evt.task.t1.>"] == 6
    assert state.aggregate_seq["evt.node.n1"] == 3


def test_a_stray_result_is_tracked_bounded() -> None:
    retention = Retention(max_finished=2)
    state = fold(list, succeeded("s3", "n1"), retention)
    run = Fold(state, state.last_seq)
    run.fold(succeeded("s1", "n1"), succeeded("s2", "n1"))
    assert list(state.strays) == ["evt.task.s1.>", "evt.task.s2.>"]
    assert "evt.task.s3.>" not in state.aggregate_seq
    assert state.aggregate_seq["evt.task.s2.>"] == 3


def test_finished_tasks_beyond_the_retention_are_evicted() -> None:
    state = fold(
        lambda: member(submitted("t0"), cancelled("t0"), submitted("t1")),
        cancelled("t1"),
        Retention(max_finished=1),
    )
    assert list(state.tasks) == ["t1"] and state.evicted == 1
    assert "evt.task.t0.>" not in state.aggregate_seq


def test_an_undecodable_message_is_counted_and_passed() -> None:
    state = fold(member, joined("n2"))
    apply_undecodable(
        state, UndecodableEventError("not json", seq=9, subject="evt.task.x.lifecycle")
    )
    assert (state.last_seq, state.problems.undecodable) == (9, 1)
    assert state.problems.recent == ["seq 9: not json"]
    assert state.aggregate_seq["evt.task.x.>"] == 9


def test_a_heartbeat_is_soft_state_newest_first() -> None:
    state = fold(member, joined("n2"))
    apply_heartbeat(state, heartbeat(), seq=5, time=LATER)
    apply_heartbeat(state, heartbeat().model_copy(update={"cpu_percent": 99.0}), seq=4, time=T0)
    liveness = state.liveness["n1"]
    assert (liveness.last_at, liveness.last_seq, liveness.cpu_percent) == (LATER, 5, 7.5)
    assert (state.heartbeat_seq, state.last_seq) == (5, 4)

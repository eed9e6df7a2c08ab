"""Replay properties over random, plausible event histories (hypothesis).

A history interleaves, per task, a walk through its lifecycle (with now and then a
stale attempt or a wrong node), per node a membership story (joins, instances, new
incarnations, leaving, expiry), catalog events, leader elections and random noise of
every event type. So many events are late, illegal or fenced, as in a real stream after
crashes and failovers. Sequences sometimes repeat (redelivery) or jump (other
subjects), and undecodable records appear.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventsrc.errors import UndecodableEventError
from eventsrc.events import (
    EVENT_CLASSES,
    ClusterSettingsChanged,
    Event,
    EventBase,
    Heartbeat,
    LeaderElected,
    LimitRemoved,
    LimitSet,
    LimitUse,
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
)
from eventsrc.projections.apply import apply, apply_undecodable
from eventsrc.projections.canonical import state_hash, to_canonical
from eventsrc.projections.snapshot import encode_snapshot, restore_snapshot, snapshot_document
from eventsrc.projections.state import ACTIVE_TASK_STATES, ClusterState, Retention
from tests.factories import T0

TASKS = ("a", "b", "c", "d", "e")
NODES = ("n1", "n2", "n3")
SKILLS = ("python", "ml", "search")
LATER = T0 + timedelta(hours=1)

tasks = st.sampled_from(TASKS)
nodes = st.sampled_from(NODES)
skills = st.sampled_from(SKILLS)
incarnations = st.sampled_from(("i1", "i2", "i3"))
attempts = st.integers(1, 4)
schedules = st.sampled_from(("s1", "s2"))
occurrences = st.integers(1, 5).map(lambda minutes: T0 + timedelta(minutes=minutes))
short_text = st.sampled_from(("", "boom", "no free slot", "user", "节点离线"))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | short_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(short_text, inner, max_size=3),
    max_leaves=6,
)


@dataclass(frozen=True)
class Draft:
    """An event type and its fields; envelope, epoch, sequence and time come later."""

    cls: type[EventBase]
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Garbage:
    """A stored message that is not an event."""

    subject: str


def draft(cls: type[EventBase], **fields: Any) -> st.SearchStrategy[Draft]:
    return st.fixed_dictionaries(fields).map(lambda values: Draft(cls, values))


metadata = st.builds(
    SkillMetadata,
    name=skills,
    category=st.sampled_from(list(SkillCategory)),
    version=st.sampled_from(("1.0.0", "1.1.0")),
    dependencies=st.lists(skills, max_size=2, unique=True).map(tuple),
)
limit_keys = st.sampled_from(("openai", "search"))
rates = st.sampled_from(("2/s", "3/m", "1/10s"))
specs = st.builds(
    TaskSpec,
    skills=st.lists(skills, min_size=1, max_size=2, unique=True).map(tuple),
    payload=json_values,
    max_attempts=st.integers(1, 3),
    limit_key=st.none() | limit_keys,
    delay_s=st.none() | st.just(5.0),
    not_before=st.none() | st.just(LATER),
) | st.builds(
    TaskSpec,
    skills=st.just(("python",)),
    payload=st.none() | st.dictionaries(st.sampled_from(("x", "y")), json_values, max_size=2),
    after=tasks,
    deadline=st.none() | st.just(LATER),
)
limit_uses = st.builds(
    LimitUse,
    name=limit_keys,
    running=st.integers(0, 3),
    rate=st.none() | rates,
    window_starts=st.lists(st.just(LATER), max_size=2).map(tuple),
)
unavailable = st.builds(
    UnavailableSkill, name=skills, missing_bins=st.lists(short_text, max_size=2).map(tuple)
)

NOISE: dict[type[EventBase], st.SearchStrategy[Draft]] = {
    SkillRegistered: draft(SkillRegistered, metadata=metadata),
    SkillUpdated: draft(SkillUpdated, metadata=metadata),
    NodeJoined: draft(
        NodeJoined,
        node_id=nodes,
        incarnation=incarnations,
        capacity=st.integers(1, 3),
        labels=st.dictionaries(st.sampled_from(("zone", "gpu")), short_text, max_size=2),
    ),
    NodeLeft: draft(NodeLeft, node_id=nodes, incarnation=incarnations),
    NodeExpired: draft(
        NodeExpired,
        node_id=nodes,
        incarnation=incarnations,
        swept_at=st.just(LATER),
        stale_after_s=st.just(15.0),
    ),
    NodeDrainRequested: draft(NodeDrainRequested, node_id=nodes),
    NodeDrainCancelled: draft(NodeDrainCancelled, node_id=nodes),
    SkillInstanceRegistered: draft(SkillInstanceRegistered, node_id=nodes, skill=skills),
    SkillInstanceUnregistered: draft(SkillInstanceUnregistered, node_id=nodes, skill=skills),
    SkillInstanceExpired: draft(
        SkillInstanceExpired,
        node_id=nodes,
        skill=skills,
        last_seen_at=st.none() | st.just(T0),
        swept_at=st.just(LATER),
        stale_after_s=st.just(15.0),
    ),
    NodeCapabilitiesReported: draft(
        NodeCapabilitiesReported,
        node_id=nodes,
        unavailable=st.lists(unavailable, max_size=2).map(tuple),
    ),
    TaskSubmitted: draft(
        TaskSubmitted,
        task_id=tasks,
        spec=specs,
        queue_deadline=st.just(LATER),
        schedule=st.none() | schedules,
    ),
    TaskQueued: draft(
        TaskQueued,
        task_id=tasks,
        reason=short_text,
        would_qualify=st.lists(nodes, max_size=2).map(tuple),
    ),
    TaskRejected: draft(
        TaskRejected,
        task_id=tasks,
        reason=short_text,
        missing_skills=st.lists(skills, max_size=2).map(tuple),
    ),
    TaskAssigned: draft(
        TaskAssigned,
        task_id=tasks,
        node_id=nodes,
        attempt=attempts,
        skills=st.just(("python",)),
        run_timeout_s=st.just(60.0),
        run_deadline=st.just(LATER),
        limits=st.lists(limit_uses, max_size=2).map(tuple),
    ),
    TaskCancelRequested: draft(TaskCancelRequested, task_id=tasks, node_id=nodes, attempt=attempts),
    TaskStarted: draft(TaskStarted, task_id=tasks, node_id=nodes, attempt=attempts),
    TaskSucceeded: draft(
        TaskSucceeded, task_id=tasks, node_id=nodes, attempt=attempts, result=json_values
    ),
    TaskFailed: draft(
        TaskFailed,
        task_id=tasks,
        node_id=nodes,
        attempt=attempts,
        error=short_text,
        retryable=st.booleans(),
    ),
    TaskRetried: draft(
        TaskRetried,
        task_id=tasks,
        failed_attempt=attempts,
        next_attempt=st.integers(2, 5),
        not_before=st.just(LATER),
    ),
    TaskRequeued: draft(
        TaskRequeued, task_id=tasks, node_id=nodes, attempt=attempts, reason=short_text
    ),
    TaskTimedOut: draft(
        TaskTimedOut,
        task_id=tasks,
        phase=st.sampled_from(("queue", "run")),
        attempt=st.integers(0, 3),
        deadline=st.just(LATER),
        observed_at=st.just(LATER),
    ),
    TaskCancelled: draft(TaskCancelled, task_id=tasks, reason=short_text),
    LeaderElected: draft(LeaderElected, coordinator_id=st.sampled_from(("c1", "c2"))),
    ClusterSettingsChanged: draft(
        ClusterSettingsChanged,
        settings=st.dictionaries(st.sampled_from(("stale_after", "queue_limit")), json_values),
    ),
    LimitSet: draft(
        LimitSet, key=limit_keys, max_running=st.none() | st.integers(1, 3), rate=st.none() | rates
    ),
    LimitRemoved: draft(LimitRemoved, key=limit_keys),
    Heartbeat: draft(Heartbeat, node_id=nodes),
    TaskOutput: draft(
        TaskOutput, task_id=tasks, node_id=nodes, attempt=attempts, progress=st.just(0.5)
    ),
    ScheduleAdded: draft(
        ScheduleAdded,
        name=schedules,
        timing=st.sampled_from((ScheduleTiming(every_s=60), ScheduleTiming(cron="0 9 * * *"))),
        task=specs,
        anchor=st.just(T0),
    ),
    SchedulePaused: draft(SchedulePaused, name=schedules),
    ScheduleResumed: draft(ScheduleResumed, name=schedules, anchor=occurrences),
    ScheduleRemoved: draft(ScheduleRemoved, name=schedules),
    ScheduleFired: draft(ScheduleFired, name=schedules, occurrence=occurrences, task_id=tasks),
    ScheduleSkipped: draft(
        ScheduleSkipped,
        name=schedules,
        first=occurrences,
        last=occurrences,
        count=st.integers(1, 3),
        reason=short_text,
    ),
}
assert {cls.model_fields["type"].default for cls in NOISE} == set(EVENT_CLASSES)

garbage = st.builds(
    Garbage,
    subject=st.sampled_from(("evt.node.n1", "evt.task.a.lifecycle", "evt.task.zz.from.n1")),
)

TASK_MOVES = (
    "queued", "assign", "start", "succeed", "fail", "retry", "requeue", "cancel_request",
    "cancel", "queue_timeout", "run_timeout", "reject",
)  # fmt: skip
# What the coordinator and a node would do next in each phase of a task (repeats weigh).
LEGAL_MOVES = {
    "queued": ("queued", "assign", "assign", "assign", "cancel", "queue_timeout", "reject"),
    "retry": ("retry", "retry", "retry", "cancel", "queue_timeout"),
    "active": (
        "start", "start", "succeed", "succeed", "fail", "fail", "requeue", "cancel_request",
        "cancel", "run_timeout",
    ),
    "done": TASK_MOVES,
}  # fmt: skip


@st.composite
def task_story(draw: st.DrawFn, task_id: str) -> list[Draft]:
    """A walk through one task's lifecycle that is mostly, not always, legal.

    The walk keeps a rough model of the task (phase, attempt, node) to pick mostly
    legal moves; one move in eight is any move, and one event in eight speaks of a
    stale attempt or another node. Fencing and interleaving break the model further.
    """
    story: list[Draft] = []

    def add(cls: type[EventBase], **fields: Any) -> None:
        story.append(Draft(cls, {"task_id": task_id, **fields}))

    spec = draw(specs)
    add(TaskSubmitted, spec=spec, queue_deadline=LATER)
    phase, attempt, node = "queued", 1, draw(nodes)
    for _ in range(draw(st.integers(0, 9))):
        anything = draw(st.integers(0, 7)) == 0
        move = draw(st.sampled_from(TASK_MOVES if anything else LEGAL_MOVES[phase]))
        stale = draw(st.integers(0, 7)) == 0
        a = draw(attempts) if stale else attempt
        n = draw(nodes) if stale else node
        match move:
            case "queued":
                add(TaskQueued, reason="no free slot")
            case "assign":
                node = n = draw(nodes)
                add(TaskAssigned, node_id=n, attempt=a, skills=("python",), run_timeout_s=60.0,
                    run_deadline=LATER)  # fmt: skip
                phase = "active"
            case "start":
                add(TaskStarted, node_id=n, attempt=a)
            case "succeed":
                add(TaskSucceeded, node_id=n, attempt=a, result=draw(json_values))
                phase = "done"
            case "fail":
                retryable = draw(st.booleans())
                add(TaskFailed, node_id=n, attempt=a, error="boom", retryable=retryable)
                phase = "retry" if retryable and attempt < spec.max_attempts else "done"
            case "retry":
                add(TaskRetried, failed_attempt=a, next_attempt=a + 1, not_before=LATER)
                phase, attempt = "queued", max(attempt, a + 1)
            case "requeue":
                add(TaskRequeued, node_id=n, attempt=a, reason="lost")
                phase, attempt = "queued", max(attempt, a + 1)
            case "cancel_request":
                add(TaskCancelRequested, node_id=n, attempt=a)
            case "cancel":
                add(TaskCancelled, reason="user", attempt=a)
                phase = "done"
            case "queue_timeout" | "run_timeout":
                add(TaskTimedOut, phase=move.split("_")[0], attempt=a, deadline=LATER,
                    observed_at=LATER)  # fmt: skip
                phase = "done"
            case "reject":
                add(TaskRejected, reason="unknown skills")
                phase = "done"
    return story


@st.composite
def node_story(draw: st.DrawFn, node_id: str) -> list[Draft]:
    """Joins (new incarnations), instances, and sometimes leaving, draining or expiry."""
    story: list[Draft] = []

    def add(cls: type[EventBase], **fields: Any) -> None:
        story.append(Draft(cls, {"node_id": node_id, **fields}))

    for incarnation in ("i1", "i2", "i3")[: draw(st.integers(0, 3))]:
        add(NodeJoined, incarnation=incarnation, capacity=2)
        for skill in draw(st.lists(skills, max_size=3, unique=True)):
            add(SkillInstanceRegistered, skill=skill)
        match draw(st.sampled_from(("stay", "leave", "expire", "drain", "undrain", "unregister"))):
            case "leave":
                add(NodeLeft, incarnation=incarnation)
            case "expire":
                add(NodeExpired, incarnation=incarnation, swept_at=LATER, stale_after_s=15.0)
            case "drain":
                add(NodeDrainRequested)
            case "undrain":
                add(NodeDrainRequested)
                add(NodeDrainCancelled)
            case "unregister":
                add(SkillInstanceUnregistered, skill=draw(skills))
    return story


@st.composite
def schedule_story(draw: st.DrawFn, name: str) -> list[Draft]:
    """Added, then occurrences fired (with their tasks' submissions) or skipped in order,
    sometimes paused and resumed, removed and added again."""
    story: list[Draft] = []

    def add(cls: type[EventBase], **fields: Any) -> None:
        story.append(Draft(cls, {"name": name, **fields}))

    spec = draw(specs)
    minute = 0
    for _ in range(draw(st.integers(0, 2))):
        add(ScheduleAdded, timing=ScheduleTiming(every_s=60), task=spec, anchor=T0)
        for _ in range(draw(st.integers(0, 5))):
            minute += draw(st.integers(1, 3))
            at = T0 + timedelta(minutes=minute)
            match draw(st.sampled_from(("fire", "fire", "skip", "pause", "cut"))):
                case "fire" | "cut" as move:
                    task_id = f"{name}-{minute}"
                    add(ScheduleFired, occurrence=at, task_id=task_id)
                    if move == "fire":  # "cut": the leader died before the submission
                        story.append(
                            Draft(
                                TaskSubmitted,
                                {
                                    "task_id": task_id,
                                    "spec": spec,
                                    "queue_deadline": LATER,
                                    "schedule": name,
                                    "occurrence": at,
                                },
                            )
                        )
                case "skip":
                    add(ScheduleSkipped, first=at, last=at, count=1, reason="missed")
                case "pause":
                    add(SchedulePaused)
                    add(ScheduleResumed, anchor=at)
        if draw(st.booleans()):
            add(ScheduleRemoved)
    return story


@st.composite
def interleavings(draw: st.DrawFn, stories: list[list[Draft | Garbage]]) -> list[Draft | Garbage]:
    """One merge of the stories that keeps each story's own order."""
    queues = [list(story) for story in stories if story]
    merged: list[Draft | Garbage] = []
    while queues:
        index = draw(st.integers(0, len(queues) - 1))
        merged.append(queues[index].pop(0))
        if not queues[index]:
            del queues[index]
    return merged


Record = tuple[Event | UndecodableEventError, int, datetime]


@st.composite
def histories(draw: st.DrawFn, noise_size: int = 6) -> list[Record]:
    """Records as a follower would see them: (event or undecodable, seq, server time)."""
    catalog: list[Draft | Garbage] = [
        Draft(SkillRegistered, {"metadata": m}) for m in draw(st.lists(metadata, max_size=3))
    ]
    stories: list[list[Draft | Garbage]] = [
        [Draft(LeaderElected, {"coordinator_id": "c1"})],
        catalog,
    ]
    stories += [list(draw(node_story(node_id))) for node_id in NODES]
    stories += [list(draw(task_story(task_id))) for task_id in draw(st.lists(tasks, unique=True))]
    stories += [list(draw(schedule_story(name))) for name in ("s1", "s2")]
    stories += [
        [item] for item in draw(st.lists(st.one_of(*NOISE.values(), garbage), max_size=noise_size))
    ]
    records: list[Record] = []
    seq, time, epoch = 0, T0, 0
    for index, item in enumerate(draw(interleavings(stories))):
        seq += draw(st.sampled_from((1, 1, 1, 1, 1, 2)))  # 2: a gap (other subjects)
        time += timedelta(seconds=draw(st.integers(0, 1800)))
        if records and draw(st.integers(0, 9)) == 0:
            records.append(records[-1])  # redelivered
        if isinstance(item, Garbage):
            records.append(
                (UndecodableEventError("not JSON", seq=seq, subject=item.subject), seq, time)
            )
            continue
        fields = dict(item.fields)
        if item.cls is LeaderElected:
            # Mostly the next epoch; sometimes a repeated or deposed one (fenced).
            fields["epoch"] = max(epoch + draw(st.sampled_from((1, 1, 1, 0, -1))), 0)
            epoch = max(epoch, fields["epoch"])
        elif item.cls.WRITTEN_BY == "coordinator":
            fields["epoch"] = draw(st.sampled_from((epoch,) * 7 + (None, max(epoch - 1, 0))))
        event = item.cls(event_id=f"e{index}", time=time, producer="hypothesis", **fields)
        records.append((event, seq, time))  # type: ignore[arg-type]
    return records


def replay(records: list[Record], state: ClusterState | None = None) -> ClusterState:
    state = state if state is not None else ClusterState()
    for item, seq, time in records:
        if isinstance(item, UndecodableEventError):
            apply_undecodable(state, item)
        else:
            apply(state, item, seq=seq, time=time)
    return state


def fresh(retention: Retention | None) -> ClusterState:
    return ClusterState(retention=retention) if retention is not None else ClusterState()


def check_invariants(state: ClusterState) -> None:
    for node_id, node in state.nodes.items():
        for task_id in node.running:
            task = state.tasks[task_id]
            assert task.state in ACTIVE_TASK_STATES and task.node_id == node_id
    assert set(state.finished) == {t for t, task in state.tasks.items() if task.terminal}
    for skill, holders in state.instances.items():
        for node_id, instance in holders.items():
            assert (instance.status == "active") == (skill in state.node_skills.get(node_id, ()))
    # The derived indexes, kept up to date event by event, equal a fresh derivation.
    open_now = {t for t, task in state.tasks.items() if not task.terminal}
    assert state.open_tasks == open_now
    assert state.waiting == {t for t in open_now if state.tasks[t].state == "queued"}


SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(records=histories())
def test_apply_never_raises_and_keeps_the_state_consistent(records: list[Record]) -> None:
    state = ClusterState(retention=Retention(max_finished=2))
    for record in records:
        replay([record], state)
        check_invariants(state)
    if records:
        assert state.last_seq == max(seq for _, seq, _ in records)


@SETTINGS
@given(records=histories())
def test_replaying_the_same_history_twice_gives_the_same_hash(records: list[Record]) -> None:
    first, second = replay(records), replay(records)
    assert to_canonical(first) == to_canonical(second)
    assert state_hash(first) == state_hash(second)


@pytest.mark.parametrize(
    "retention",
    [
        pytest.param(None, id="default-retention"),
        pytest.param(Retention(max_finished=2), id="keep-2"),
        pytest.param(Retention(max_finished=2, max_finished_age_s=3600), id="keep-2-for-1h"),
    ],
)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=histories())
def test_snapshot_at_any_point_plus_the_tail_equals_a_full_replay(
    retention: Retention | None, records: list[Record]
) -> None:
    full = replay(records, fresh(retention))
    expected = to_canonical(full)
    for k in range(len(records) + 1):
        head = replay(records[:k], fresh(retention))
        raw = encode_snapshot(snapshot_document(head))
        restored, why = restore_snapshot(raw, retention=retention)
        assert restored is not None, why
        assert state_hash(restored) == state_hash(head)
        replay(records[k:], restored)
        assert to_canonical(restored) == expected, f"split at {k}"
        assert state_hash(restored) == state_hash(full)

"""The scheduler's rules for cluster-wide limits, chains and delays, as pure functions:
``reconcile`` given the state and the time, its events folded back at that time."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest

from eventsrc.commands.limits import (
    RemoveLimit,
    SetLimit,
    decide_remove_limit,
    decide_set_limit,
    list_limits,
)
from eventsrc.commands.tasks import MAX_CHAINED_PAYLOAD, SubmitTask, decide_submit, reconcile
from eventsrc.errors import InvalidRequestError, NotFoundError
from eventsrc.events import (
    Event,
    LimitSet,
    NodeJoined,
    SkillInstanceRegistered,
    SkillMetadata,
    SkillRegistered,
    TaskAssigned,
    TaskCancelled,
    TaskFailed,
    TaskQueued,
    TaskSpec,
    TaskStarted,
    TaskSubmitted,
    TaskSucceeded,
    TaskTimedOut,
)
from eventsrc.projections.apply import apply
from eventsrc.projections.state import ClusterState, TaskState
from tests.factories import T0
from tests.projections.builders import by_node, coord
from tests.unit.cluster import decided

NODES = ("a", "b", "c")


@dataclass
class Sim:
    """A cluster of three nodes (two slots each) holding ``python``; events are folded
    at the times given, decisions at the time they were made."""

    state: ClusterState = field(default_factory=ClusterState)
    seq: int = 0

    def fold(self, *events: Event, at: datetime = T0) -> None:
        for event in events:
            self.seq += 1
            apply(self.state, event, seq=self.seq, time=at)

    def submit(self, task_id: str, at: datetime = T0, **spec: Any) -> None:
        task = TaskSpec.model_validate({"skills": ("python",), **spec})
        self.fold(TaskSubmitted(**coord(), task_id=task_id, spec=task, queue_deadline=at), at=at)

    def step(self, now: datetime) -> list[Event]:
        """One reconcile pass at ``now``, its events stored at ``now``."""
        decisions = reconcile(self.state, stamp=decided(now))
        events = [event for _, events in decisions for event in events]
        self.fold(*events, at=now)
        return events

    def finish(self, task_id: str, *, ok: bool = True, at: datetime = T0) -> None:
        task = self.state.tasks[task_id]
        node = task.node_id or ""
        header = {"task_id": task_id, "node_id": node, "attempt": task.attempt}
        end: Event = (
            TaskSucceeded(**by_node(node), **header, result={"n": len(task_id)})
            if ok
            else TaskFailed(**by_node(node), **header, error="boom")
        )
        self.fold(TaskStarted(**by_node(node), **header), end, at=at)

    def states(self) -> dict[str, TaskState]:
        return {task_id: task.state for task_id, task in sorted(self.state.tasks.items())}

    def running(self) -> list[str]:
        return sorted(t for n in self.state.nodes.values() for t in n.running)


def sim(max_concurrent: int | None = None, rate: str | None = None) -> Sim:
    cluster = Sim()
    meta = SkillMetadata(name="python", max_concurrent=max_concurrent, rate=rate)
    cluster.fold(SkillRegistered(**coord(), metadata=meta))
    for node in NODES:
        cluster.fold(
            NodeJoined(**by_node(node), node_id=node, incarnation="i1", capacity=2),
            SkillInstanceRegistered(**by_node(node), node_id=node, skill="python"),
        )
    return cluster


def key_limit(cluster: Sim, key: str, max_running: int | None = None) -> None:
    cluster.fold(LimitSet(**coord(), key=key, max_running=max_running))


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# -- limits: how many start at once ------------------------------------------------------

HELD = [
    # (skill max_concurrent, key limit max, task key, tasks, expected started, reason)
    pytest.param(2, None, None, 5, 2, "limit skill python: 2 of 2 running", id="skill-max"),
    pytest.param(None, 1, "openai", 4, 1, "limit openai: 1 of 1 running", id="key-max"),
    pytest.param(3, 1, "openai", 4, 1, "limit openai: 1 of 1 running", id="tighter-wins"),
    pytest.param(None, None, "openai", 4, 4, None, id="key-without-a-limit"),
    pytest.param(None, None, None, 8, 6, None, id="no-limit-only-slots"),
]


@pytest.mark.parametrize(("skill_max", "key_max", "key", "tasks", "started", "reason"), HELD)
def test_a_limit_holds_the_tasks_beyond_it_with_the_reason(
    skill_max: int | None,
    key_max: int | None,
    key: str | None,
    tasks: int,
    started: int,
    reason: str | None,
) -> None:
    cluster = sim(max_concurrent=skill_max)
    if key_max is not None:
        key_limit(cluster, "openai", max_running=key_max)
    for n in range(tasks):
        cluster.submit(f"t{n}", limit_key=key)
    cluster.step(at(1))
    assert len(cluster.running()) == started
    waiting = [t for t in cluster.state.tasks.values() if t.state == TaskState.QUEUED]
    if reason is not None:
        assert {t.reason for t in waiting} == {reason}
    assert cluster.step(at(2)) == []  # the reason is said once


def test_a_freed_slot_goes_to_the_highest_priority_task() -> None:
    cluster = sim(max_concurrent=1)
    cluster.submit("first")
    cluster.step(at(1))
    cluster.submit("low", at(2), priority=0)
    cluster.submit("high", at(3), priority=5)
    cluster.step(at(4))
    assert cluster.running() == ["first"]
    cluster.finish("first", at=at(5))
    events = cluster.step(at(6))
    assert [e.task_id for e in events if isinstance(e, TaskAssigned)] == ["high"]
    assert cluster.state.tasks["low"].reason == "limit skill python: 1 of 1 running"


def test_the_assignment_carries_each_limits_count_as_evidence() -> None:
    cluster = sim(max_concurrent=2)
    key_limit(cluster, "openai", max_running=5)
    cluster.submit("t1", limit_key="openai")
    cluster.submit("t2", limit_key="openai")
    events = cluster.step(at(1))
    second = [e for e in events if isinstance(e, TaskAssigned)][1]
    assert [(u.name, u.running, u.max_running) for u in second.limits] == [
        ("skill python", 1, 2),
        ("openai", 1, 5),
    ]


# -- limits: how many start per window ---------------------------------------------------

RATES = [
    # (rate, pass times in s, assignments per pass)
    pytest.param("2/s", (1, 1.5, 2.01, 2.5, 3.02), (2, 0, 2, 0, 2), id="2/s"),
    pytest.param("3/10s", (1, 5, 10.5, 11.01), (3, 0, 0, 3), id="3/10s"),
    pytest.param("1/m", (0, 59, 60.5), (1, 0, 1), id="1/m"),
]


@pytest.mark.parametrize(("rate", "passes", "expected"), RATES)
def test_a_rate_allows_its_count_per_window(
    rate: str, passes: tuple[float, ...], expected: tuple[int, ...]
) -> None:
    cluster = sim(rate=rate)
    for n in range(20):
        cluster.submit(f"t{n:02}", at(0))
    counts = []
    for when in passes:
        counts.append(sum(isinstance(e, TaskAssigned) for e in cluster.step(at(when))))
        for task_id in cluster.running():
            cluster.finish(task_id, at=at(when))  # free the slots: only the rate holds
    assert tuple(counts) == expected


def test_a_rate_decision_names_the_starts_it_counted() -> None:
    cluster = sim(rate="3/s")
    for n in range(4):
        cluster.submit(f"t{n}")
    first = cluster.step(at(1))
    starts = [e for e in first if isinstance(e, TaskAssigned)]
    assert [len(e.limits[0].window_starts) for e in starts] == [0, 1, 2]
    assert cluster.state.limit_starts["skill python"] == [at(1)] * 3
    queued = [e for e in first if isinstance(e, TaskQueued)]
    assert [e.reason for e in queued] == ["limit skill python: rate 3/s used up"]
    (later,) = [e for e in cluster.step(at(2.5)) if isinstance(e, TaskAssigned)]
    assert later.limits[0].window_starts == ()  # the earlier starts left the window


# -- chains ---------------------------------------------------------------------------


def test_a_chained_task_waits_then_gets_the_result_in_its_payload() -> None:
    cluster = sim()
    cluster.submit("a")
    cluster.submit("b", after="a", payload={"x": 1})
    first = cluster.step(at(1))
    assert [type(e).__name__ for e in first] == ["TaskAssigned", "TaskQueued"]
    assert cluster.state.tasks["b"].reason == "waiting for task a to succeed"
    assert cluster.step(at(2)) == []
    cluster.finish("a", at=at(3))
    (assignment,) = cluster.step(at(4))
    assert isinstance(assignment, TaskAssigned)
    assert assignment.payload == {"x": 1, "after": {"task_id": "a", "result": {"n": 1}}}


ENDS = [
    pytest.param(
        lambda c: c.finish("a", ok=False, at=at(3)),
        "task a it runs after ended failed: boom",
        id="failed",
    ),
    pytest.param(
        lambda c: c.fold(TaskCancelled(**coord(), task_id="a", reason="by user"), at=at(3)),
        "task a it runs after ended cancelled: by user",
        id="cancelled",
    ),
]


@pytest.mark.parametrize(("end", "reason"), ENDS)
def test_a_chain_is_cancelled_down_the_line_when_a_link_does_not_succeed(
    end: Any, reason: str
) -> None:
    cluster = sim()
    cluster.submit("a")
    cluster.submit("b", after="a")
    cluster.submit("c", after="b")
    cluster.step(at(1))
    end(cluster)
    (b_cancelled,) = cluster.step(at(4))
    assert isinstance(b_cancelled, TaskCancelled) and b_cancelled.reason == reason
    (c_cancelled,) = cluster.step(at(5))
    assert isinstance(c_cancelled, TaskCancelled) and c_cancelled.task_id == "c"
    assert c_cancelled.reason.startswith("task b it runs after ended cancelled: task a")


def test_a_result_too_large_to_pass_on_cancels_the_chained_task() -> None:
    cluster = sim()
    cluster.submit("a")
    cluster.submit("b", after="a", payload={"x": "y" * (MAX_CHAINED_PAYLOAD - 20)})
    cluster.step(at(1))
    cluster.finish("a", at=at(2))
    (event,) = cluster.step(at(3))
    assert isinstance(event, TaskCancelled)
    assert event.reason.startswith("its payload with the result of task a is ")
    assert "pass large results by reference" in event.reason


def test_the_queue_timeout_of_a_chained_task_counts_from_its_predecessors_end() -> None:
    cluster = sim()
    cluster.submit("a")
    cluster.submit("b", after="a", queue_timeout_s=10)
    cluster.step(at(1))
    cluster.finish("a", at=at(100))
    (assignment,) = cluster.step(at(105))
    assert isinstance(assignment, TaskAssigned)


# -- delays and deadlines --------------------------------------------------------------

TIMES = [
    # (spec, pass times, state after each)
    pytest.param({"delay_s": 3}, (2.99, 3.0), ("queued", "assigned"), id="delay"),
    pytest.param({"not_before": at(5)}, (4, 5.01), ("queued", "assigned"), id="not-before"),
    pytest.param(
        {"delay_s": 1, "not_before": at(5)}, (4, 5.01), ("queued", "assigned"), id="later-wins"
    ),
    pytest.param(
        {"not_before": at(10), "deadline": at(5)}, (4, 5.5), ("queued", "timed_out"), id="deadline"
    ),
    pytest.param(
        {"delay_s": 100, "queue_timeout_s": 10}, (99, 109), ("queued", "assigned"), id="qt-later"
    ),
]


@pytest.mark.parametrize(("spec", "passes", "states"), TIMES)
def test_a_task_starts_no_earlier_than_asked_and_times_out_at_its_deadline(
    spec: dict[str, Any], passes: tuple[float, ...], states: tuple[str, ...]
) -> None:
    cluster = sim()
    cluster.submit("t1", at(0), **spec)
    seen = []
    for when in passes:
        cluster.step(at(when))
        seen.append(str(cluster.state.tasks["t1"].state))
    assert tuple(seen) == states


def test_a_delayed_task_says_until_when_it_waits() -> None:
    cluster = sim()
    cluster.submit("t1", at(0), delay_s=3)
    (event,) = cluster.step(at(1))
    assert isinstance(event, TaskQueued) and event.reason == f"not before {at(3).isoformat()}"


def test_a_deadline_passes_while_waiting_for_a_predecessor() -> None:
    cluster = sim()
    cluster.submit("a")
    cluster.submit("b", after="a", deadline=at(5))
    cluster.step(at(1))
    (event,) = cluster.step(at(6))
    assert isinstance(event, TaskTimedOut) and event.deadline == at(5)


# -- submit and the limit commands ------------------------------------------------------


def submit_command(task_id: str, **spec: Any) -> SubmitTask:
    return SubmitTask(task_id=task_id, spec=TaskSpec(skills=("python",), **spec))


SUBMITS = [
    pytest.param({"delay_s": 1}, id="delay"),
    pytest.param({"limit_key": "openai"}, id="limit-key"),
    pytest.param({"after": "a"}, id="after"),
]


@pytest.mark.parametrize("spec", SUBMITS)
def test_a_submit_leaves_waiting_and_limited_tasks_to_reconcile(spec: dict[str, Any]) -> None:
    cluster = sim()
    cluster.submit("a")
    events = decide_submit(cluster.state, submit_command("b", **spec), stamp=decided(at(1)))
    assert [type(e).__name__ for e in events] == ["TaskSubmitted"]


def test_a_submit_under_a_skill_limit_is_left_to_reconcile() -> None:
    events = decide_submit(sim(max_concurrent=1).state, submit_command("b"), stamp=decided(T0))
    assert [type(e).__name__ for e in events] == ["TaskSubmitted"]


SUBMIT_ERRORS = [
    pytest.param({"after": "nope"}, NotFoundError, "no task nope to run after", id="unknown"),
    pytest.param(
        {"delay_s": 1, "queue_timeout_s": 0}, InvalidRequestError, "queue timeout is 0", id="qt0"
    ),
]


@pytest.mark.parametrize(("spec", "error", "text"), SUBMIT_ERRORS)
def test_a_submit_that_cannot_wait_as_asked_is_refused(
    spec: dict[str, Any], error: type[Exception], text: str
) -> None:
    with pytest.raises(error, match=text):
        decide_submit(sim().state, submit_command("b", **spec), stamp=decided(T0))


PAYLOADS = [
    pytest.param([1, 2], "give a JSON object as payload", id="not-an-object"),
    pytest.param({"after": 1}, "the payload key 'after'", id="key-taken"),
]


@pytest.mark.parametrize(("payload", "text"), PAYLOADS)
def test_a_chained_task_needs_room_for_the_result(payload: Any, text: str) -> None:
    with pytest.raises(ValueError, match=text):
        TaskSpec(skills=("python",), after="a", payload=payload)


def test_limit_set_change_list_remove() -> None:
    cluster = sim(max_concurrent=4)
    command = SetLimit(key="openai", max_running=2, rate="30/m")
    (event,) = decide_set_limit(cluster.state, command, stamp=decided(T0))
    cluster.fold(event)
    assert decide_set_limit(cluster.state, command, stamp=decided(T0)) == ()
    assert list_limits(cluster.state) == [
        {"name": "openai", "kind": "key", "max_running": 2, "rate": "30/m", "running": 0},
        {"name": "skill python", "kind": "skill", "max_running": 4, "rate": None, "running": 0},
    ]
    cluster.fold(*decide_remove_limit(cluster.state, RemoveLimit(key="openai"), stamp=decided(T0)))
    assert "openai" not in cluster.state.limits
    with pytest.raises(NotFoundError, match="no limit for key openai"):
        decide_remove_limit(cluster.state, RemoveLimit(key="openai"), stamp=decided(T0))


RATE_TEXTS = [
    pytest.param("30/m", (30, 60.0), id="per-minute"),
    pytest.param("5/10s", (5, 10.0), id="per-10s"),
    pytest.param(" 2 / h ", (2, 3600.0), id="spaces"),
]


@pytest.mark.parametrize(("text", "parsed"), RATE_TEXTS)
def test_rates_parse(text: str, parsed: tuple[int, float]) -> None:
    from eventsrc.events import parse_rate

    assert parse_rate(text) == parsed


@pytest.mark.parametrize("text", ["30", "x/m", "0/s", "3/0s", "5/w", "1001/s"])
def test_a_bad_rate_says_how_to_write_one(text: str) -> None:
    from eventsrc.events import parse_rate

    with pytest.raises(ValueError, match="rate"):
        parse_rate(text)

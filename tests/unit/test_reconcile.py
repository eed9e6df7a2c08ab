"""The control loop as a pure function: retries, backoff, timeouts, requeues, order."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from eventsrc.commands.base import COORDINATOR, Origin
from eventsrc.commands.tasks import Decision, reconcile
from eventsrc.events import (
    Candidate,
    Event,
    TaskAssigned,
    TaskCancelRequested,
    TaskQueued,
    TaskRejected,
    TaskRequeued,
    TaskRetried,
    TaskSpec,
    TaskSubmitted,
    TaskTimedOut,
    UnavailableSkill,
)
from eventsrc.projections.state import ClusterState
from tests.projections.builders import (
    LATER,
    Fold,
    assigned,
    cancelled,
    coord,
    failed,
    queued,
    requeued,
    retried,
    started,
)
from tests.unit.cluster import Cluster, decided, python_on
from tests.unit.cluster import made as stamp


def submit(cluster: Cluster, task_id: str = "t1", **spec: Any) -> datetime:
    """Fold a submission; returns its server time (the task's ``queued_since``)."""
    task = TaskSpec.model_validate({"skills": ("python",), **spec})
    cluster.run.fold(TaskSubmitted(**coord(), task_id=task_id, spec=task, queue_deadline=LATER))
    return Fold.time(cluster.run.seq)


def loop(
    state: ClusterState, now: datetime, *, origin: Origin = COORDINATOR, **options: Any
) -> list[Decision]:
    return reconcile(state, stamp=decided(now, origin=origin), **options)


def test_a_waiting_task_is_assigned_with_its_deadline_and_evidence() -> None:
    cluster = python_on("a")
    since = submit(cluster, run_timeout_s=30, payload={"x": 1}, task_type="eval")
    now = since + timedelta(seconds=1)
    assert loop(cluster.state, now) == [
        (
            "t1",
            (
                TaskAssigned(
                    **stamp(1, now),
                    task_id="t1",
                    node_id="a",
                    attempt=1,
                    skills=("python",),
                    payload={"x": 1},
                    task_type="eval",
                    run_timeout_s=30,
                    run_deadline=now + timedelta(seconds=30),
                    candidates=(Candidate(node_id="a", running=0, capacity=2),),
                ),
            ),
        )
    ]


def test_a_new_reason_to_wait_is_said_once() -> None:
    cluster = Cluster().skill("python")
    since = submit(cluster)
    now = since + timedelta(seconds=1)
    expected = TaskQueued(**stamp(1, now), task_id="t1", reason="no live node holds python")
    assert loop(cluster.state, now) == [("t1", (expected,))]
    cluster.run.fold(queued("t1", "no live node holds python"))
    assert loop(cluster.state, now) == []


@pytest.mark.parametrize(
    ("previous", "said"),
    [
        pytest.param(None, False, id="awaiting-placement"),
        pytest.param("no live node holds python", True, id="after-another-reason"),
        pytest.param("a is busy (1/1)", False, id="same-busy-reason"),
    ],
)
def test_being_only_short_of_a_slot_is_said_only_after_another_reason(
    previous: str | None, said: bool
) -> None:
    cluster = python_on("a", capacity=1).occupy("a")
    since = submit(cluster, "t1")
    if previous is not None:
        cluster.run.fold(queued("t1", previous))
    now = since + timedelta(seconds=1)
    expected = TaskQueued(**stamp(1, now), task_id="t1", reason="a is busy (1/1)")
    assert loop(cluster.state, now) == ([("t1", (expected,))] if said else [])


def failing(*, failures: int, **spec: Any) -> tuple[Cluster, datetime]:
    """A task whose attempts 1..failures failed retryably, each retried but the last."""
    cluster = python_on("a")
    submit(cluster, "t1", **spec)
    for attempt in range(1, failures + 1):
        if attempt > 1:
            cluster.run.fold(retried("t1", attempt - 1))
        cluster.run.fold(assigned("t1", "a", attempt), failed("t1", "a", attempt, retryable=True))
    return cluster, Fold.time(cluster.run.seq)


@pytest.mark.parametrize(
    ("failures", "spec", "delay"),
    [
        pytest.param(1, {}, 1.0, id="first-retry-waits-backoff"),
        pytest.param(2, {}, 2.0, id="second-retry-doubles"),
        pytest.param(3, {"max_attempts": 4}, 4.0, id="third-retry-doubles-again"),
        pytest.param(2, {"backoff_s": 5, "backoff_factor": 3}, 15.0, id="own-factor"),
        pytest.param(
            3, {"max_attempts": 5, "backoff_s": 10, "backoff_factor": 3}, 60.0, id="capped-at-max"
        ),
        pytest.param(2, {"backoff_s": 10, "backoff_max_s": 12}, 12.0, id="capped-at-own-max"),
        pytest.param(1, {"backoff_s": 0}, 0.0, id="no-backoff"),
        pytest.param(2, {"backoff_factor": 1, "backoff_s": 3}, 3.0, id="constant-backoff"),
    ],
)
def test_a_retryable_failure_is_retried_after_an_exponential_backoff(
    failures: int, spec: dict[str, Any], delay: float
) -> None:
    cluster, now = failing(failures=failures, **spec)
    expected = TaskRetried(
        **stamp(1, now),
        task_id="t1",
        failed_attempt=failures,
        next_attempt=failures + 1,
        not_before=now + timedelta(seconds=delay),
        error="boom",
    )
    assert loop(cluster.state, now) == [("t1", (expected,))]


def test_a_retry_waits_for_its_time_then_runs_the_next_attempt() -> None:
    cluster, _ = failing(failures=1)
    cluster.run.fold(retried("t1", 1))  # not before LATER
    assert loop(cluster.state, LATER - timedelta(microseconds=1)) == []
    decisions = loop(cluster.state, LATER)
    ((task_id, (event,)),) = decisions
    assert task_id == "t1" and isinstance(event, TaskAssigned)
    assert (event.attempt, event.node_id) == (2, "a")


def test_the_last_failure_is_not_retried() -> None:
    cluster, now = failing(failures=3)  # max_attempts 3
    assert cluster.state.tasks["t1"].state == "failed"
    assert loop(cluster.state, now) == []


def test_a_waiting_task_times_out_after_its_queue_timeout() -> None:
    cluster = Cluster().skill("python")
    since = submit(cluster, queue_timeout_s=10)
    deadline = since + timedelta(seconds=10)
    cluster.run.fold(queued("t1", "no live node holds python"))
    assert loop(cluster.state, deadline) == []
    now = deadline + timedelta(microseconds=1)
    expected = TaskTimedOut(
        **stamp(1, now), task_id="t1", phase="queue", attempt=1, deadline=deadline, observed_at=now
    )
    assert loop(cluster.state, now) == [("t1", (expected,))]


def test_the_queue_timeout_counts_from_the_retry() -> None:
    cluster, _ = failing(failures=1, queue_timeout_s=10)
    cluster.run.fold(retried("t1", 1))
    retried_at = Fold.time(cluster.run.seq)
    now = retried_at + timedelta(seconds=11)
    ((_, (event,)),) = loop(cluster.state, now)
    assert isinstance(event, TaskTimedOut)
    assert (event.phase, event.attempt, event.deadline) == (
        "queue",
        2,
        retried_at + timedelta(seconds=10),
    )


def test_a_timed_out_queue_wins_over_a_free_node() -> None:
    cluster = python_on("a")
    since = submit(cluster, queue_timeout_s=1)
    ((_, (event,)),) = loop(cluster.state, since + timedelta(seconds=2))
    assert isinstance(event, TaskTimedOut) and event.phase == "queue"


def running(task_id: str = "t1", node_id: str = "a") -> Cluster:
    cluster = python_on("a", "b")
    submit(cluster, task_id)
    cluster.run.fold(assigned(task_id, node_id), started(task_id, node_id))
    return cluster


def test_a_run_past_its_deadline_is_stopped_and_timed_out() -> None:
    cluster = running()
    assert loop(cluster.state, LATER) == []
    now = LATER + timedelta(seconds=1)
    assert loop(cluster.state, now) == [
        (
            "t1",
            (
                TaskCancelRequested(
                    **stamp(1, now), task_id="t1", node_id="a", attempt=1, reason="run timeout"
                ),
                TaskTimedOut(
                    **stamp(2, now),
                    task_id="t1",
                    phase="run",
                    attempt=1,
                    deadline=LATER,
                    observed_at=now,
                ),
            ),
        )
    ]


def test_a_waiting_only_pass_does_not_look_at_running_tasks() -> None:
    assert loop(running().state, LATER + timedelta(hours=1), full=False) == []


@pytest.mark.parametrize(
    ("lose", "reason"),
    [
        pytest.param(lambda c: c.expire("a"), "node a expired", id="expired"),
        pytest.param(lambda c: c.leave("a"), "node a left", id="left"),
    ],
)
def test_an_attempt_on_a_lost_node_is_requeued(
    lose: Callable[[Cluster], Cluster], reason: str
) -> None:
    cluster = lose(running())
    now = LATER - timedelta(minutes=1)
    expected = TaskRequeued(**stamp(1, now), task_id="t1", attempt=1, node_id="a", reason=reason)
    assert loop(cluster.state, now) == [("t1", (expected,))]


def test_an_attempt_on_a_node_that_never_joined_is_requeued() -> None:
    cluster = Cluster().skill("python")
    submit(cluster)
    cluster.run.fold(assigned("t1", "ghost"))
    now = LATER - timedelta(minutes=1)
    expected = TaskRequeued(
        **stamp(1, now), task_id="t1", attempt=1, node_id="ghost", reason="node ghost gone"
    )
    assert loop(cluster.state, now) == [("t1", (expected,))]


def test_an_attempt_on_a_draining_node_runs_on() -> None:
    assert loop(running().drain("a").state, LATER - timedelta(minutes=1)) == []


def test_a_requeued_task_is_placed_again_at_its_next_attempt() -> None:
    cluster = running().expire("a")
    cluster.run.fold(requeued("t1", "a", 1))
    ((_, (event,)),) = loop(cluster.state, LATER - timedelta(minutes=1))
    assert isinstance(event, TaskAssigned) and (event.attempt, event.node_id) == (2, "b")


@pytest.mark.parametrize("max_attempts", [1, 2])
def test_a_task_whose_every_attempt_was_lost_gives_up(max_attempts: int) -> None:
    cluster = python_on("a")
    submit(cluster, max_attempts=max_attempts)
    for attempt in range(1, max_attempts + 1):
        cluster.run.fold(assigned("t1", "a", attempt), requeued("t1", "a", attempt))
    now = LATER - timedelta(minutes=1)
    expected = TaskRejected(
        **stamp(1, now),
        task_id="t1",
        reason=f"gave up: {max_attempts} attempts were lost with their nodes "
        f"(max_attempts {max_attempts})",
    )
    assert loop(cluster.state, now) == [("t1", (expected,))]


def test_finished_and_cancelled_tasks_are_left_alone() -> None:
    cluster = python_on("a")
    submit(cluster, "t1")
    submit(cluster, "t2")
    cluster.run.fold(cancelled("t1"), assigned("t2", "a"), failed("t2", "a", retryable=False))
    assert loop(cluster.state, LATER + timedelta(days=1)) == []


def assigned_ids(decisions: list[Decision]) -> list[tuple[str, str]]:
    return [
        (event.task_id, event.node_id)
        for _, events in decisions
        for event in events
        if isinstance(event, TaskAssigned)
    ]


def test_higher_priority_then_older_then_task_id_goes_first() -> None:
    cluster = python_on("a", capacity=3)
    submit(cluster, "old-low", priority=-1)
    submit(cluster, "b-plain")
    submit(cluster, "a-plain")
    submit(cluster, "urgent", priority=5)
    now = LATER - timedelta(minutes=1)
    decisions = loop(cluster.state, now)
    # Three slots: the fourth waits, silently (only short of a slot, never said before).
    assert [task_id for task_id, _ in decisions] == ["urgent", "b-plain", "a-plain"]
    assert assigned_ids(decisions) == [("urgent", "a"), ("b-plain", "a"), ("a-plain", "a")]


def test_equal_submission_times_are_ordered_by_task_id() -> None:
    cluster = python_on("a", capacity=1)
    submit(cluster, "zz")
    submit(cluster, "aa")
    for task_id in ("zz", "aa"):
        cluster.state.tasks[task_id].queued_since = LATER
    decisions = loop(cluster.state, LATER)
    assert assigned_ids(decisions) == [("aa", "a")]


def test_one_pass_spreads_tasks_over_free_slots() -> None:
    cluster = python_on("a", "b")
    for i in range(5):
        submit(cluster, f"t{i}")
    decisions = loop(cluster.state, LATER - timedelta(minutes=1))
    assert assigned_ids(decisions) == [("t0", "a"), ("t1", "b"), ("t2", "a"), ("t3", "b")]


def test_slots_planned_by_an_earlier_decision_are_respected() -> None:
    cluster = python_on("a", "b")
    submit(cluster, "t1")
    decisions = loop(cluster.state, LATER - timedelta(minutes=1), planned={"a": 1})
    assert assigned_ids(decisions) == [("t1", "b")]


def test_tasks_alike_wait_together_once_their_nodes_are_full() -> None:
    cluster = python_on("a", capacity=1)
    submit(cluster, "first")
    for i in range(3):
        submit(cluster, f"same-{i}")
        cluster.run.fold(queued(f"same-{i}", "no live node holds python"))
    decisions = loop(cluster.state, LATER - timedelta(minutes=1))
    # Each of the later ones had said another reason: now they say they are busy.
    assert [(task_id, type(events[0])) for task_id, events in decisions] == [
        ("first", TaskAssigned),
        ("same-0", TaskQueued),
        ("same-1", TaskQueued),
        ("same-2", TaskQueued),
    ]
    reasons = {e.reason for _, (e, *_) in decisions[1:] if isinstance(e, TaskQueued)}
    assert reasons == {"a is busy (1/1)"}


def test_a_pinned_task_does_not_wait_with_unpinned_ones() -> None:
    cluster = python_on("a", "b", capacity=1).occupy("a")
    submit(cluster, "anywhere")
    submit(cluster, "on-a", node_id="a")
    submit(cluster, "on-b", node_id="b")
    decisions = loop(cluster.state, LATER - timedelta(minutes=1))
    assert assigned_ids(decisions) == [("anywhere", "b")]


def test_the_decisions_carry_the_origin() -> None:
    cluster = python_on("a")
    submit(cluster)
    origin = Origin(producer="coordinator", epoch=7)
    ((_, (event,)),) = loop(cluster.state, LATER - timedelta(minutes=1), origin=origin)
    assert (event.producer, event.epoch, event.event_id) == ("coordinator", 7, "e1")


def test_events_of_one_decision_are_in_aggregate_order() -> None:
    decisions = loop(running().state, LATER + timedelta(seconds=1))
    events: tuple[Event, ...] = decisions[0][1]
    assert [type(e).__name__ for e in events] == ["TaskCancelRequested", "TaskTimedOut"]
    assert {e.aggregate_subject for e in events} == {"evt.task.t1.>"}


def test_who_would_qualify_is_said_again_when_it_changes() -> None:
    # A node that found the skill but lacks a binary is news: the task is queued again
    # saying who would run it.
    cluster = Cluster().skill("python").node("a")
    since = submit(cluster)
    cluster.run.fold(queued("t1", "no live node holds python"))
    now = since + timedelta(seconds=1)
    assert loop(cluster.state, now) == []
    cluster.cannot_run("a", UnavailableSkill(name="python", missing_bins=("python3",)))
    hint = "a would run python with bin:python3"
    expected = TaskQueued(
        **stamp(1, now),
        task_id="t1",
        reason=f"no node can run python now; {hint}",
        would_qualify=(hint,),
    )
    assert loop(cluster.state, now) == [("t1", (expected,))]
    cluster.run.fold(expected.model_copy(update={"epoch": 1}))
    assert loop(cluster.state, now) == []


def test_a_quick_pass_leaves_tasks_behind_busy_nodes_to_the_full_pass() -> None:
    # One slot, taken: the first waiting task finds the node busy; the quick pass after an
    # applied batch passes over the rest (its cost stays flat however long the queue is)
    # and still places a task that needs other nodes. The full pass, on the tick, times
    # out the overdue one as always.
    cluster = python_on("a", capacity=1).occupy("a")
    cluster.node("b", "search")
    cluster.skill("search")
    since = submit(cluster, "t1")
    submit(cluster, "t2", queue_timeout_s=1)
    submit(cluster, "t3", skills=("search",))
    now = since + timedelta(minutes=1)
    quick = loop(cluster.state, now, full=False)
    assert [(task_id, [type(e) for e in events]) for task_id, events in quick] == [
        ("t3", [TaskAssigned]),
    ]
    full = loop(cluster.state, now)
    assert [(task_id, [type(e) for e in events]) for task_id, events in full] == [
        ("t2", [TaskTimedOut]),
        ("t3", [TaskAssigned]),
    ]


@pytest.mark.parametrize("full", [False, True])
def test_a_task_being_placed_elsewhere_is_left_to_that_decision(full: bool) -> None:
    """Its submission applied alone (the placement stored next): a pass that placed it
    again would append a second placement that can only lose its race."""
    cluster = python_on("a")
    since = submit(cluster)
    now = since + timedelta(seconds=1)
    assert [task for task, _ in loop(cluster.state, now, full=full)] == ["t1"]
    assert loop(cluster.state, now, full=full, placing={"t1"}) == []

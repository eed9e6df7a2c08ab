"""The pure fold: the task state machine, membership, fencing, retention."""

from __future__ import annotations

from typing import Any

from eventsrc.errors import UndecodableEventError, UnknownEventTypeError
from eventsrc.events import Heartbeat
from eventsrc.projections.apply import apply, apply_undecodable
from eventsrc.projections.canonical import to_canonical
from eventsrc.projections.state import ClusterState, Retention
from tests.factories import T0, envelope
from tests.projections.builders import (
    Fold,
    assigned,
    cancelled,
    failed,
    instance,
    joined,
    leader,
    lifecycle,
    node_expired,
    queued,
    requeued,
    retried,
    skill_registered,
    started,
    submitted,
    succeeded,
    timed_out,
)


def essence(state: ClusterState) -> dict[str, Any]:
    """The canonical state without the bookkeeping every stored event moves."""
    data = to_canonical(state)
    for key in ("last_seq", "aggregate_seq", "strays", "problems"):
        del data[key]
    return data


def problem_counts(state: ClusterState) -> dict[str, int]:
    p = state.problems
    return {
        "undecodable": p.undecodable,
        "illegal": p.illegal,
        "late": p.late,
        "fenced": p.fenced,
    }


NO_PROBLEMS = {"undecodable": 0, "illegal": 0, "late": 0, "fenced": 0}


def cluster_with_node(*node_ids: str) -> Fold:
    run = Fold()
    run.fold(leader(1), skill_registered("python"))
    for node_id in node_ids:
        run.fold(joined(node_id), instance("python", node_id))
    return run


def test_submitted_queued_assigned_running_succeeded() -> None:
    run = cluster_with_node("n1")
    state = run.fold(submitted("t1"))
    task = state.tasks["t1"]
    assert (task.state, task.attempt, task.reason) == ("queued", 1, "awaiting placement")

    run.fold(queued("t1", "no node with python has a free slot"))
    assert (task.state, task.reason) == ("queued", "no node with python has a free slot")

    run.fold(assigned("t1", "n1"))
    assert (task.state, task.node_id, task.reason) == ("assigned", "n1", "")
    assert state.nodes["n1"].running == {"t1"}
    assert state.instances["python"]["n1"].usage_count == 1

    run.fold(started("t1", "n1"))
    assert (task.state, task.started) == ("running", True)

    run.fold(succeeded("t1", "n1", result={"stdout": "1\n"}))
    assert task.state == "succeeded" and task.terminal
    assert task.result == {"stdout": "1\n"}
    assert task.finished_at == Fold.time(run.seq)
    assert state.nodes["n1"].running == set()
    assert state.nodes["n1"].success_count == 1
    assert state.instances["python"]["n1"].success_rate == 1.0
    assert list(state.finished) == ["t1"]
    assert problem_counts(state) == NO_PROBLEMS


def test_a_retryable_failure_with_attempts_left_is_retried() -> None:
    run = cluster_with_node("n1", "n2")
    state = run.fold(submitted("t1", max_attempts=3), assigned("t1", "n1"), started("t1", "n1"))
    task = state.tasks["t1"]

    run.fold(failed("t1", "n1", retryable=True, error="flaky"))
    assert (task.state, task.retry_pending, task.node_id, task.attempt) == (
        "queued",
        True,
        None,
        1,
    )
    assert task.error == "flaky" and not task.terminal
    assert state.nodes["n1"].running == set()
    assert state.instances["python"]["n1"].failure_count == 1

    # The coordinator must decide the retry before placing attempt 2.
    before = essence(state)
    run.fold(assigned("t1", "n2", attempt=2))
    assert state.problems.illegal == 1 and essence(state) == before

    run.fold(retried("t1", failed_attempt=1))
    assert (task.state, task.retry_pending, task.attempt) == ("queued", False, 2)

    run.fold(assigned("t1", "n2", attempt=2), started("t1", "n2", 2), succeeded("t1", "n2", 2))
    assert (task.state, task.node_id, task.attempt) == ("succeeded", "n2", 2)
    assert state.nodes["n1"].failure_count == 1 and state.nodes["n2"].success_count == 1
    assert problem_counts(state) == {**NO_PROBLEMS, "illegal": 1}


def test_a_non_retryable_failure_is_terminal() -> None:
    run = cluster_with_node("n1")
    state = run.fold(submitted("t1", max_attempts=3), assigned("t1", "n1"))
    run.fold(failed("t1", "n1", retryable=False, error="syntax error"))
    task = state.tasks["t1"]
    assert (task.state, task.error, task.retry_pending) == ("failed", "syntax error", False)
    assert state.nodes["n1"].running == set()

    run.fold(retried("t1", failed_attempt=1))
    assert task.state == "failed" and state.problems.late == 1


def test_a_retryable_failure_of_the_last_attempt_is_terminal() -> None:
    run = cluster_with_node("n1")
    state = run.fold(
        submitted("t1", max_attempts=1),
        assigned("t1", "n1"),
        failed("t1", "n1", retryable=True),
    )
    assert state.tasks["t1"].state == "failed"
    assert not state.tasks["t1"].retry_pending


def test_requeue_after_assignment_waits_again_with_the_next_attempt() -> None:
    run = cluster_with_node("n1", "n2")
    state = run.fold(submitted("t1"), assigned("t1", "n1"), started("t1", "n1"))
    assert state.nodes["n1"].running == {"t1"}

    run.fold(requeued("t1", "n1", attempt=1, reason="node n1 expired"))
    task = state.tasks["t1"]
    assert (task.state, task.attempt, task.node_id, task.started) == ("queued", 2, None, False)
    assert task.reason == "requeued: node n1 expired"
    assert state.nodes["n1"].running == set()

    # The lost attempt's result arrives after all: kept for audit, changes nothing.
    before = essence(state)
    run.fold(succeeded("t1", "n1", attempt=1))
    assert state.problems.late == 1 and essence(state) == before

    run.fold(assigned("t1", "n2", attempt=2))
    before = essence(state)
    run.fold(succeeded("t1", "n1", attempt=1), failed("t1", "n1", 1, retryable=True))
    assert state.problems.late == 3 and essence(state) == before

    run.fold(succeeded("t1", "n2", attempt=2))
    assert (task.state, task.node_id, task.attempt) == ("succeeded", "n2", 2)
    assert state.nodes["n1"].success_count == 0  # the late result counted for nobody


def test_a_result_after_a_cancel_is_late() -> None:
    run = cluster_with_node("n1")
    state = run.fold(submitted("t1"), assigned("t1", "n1"), started("t1", "n1"))
    run.fold(cancelled("t1", reason="user asked"))
    task = state.tasks["t1"]
    assert (task.state, task.reason) == ("cancelled", "user asked")
    assert state.nodes["n1"].running == set()

    before = essence(state)
    run.fold(succeeded("t1", "n1"))
    assert state.problems.late == 1 and essence(state) == before
    assert task.result is None
    run.fold(cancelled("t1"))
    assert state.problems.late == 2 and essence(state) == before


def test_queue_timeout() -> None:
    run = cluster_with_node("n1")
    state = run.fold(submitted("t1"), queued("t1"), timed_out("t1", "queue"))
    task = state.tasks["t1"]
    assert task.state == "timed_out" and task.terminal
    assert task.reason.startswith("queue deadline")
    assert problem_counts(state) == NO_PROBLEMS


def test_queue_timeout_of_an_assigned_task_is_illegal() -> None:
    run = cluster_with_node("n1")
    state = run.fold(submitted("t1"), assigned("t1", "n1"), timed_out("t1", "queue"))
    assert state.tasks["t1"].state == "assigned"
    assert state.problems.illegal == 1


def test_run_timeout() -> None:
    run = cluster_with_node("n1")
    state = run.fold(submitted("t1"), assigned("t1", "n1"), started("t1", "n1"))
    before = essence(state)
    run.fold(timed_out("t1", "run", attempt=2))  # not the live attempt
    assert state.problems.late == 1 and essence(state) == before

    run.fold(timed_out("t1", "run", attempt=1))
    task = state.tasks["t1"]
    assert task.state == "timed_out" and task.reason.startswith("run deadline")
    assert state.nodes["n1"].running == set()

    run.fold(succeeded("t1", "n1"))
    assert task.state == "timed_out" and state.problems.late == 2


def test_events_for_an_unknown_task_are_illegal() -> None:
    run = cluster_with_node("n1")
    state = run.fold(assigned("ghost", "n1"))
    assert "ghost" not in state.tasks
    assert state.nodes["n1"].running == set()
    assert problem_counts(state) == {**NO_PROBLEMS, "illegal": 1}
    assert "TaskAssigned for unknown task ghost" in state.problems.recent[-1]


def test_submitting_an_id_twice_is_illegal() -> None:
    run = cluster_with_node("n1")
    state = run.fold(submitted("t1"), assigned("t1", "n1"), submitted("t1"))
    assert state.tasks["t1"].state == "assigned" and state.problems.illegal == 1


def test_a_sequence_at_or_below_the_position_is_skipped() -> None:
    state = ClusterState()
    apply(state, submitted("t1"), seq=5, time=T0)
    assert state.last_seq == 5
    apply(state, submitted("t1"), seq=5, time=T0)  # redelivered: not "submitted twice"
    apply(state, submitted("t2"), seq=3, time=T0)
    assert set(state.tasks) == {"t1"}
    assert state.last_seq == 5
    assert problem_counts(state) == NO_PROBLEMS
    apply(state, submitted("t2"), seq=9, time=T0)  # gaps are fine (other subjects)
    assert set(state.tasks) == {"t1", "t2"} and state.last_seq == 9
    assert state.aggregate_seq == {"evt.task.t1.>": 5, "evt.task.t2.>": 9}


def test_coordinator_events_of_an_older_epoch_are_fenced() -> None:
    run = Fold()
    state = run.fold(leader(1, "old"), submitted("t1", epoch=1), joined("n1"))
    run.fold(leader(2, "new"))
    assert (state.epoch, state.leader) == (2, "new")

    before = essence(state)
    run.fold(
        assigned("t1", "n1", epoch=1),  # the deposed leader still places work
        submitted("t2", epoch=1),
        queued("t1", "from the old leader", epoch=1),
        submitted("t3", epoch=None),
        leader(1, "old"),
        leader(2, "usurper"),  # an epoch is elected once
    )
    assert problem_counts(state) == {**NO_PROBLEMS, "fenced": 6}
    assert essence(state) == before
    # Fenced events still move the aggregate's position (the server counts them too).
    assert state.aggregate_seq["evt.task.t1.>"] == run.seq - 3

    run.fold(assigned("t1", "n1", epoch=2), started("t1", "n1"), leader(3, "next"))
    assert state.tasks["t1"].state == "running" and state.epoch == 3
    # Node events carry no epoch and are never fenced.
    run.fold(succeeded("t1", "n1"))
    assert state.tasks["t1"].state == "succeeded"


def test_an_expired_node_no_longer_offers_its_instances() -> None:
    run = Fold()
    state = run.fold(skill_registered("python"), joined("n1"), joined("n2"))
    run.fold(instance("python", "n1"), instance("python", "n2"))
    assert state.active_instance_nodes("python") == ["n1", "n2"]

    run.fold(node_expired("n1"))
    assert state.nodes["n1"].state == "expired"
    assert state.instances["python"]["n1"].status == "expired"
    assert state.active_instance_nodes("python") == ["n2"]
    assert "n1" not in state.node_skills

    # Expiring it again (or a stale incarnation) is late, not an error.
    run.fold(node_expired("n1"))
    assert state.problems.late == 1


def test_a_new_incarnation_marks_old_instances_offline() -> None:
    run = Fold()
    state = run.fold(skill_registered("python"), joined("n1", "i1"), instance("python", "n1"))
    run.fold(joined("n1", "i2"))
    assert state.nodes["n1"].incarnation == "i2" and state.nodes["n1"].state == "alive"
    assert state.instances["python"]["n1"].status == "offline"
    assert state.active_instance_nodes("python") == []

    run.fold(instance("python", "n1"))
    assert state.instances["python"]["n1"].status == "active"
    assert state.active_instance_nodes("python") == ["n1"]

    # Rejoining with the same incarnation (a repeated join) keeps the instances.
    run.fold(joined("n1", "i2"))
    assert state.active_instance_nodes("python") == ["n1"]


def test_instances_of_nodes_that_never_joined_count_while_active() -> None:
    run = Fold()
    state = run.fold(skill_registered("python"), instance("python", "solo"))
    assert state.active_instance_nodes("python") == ["solo"]


def test_retention_keeps_the_newest_finished_tasks() -> None:
    run = Fold.with_retention(Retention(max_finished=3))
    state = run.fold(joined("n1"))
    for i in range(10):
        run.fold(*lifecycle(f"t{i}", "n1"))
    assert sorted(state.tasks) == ["t7", "t8", "t9"]
    assert list(state.finished) == ["t7", "t8", "t9"]
    assert state.evicted == 7
    assert {key for key in state.aggregate_seq if key.startswith("evt.task.")} == {
        "evt.task.t7.>",
        "evt.task.t8.>",
        "evt.task.t9.>",
    }
    # A late event for an evicted task does not bring the task back; its position is
    # tracked again, because the server's expectation check counts that event too.
    run.fold(succeeded("t0", "n1"))
    assert "t0" not in state.tasks and state.aggregate_seq["evt.task.t0.>"] == state.last_seq

    run.fold(submitted("t10"))  # unfinished tasks are never evicted
    assert len(state.tasks) == 4 and state.evicted == 7


def test_retention_by_age() -> None:
    run = Fold.with_retention(Retention(max_finished=100, max_finished_age_s=10))
    state = run.fold(joined("n1"), *lifecycle("old", "n1"))
    run.seq += 60  # a minute of other traffic later
    run.fold(*lifecycle("new", "n1"))
    assert sorted(state.tasks) == ["new"] and state.evicted == 1


def test_an_undecodable_record_is_counted_and_moves_the_position() -> None:
    run = Fold()
    state = run.fold(submitted("t1"))
    apply_undecodable(
        state, UndecodableEventError("not JSON", seq=2, subject="evt.task.t1.lifecycle")
    )
    apply_undecodable(state, UnknownEventTypeError("unknown type", seq=3, subject="evt.node.x"))
    assert state.problems.undecodable == 2 and state.last_seq == 3
    assert state.aggregate_seq["evt.task.t1.>"] == 2
    assert state.aggregate_seq["evt.node.x"] == 3
    assert "not JSON" in state.problems.recent[-2]

    apply_undecodable(state, UndecodableEventError("again", seq=3, subject="evt.node.x"))
    assert state.problems.undecodable == 2  # already past it

    apply(state, queued("t1", "waiting"), seq=4, time=T0)
    assert state.tasks["t1"].reason == "waiting" and state.last_seq == 4


def test_a_heartbeat_in_the_events_stream_is_illegal() -> None:
    state = ClusterState()
    apply(state, Heartbeat(**envelope("node:n1"), node_id="n1"), seq=1, time=T0)
    assert state.problems.illegal == 1 and state.liveness == {} and state.last_seq == 1


def test_a_retry_decision_after_the_task_ended_changes_nothing() -> None:
    run = cluster_with_node("n1")
    state = run.fold(
        submitted("t1", max_attempts=3),
        assigned("t1", "n1"),
        failed("t1", "n1", retryable=True),  # retry pending...
        cancelled("t1", reason="user asked"),  # ...but the user cancels first
    )
    before = essence(state)
    run.fold(retried("t1", failed_attempt=1))
    assert state.problems.late + state.problems.illegal == 1
    assert essence(state) == before


def test_strays_on_unknown_tasks_are_tracked_but_bounded() -> None:
    run = Fold.with_retention(Retention(max_finished=3))
    state = run.fold(joined("n1"))
    for i in range(10):  # results for tasks this state never saw (junk, or long evicted)
        run.fold(succeeded(f"ghost{i}", "n1"))
    strays = {key for key in state.aggregate_seq if key.startswith("evt.task.")}
    assert strays == {"evt.task.ghost7.>", "evt.task.ghost8.>", "evt.task.ghost9.>"}
    assert list(state.strays) == sorted(strays)
    # A stray whose task then appears stays tracked as the task's own aggregate.
    run.fold(submitted("ghost9"))
    for i in range(10, 14):
        run.fold(succeeded(f"ghost{i}", "n1"))
    assert "evt.task.ghost9.>" in state.aggregate_seq and "ghost9" in state.tasks

"""Folding task lifecycle events: the task state machine (docs/design.md, Guarantees).

Each handler returns None when the event changed the state, or a ``(kind, text)``
problem: ``late`` for events that lost a race and are kept only for audit (a result
after a cancel, a result for a requeued attempt), ``illegal`` for events that break the
state machine. Neither raises: a projection never crashes on stored history.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from eventsrc.events import (
    TaskAssigned,
    TaskCancelled,
    TaskCancelRequested,
    TaskFailed,
    TaskQueued,
    TaskRejected,
    TaskRequeued,
    TaskRetried,
    TaskSpec,
    TaskStarted,
    TaskSubmitted,
    TaskSucceeded,
    TaskTimedOut,
)
from eventsrc.events.subjects import task_filter
from eventsrc.projections.limits import record_starts
from eventsrc.projections.problem import Problem
from eventsrc.projections.state import ACTIVE_TASK_STATES, ClusterState, TaskState, TaskView

AWAITING_PLACEMENT = "awaiting placement"
"""The reason of a submitted task until a placement says otherwise; a task that only
waits for a free slot keeps it (no TaskQueued per task under load)."""


def _task(state: ClusterState, task_id: str, what: str) -> TaskView:
    task = state.tasks.get(task_id)
    if task is None:
        raise Problem("illegal", f"{what} for unknown task {task_id}")
    return task


def _check_attempt(task: TaskView, attempt: int, node_id: str, what: str) -> None:
    """Raise Problem when an event about (attempt, node) does not concern the task's
    live attempt."""
    if task.terminal:
        raise Problem("late", f"{what} for {task.task_id} after it ended {task.state}")
    if task.state not in ACTIVE_TASK_STATES:
        raise Problem("late", f"{what} for {task.task_id} attempt {attempt} while {task.state}")
    if attempt != task.attempt or node_id != task.node_id:
        raise Problem(
            "late",
            f"{what} for {task.task_id} attempt {attempt} on {node_id}; live attempt is "
            f"{task.attempt} on {task.node_id}",
        )


def _release(state: ClusterState, task: TaskView) -> None:
    if task.node_id is not None:
        node = state.nodes.get(task.node_id)
        if node is not None:
            node.running.discard(task.task_id)


def _finish(state: ClusterState, task: TaskView, new_state: TaskState, time: datetime) -> None:
    _release(state, task)
    task.state = new_state
    task.finished_at = time
    state.open_tasks.discard(task.task_id)
    state.waiting.discard(task.task_id)
    state.finished[task.task_id] = time
    _evict(state, time)


def _evict(state: ClusterState, now: datetime) -> None:
    """Drop the oldest finished tasks beyond the retention (they stay in the stream)."""
    retention = state.retention
    horizon = now - timedelta(seconds=retention.max_finished_age_s)
    finished = state.finished
    while finished:
        task_id, finished_at = next(iter(finished.items()))
        if len(finished) <= retention.max_finished and finished_at >= horizon:
            break
        finished.popitem(last=False)
        state.tasks.pop(task_id, None)
        state.aggregate_seq.pop(task_filter(task_id), None)
        state.evicted += 1


def _count_result(state: ClusterState, task: TaskView, node_id: str, ok: bool) -> None:
    node = state.nodes.get(node_id)
    if node is not None:
        if ok:
            node.success_count += 1
        else:
            node.failure_count += 1
    for skill in task.spec.skills:
        instance = state.instances.get(skill, {}).get(node_id)
        if instance is not None:
            if ok:
                instance.success_count += 1
            else:
                instance.failure_count += 1


def not_before(spec: TaskSpec, submitted_at: datetime) -> datetime | None:
    """When a task may start at the earliest: its ``not_before``, and ``delay_s`` after
    its submission's server time, whichever is later."""
    times = [t for t in (spec.not_before,) if t is not None]
    if spec.delay_s is not None:
        times.append(submitted_at + timedelta(seconds=spec.delay_s))
    return max(times, default=None)


def submitted(state: ClusterState, event: TaskSubmitted, time: datetime) -> None:
    if event.task_id in state.tasks:
        raise Problem("illegal", f"task {event.task_id} submitted twice")
    state.tasks[event.task_id] = TaskView(
        task_id=event.task_id,
        spec=event.spec,
        reason=AWAITING_PLACEMENT,
        submitted_at=time,
        queued_since=time,
        queue_deadline=event.queue_deadline,
        not_before=not_before(event.spec, time),
        parent_task_id=event.parent_task_id,
        broadcast_id=event.broadcast_id,
        submit_event_id=event.event_id,
        schedule=event.schedule,
        occurrence=event.occurrence,
    )
    state.open_tasks.add(event.task_id)
    schedule = state.schedules.get(event.schedule) if event.schedule else None
    if schedule is not None and schedule.pending_task == event.task_id:
        schedule.pending_task = None
    state.waiting.add(event.task_id)


def queued(state: ClusterState, event: TaskQueued, time: datetime) -> None:
    task = _task(state, event.task_id, "TaskQueued")
    if task.state != TaskState.QUEUED:
        raise Problem("illegal", f"TaskQueued for {task.task_id} while {task.state}")
    task.reason = event.reason
    task.would_qualify = event.would_qualify


def rejected(state: ClusterState, event: TaskRejected, time: datetime) -> None:
    task = _task(state, event.task_id, "TaskRejected")
    if task.state != TaskState.QUEUED:
        raise Problem("illegal", f"TaskRejected for {task.task_id} while {task.state}")
    task.reason = event.reason
    task.missing_skills = event.missing_skills
    _finish(state, task, TaskState.REJECTED, time)


def assigned(state: ClusterState, event: TaskAssigned, time: datetime) -> None:
    submission = event.submission()
    if submission is not None:  # placed at its submission: first submitted, then placed
        if event.attempt != 1:  # checked first: nothing of the event may be applied
            raise Problem(
                "illegal", f"TaskAssigned carrying a submission at attempt {event.attempt}"
            )
        submitted(state, submission, time)
    task = _task(state, event.task_id, "TaskAssigned")
    if task.state != TaskState.QUEUED or task.retry_pending or event.attempt != task.attempt:
        raise Problem(
            "illegal",
            f"TaskAssigned attempt {event.attempt} for {task.task_id} while {task.state} "
            f"at attempt {task.attempt}",
        )
    task.state = TaskState.ASSIGNED
    state.waiting.discard(task.task_id)
    task.node_id = event.node_id
    task.run_deadline = event.run_deadline
    task.reason = ""
    task.started = False
    task.cancel_requested = False
    node = state.nodes.get(event.node_id)
    if node is not None:
        node.running.add(task.task_id)
    record_starts(state, event, time)
    for skill in task.spec.skills:
        instance = state.instances.get(skill, {}).get(event.node_id)
        if instance is not None:
            instance.usage_count += 1


def started(state: ClusterState, event: TaskStarted, time: datetime) -> None:
    task = _task(state, event.task_id, "TaskStarted")
    _check_attempt(task, event.attempt, event.node_id, "TaskStarted")
    task.state = TaskState.RUNNING
    task.started = True


def succeeded(state: ClusterState, event: TaskSucceeded, time: datetime) -> None:
    task = _task(state, event.task_id, "TaskSucceeded")
    _check_attempt(task, event.attempt, event.node_id, "TaskSucceeded")
    task.result = event.result
    task.error = None
    task.agent = event.agent
    _count_result(state, task, event.node_id, ok=True)
    _finish(state, task, TaskState.SUCCEEDED, time)


def failed(state: ClusterState, event: TaskFailed, time: datetime) -> None:
    task = _task(state, event.task_id, "TaskFailed")
    _check_attempt(task, event.attempt, event.node_id, "TaskFailed")
    task.error = event.error
    task.agent = event.agent
    _count_result(state, task, event.node_id, ok=False)
    if event.retryable and task.attempt < task.spec.max_attempts:
        # Not terminal: the coordinator's TaskRetried follows (the spec decides, so the
        # projection knows it without waiting for that decision).
        _release(state, task)
        task.state = TaskState.QUEUED
        state.waiting.add(task.task_id)
        task.node_id = None
        task.retry_pending = True
        task.reason = f"attempt {task.attempt} failed ({event.error}); retry pending"
        return
    _finish(state, task, TaskState.FAILED, time)


def retried(state: ClusterState, event: TaskRetried, time: datetime) -> None:
    task = _task(state, event.task_id, "TaskRetried")
    if task.terminal:
        raise Problem("late", f"TaskRetried for {task.task_id} after it ended {task.state}")
    if not task.retry_pending or event.failed_attempt != task.attempt:
        raise Problem("illegal", f"TaskRetried for {task.task_id} without a pending retry")
    task.retry_pending = False
    task.attempt = event.next_attempt
    task.not_before = event.not_before
    task.queued_since = time
    task.reason = f"retry: attempt {task.attempt} not before {event.not_before.isoformat()}"


def requeued(state: ClusterState, event: TaskRequeued, time: datetime) -> None:
    task = _task(state, event.task_id, "TaskRequeued")
    _check_attempt(task, event.attempt, event.node_id, "TaskRequeued")
    _release(state, task)
    task.state = TaskState.QUEUED
    state.waiting.add(task.task_id)
    task.node_id = None
    task.attempt += 1
    task.queued_since = time
    task.started = False
    task.cancel_requested = False
    task.reason = f"requeued: {event.reason}"


def timed_out(state: ClusterState, event: TaskTimedOut, time: datetime) -> None:
    task = _task(state, event.task_id, "TaskTimedOut")
    if task.terminal:
        raise Problem("late", f"TaskTimedOut for {task.task_id} after it ended {task.state}")
    if event.phase == "queue" and task.state != TaskState.QUEUED:
        raise Problem("illegal", f"queue timeout for {task.task_id} while {task.state}")
    if event.phase == "run" and (
        task.state not in ACTIVE_TASK_STATES or event.attempt != task.attempt
    ):
        raise Problem("late", f"run timeout for {task.task_id} attempt {event.attempt}: not live")
    reason = f"{event.phase} deadline {event.deadline.isoformat()} passed"
    if event.phase == "queue" and task.reason and task.reason != AWAITING_PLACEMENT:
        reason = f"{reason} while waiting: {task.reason}"
    task.reason = reason
    _finish(state, task, TaskState.TIMED_OUT, time)


def cancel_requested(state: ClusterState, event: TaskCancelRequested, time: datetime) -> None:
    task = _task(state, event.task_id, "TaskCancelRequested")
    _check_attempt(task, event.attempt, event.node_id, "TaskCancelRequested")
    task.cancel_requested = True


def cancelled(state: ClusterState, event: TaskCancelled, time: datetime) -> None:
    task = _task(state, event.task_id, "TaskCancelled")
    if task.terminal:
        raise Problem("late", f"TaskCancelled for {task.task_id} after it ended {task.state}")
    task.reason = event.reason or "cancelled"
    _finish(state, task, TaskState.CANCELLED, time)

"""Folding straight from the stream, without a running projection.

One-shot commands (``eventsrc get``, ``submit --wait``) and lookups of tasks that have
left memory fold one aggregate: the leader epochs (for fencing) and the task's own
subjects. ``fold_until`` folds the whole cluster up to a point of the stream: the time
travel of ``replay_tools rebuild --until-*`` and of the dashboard.
``eventsrc get --follow`` and ``tasks --watch`` follow tasks live the same way;
``follow_task_output`` interleaves a task's progress and output lines (EVENTSRC_OUTPUT).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime

from eventsrc.errors import EventsrcError
from eventsrc.events import Heartbeat, TaskOutput
from eventsrc.events.subjects import (
    ALL_TASKS_FILTER,
    CLUSTER_SUBJECT,
    task_filter,
    task_id_of,
    task_output_filter,
)
from eventsrc.ports import HEARTBEATS_STREAM, OUTPUT_STREAM, EventStore, Record, StoredEvent
from eventsrc.projections.apply import apply_heartbeat, apply_record
from eventsrc.projections.state import ACTIVE_TASK_STATES, ClusterState, Retention, TaskView

log = logging.getLogger(__name__)

HELD_OUTPUT = 1000
"""Most output batches a follow holds while it waits for the assignment they name."""


async def fold_task(store: EventStore, task_id: str) -> TaskView | None:
    """The task as its events say, or None when the stream has none for it."""
    return (await _task_state(store, task_id)).tasks.get(task_id)


async def _task_state(
    store: EventStore, task_id: str, on_view: Callable[[TaskView], None] | None = None
) -> ClusterState:
    state = _one_task_state()
    # One consumer over both filters delivers in stream order, which fencing needs.
    async for record in store.read(subjects=_subjects(task_id)):
        apply_record(state, record)
        if on_view is not None and (task := state.tasks.get(task_id)) is not None:
            on_view(task)
    return state


def _one_task_state() -> ClusterState:
    return ClusterState(retention=Retention(max_finished=1_000_000))


async def follow_task(
    store: EventStore, task_id: str, *, on_view: Callable[[TaskView], None] | None = None
) -> AsyncIterator[TaskView]:
    """The task as it is now, then again after each of its events, until it ends;
    nothing when the stream has no such task. Runs until then (or until cancelled).
    ``on_view`` sees the view after each event of the history folded first too."""
    state = await _task_state(store, task_id, on_view)
    task = state.tasks.get(task_id)
    if task is None:
        return
    yield task
    if task.terminal:
        return
    async for record in store.subscribe(subjects=_subjects(task_id), from_seq=state.last_seq + 1):
        apply_record(state, record)
        task = state.tasks.get(task_id, task)
        yield task
        if task.terminal:
            return


async def follow_task_output(
    store: EventStore, task_id: str
) -> AsyncIterator[TaskView | TaskOutput]:
    """Like ``follow_task``, with the task's output batches (progress and lines, those
    still retained first) interleaved as they arrive. The view that ends the task comes
    last, after the output stored before it.

    Only batches of an attempt the task was assigned, from the node it was assigned to,
    are shown: any node may publish output under any task's subjects (secure mode
    checks only that the node id in the subject is its own). A batch that arrives before
    the assignment it belongs to is held until that shows (at most ``HELD_OUTPUT``)."""
    queue: asyncio.Queue[TaskView | TaskOutput | None] = asyncio.Queue()
    last_output = 0
    assigned: set[tuple[str, int]] = set()
    held: list[TaskOutput] = []

    def note(task: TaskView) -> None:
        if task.node_id is not None and task.state in ACTIVE_TASK_STATES:
            assigned.add((task.node_id, task.attempt))

    def shown(output: TaskOutput) -> bool:
        return (output.node_id, output.attempt) in assigned

    def release() -> list[TaskOutput]:
        ready = [output for output in held if shown(output)]
        held[:] = [output for output in held if not shown(output)]
        return ready

    async def views() -> None:
        try:
            async for task in follow_task(store, task_id, on_view=note):
                note(task)
                await queue.put(task)
        finally:
            queue.put_nowait(None)

    async def outputs() -> None:
        nonlocal last_output
        try:
            async for record in store.subscribe(stream=OUTPUT_STREAM, subjects=[filter_]):
                if isinstance(record, StoredEvent) and isinstance(record.event, TaskOutput):
                    last_output = record.seq
                    await queue.put(record.event)
        except EventsrcError as err:  # soft state: the task's own events still show
            log.warning("no live output of task %s: %s", task_id, err)

    filter_ = task_output_filter(task_id)
    pumps = [asyncio.create_task(views()), asyncio.create_task(outputs())]
    try:
        while True:
            item = await queue.get()
            if item is None:
                await asyncio.wait({pumps[0]})
                pumps[0].result()  # the follow's own error, if it had one
                return
            if isinstance(item, TaskOutput):
                if shown(item):
                    yield item
                else:
                    held.append(item)
                    del held[:-HELD_OUTPUT]
                continue
            for output in release():
                yield output
            if item.terminal:
                pumps[1].cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pumps[1]
                while not queue.empty():  # delivered, not yet shown
                    pending = queue.get_nowait()
                    if isinstance(pending, TaskOutput) and shown(pending):
                        yield pending
                for output in await _output_after(store, filter_, last_output):
                    if shown(output):
                        yield output
                if held:
                    log.debug("task %s: %d output batches of no assignment", task_id, len(held))
                yield item
                return
            yield item
    finally:
        for pump in pumps:
            pump.cancel()
        for pump in pumps:
            with contextlib.suppress(asyncio.CancelledError):
                await pump


async def _output_after(store: EventStore, filter_: str, seq: int) -> list[TaskOutput]:
    """The output batches stored after ``seq`` (none when the stream cannot say)."""
    found: list[TaskOutput] = []
    try:
        async for record in store.read(stream=OUTPUT_STREAM, subjects=[filter_], from_seq=seq + 1):
            if isinstance(record, StoredEvent) and isinstance(record.event, TaskOutput):
                found.append(record.event)
    except EventsrcError as err:  # soft state: the task's end still shows
        log.warning("output under %s not read: %s", filter_, err)
    return found


async def follow_tasks(store: EventStore, *, from_seq: int) -> AsyncIterator[TaskView]:
    """Every task's view after each of its events from stream sequence ``from_seq`` on,
    until cancelled. A task first met is folded from its whole history (so a task
    submitted before ``from_seq`` shows as it is); an ended one is let go."""
    states: dict[str, ClusterState] = {}
    async for record in store.subscribe(
        subjects=[CLUSTER_SUBJECT, ALL_TASKS_FILTER], from_seq=from_seq
    ):
        task_id = task_id_of(record.subject)
        if task_id is None:
            for each in states.values():  # a leader epoch: fencing needs it everywhere
                apply_record(each, record)
            continue
        state = states.get(task_id)
        if state is None:
            state = states[task_id] = await _task_state(store, task_id)
        apply_record(state, record)  # nothing when the fold above already holds it
        task = state.tasks.get(task_id)
        if task is None:  # a stray event of a task never submitted: keep nothing for it
            del states[task_id]
            continue
        yield task
        if task.terminal:
            del states[task_id]


def _subjects(task_id: str) -> list[str]:
    return [CLUSTER_SUBJECT, task_filter(task_id)]


async def watch_task(
    store: EventStore, task_id: str, *, timeout: float, expect_new: bool = False
) -> TaskView | None:
    """Follow a task's events until it is terminal or ``timeout`` passes; its last view.

    ``expect_new``: the task is being submitted right now, so an empty history is not
    an answer yet (lets a caller start watching before it submits).
    """
    state = ClusterState(retention=Retention(max_finished=1_000_000))
    # Timing out is an answer here: the task's state at that moment.
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            async for record in store.subscribe(subjects=_subjects(task_id)):
                apply_record(state, record)
                task = state.tasks.get(task_id)
                if task is not None and task.terminal:
                    return task
                if (
                    task is None
                    and not expect_new
                    and isinstance(record, StoredEvent)
                    and record.pending == 0
                ):
                    return None  # caught up and the stream has no such task
    return state.tasks.get(task_id)


async def fold_until(
    store: EventStore,
    state: ClusterState,
    *,
    until_seq: int | None = None,
    until_time: datetime | None = None,
    on_record: Callable[[Record], None] | None = None,
) -> ClusterState:
    """Fold the events after ``state.last_seq`` into ``state``, up to ``until_seq`` /
    ``until_time`` (default: the end of the stream); ``on_record`` sees each record."""
    async for record in store.read(
        from_seq=state.last_seq + 1, until_seq=until_seq, until_time=until_time
    ):
        apply_record(state, record)
        if on_record is not None:
            on_record(record)
    return state


async def fold_heartbeats(
    store: EventStore, state: ClusterState, *, until: datetime | None = None
) -> tuple[int, int]:
    """Apply the retained heartbeats up to ``until`` (soft liveness, outside the hashed
    state); returns how many were applied and how many were undecodable."""
    applied = undecodable = 0
    async for record in store.read(stream=HEARTBEATS_STREAM, until_time=until):
        if isinstance(record, StoredEvent) and isinstance(record.event, Heartbeat):
            apply_heartbeat(state, record.event, seq=record.seq, time=record.time)
            applied += 1
        else:
            undecodable += 1
    return applied, undecodable

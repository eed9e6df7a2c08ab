"""Folding one aggregate straight from the stream, without a full projection.

One-shot commands (``eventsrc get``, ``submit --wait``) and lookups of tasks that have
left memory use this: read the leader epochs (for fencing) and the task's own subjects.
"""

from __future__ import annotations

import asyncio
import contextlib

from eventsrc.errors import UndecodableEventError
from eventsrc.events.subjects import CLUSTER_SUBJECT, task_filter
from eventsrc.ports import EventStore, StoredEvent
from eventsrc.projections.apply import apply, apply_undecodable
from eventsrc.projections.state import ClusterState, Retention, TaskView


async def fold_task(store: EventStore, task_id: str) -> TaskView | None:
    """The task as its events say, or None when the stream has none for it."""
    state = ClusterState(retention=Retention(max_finished=1_000_000))
    # One consumer over both filters delivers in stream order, which fencing needs.
    async for record in store.read(subjects=_subjects(task_id)):
        _fold(state, record)
    return state.tasks.get(task_id)


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
                _fold(state, record)
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


def _fold(state: ClusterState, record: object) -> None:
    if isinstance(record, UndecodableEventError):
        apply_undecodable(state, record)
    elif isinstance(record, StoredEvent):
        apply(state, record.event, seq=record.seq, time=record.time)

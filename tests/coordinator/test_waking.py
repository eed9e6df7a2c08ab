"""Which held-open requests an applied batch wakes: those whose task ended since the last
batch, found from the newest ends rather than by looking at every open request; and all
of them that ended when the finished tasks of the last batch were evicted meanwhile."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, cast

from eventsrc.coordinator.tasking import TaskDesk
from eventsrc.errors import NotFoundError
from eventsrc.projections.state import ClusterState, Retention
from tests.memory_store import MemoryEventStore
from tests.projections.builders import (
    Fold,
    assigned,
    instance,
    joined,
    skill_registered,
    submitted,
    succeeded,
)


@dataclass
class Following:
    """What the desk reads of its runner when waiting: the state it applies to."""

    state: ClusterState


def cluster(*task_ids: str, retention: Retention | None = None) -> Fold:
    run = Fold.with_retention(retention or Retention())
    run.fold(skill_registered("python"), joined("n1", capacity=10), instance("python", "n1"))
    for task_id in task_ids:
        run.fold(submitted(task_id), assigned(task_id, "n1"))
    return run


async def waiting(desk: TaskDesk, *task_ids: str) -> dict[str, asyncio.Task[Any]]:
    tasks = {t: asyncio.ensure_future(desk._wait(t, 30)) for t in task_ids}
    await asyncio.sleep(0)  # each is registered and waits
    return tasks


def desk_on(run: Fold) -> TaskDesk:
    # An empty store: a task gone from memory is looked up there (and not found).
    return TaskDesk(cast(Any, MemoryEventStore()), cast(Any, Following(run.state)), cast(Any, None))


async def settled(tasks: dict[str, asyncio.Task[Any]]) -> set[str]:
    await asyncio.sleep(0)
    return {task_id for task_id, task in tasks.items() if task.done()}


async def test_a_batch_wakes_the_requests_of_the_tasks_it_ended() -> None:
    run = cluster("a", "b", "c")
    desk = desk_on(run)
    desk.on_applied(run.state)
    tasks = await waiting(desk, "a", "b", "c")
    run.fold(succeeded("a", "n1"))
    desk.on_applied(run.state)
    assert await settled(tasks) == {"a"}
    desk.on_applied(run.state)  # nothing new ended
    assert await settled(tasks) == {"a"}
    run.fold(succeeded("c", "n1"), succeeded("b", "n1"))
    desk.on_applied(run.state)
    assert await settled(tasks) == {"a", "b", "c"}
    assert all(t.result().state == "succeeded" for t in tasks.values())


async def test_ends_past_an_evicted_mark_still_wake_their_requests() -> None:
    run = cluster("a", "b", "c", retention=Retention(max_finished=1))
    desk = desk_on(run)
    tasks = await waiting(desk, "b", "c")
    run.fold(succeeded("a", "n1"))
    desk.on_applied(run.state)  # the mark: a
    run.fold(succeeded("b", "n1"), succeeded("c", "n1"))  # a and b evicted
    assert "b" not in run.state.tasks
    desk.on_applied(run.state)
    assert await settled(tasks) == {"b", "c"}
    assert tasks["c"].result().state == "succeeded"
    assert isinstance(tasks["b"].exception(), NotFoundError)  # woken; then looked up

"""run and wait: the coordinator answers when a task ends; placements without a lock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import nats
import pytest
from nats.aio.client import Client

import eventsrc
from eventsrc.client import Cluster
from eventsrc.commands import api
from eventsrc.errors import NotFoundError
from eventsrc.events import TaskQueued, TaskStarted
from eventsrc.node.agent import NodeAgent
from eventsrc.node.builtins import builtin_skill
from eventsrc.store import JetStreamEventStore, StoredEvent

Handler = Callable[[dict[str, Any]], Awaitable[Any]]


async def _sleep(task: dict[str, Any]) -> Any:
    await asyncio.sleep(float(task["payload"]["s"]))
    return task["payload"]


async def _quick(task: dict[str, Any]) -> Any:
    return "done"


@pytest.fixture
async def worker(coordinator_url: str) -> AsyncIterator[NodeAgent]:
    """One node (capacity 2) with a ``sleep`` and a ``quick`` handler."""
    nc = await nats.connect(coordinator_url)
    agent = NodeAgent(
        nc,
        JetStreamEventStore(nc),
        node_id="worker",
        skills={"search": builtin_skill("search")},
        executors={},
        capacity=2,
    )
    agent.handlers["sleep"] = _sleep
    agent.handlers["quick"] = _quick
    try:
        await agent.start()
        yield agent
    finally:
        await agent.close(leave=True)
        await nc.close()


@pytest.fixture
async def cluster(coordinator_url: str, worker: NodeAgent) -> AsyncIterator[Cluster]:
    async with eventsrc.connect(coordinator_url, project=False) as connected:
        yield connected


async def _types(nc: Client, task_id: str) -> list[str]:
    store = JetStreamEventStore(nc)
    records = store.read(subjects=f"evt.task.{task_id}.>")
    return [
        type(r.event).__name__ if isinstance(r, StoredEvent) else repr(r) async for r in records
    ]


async def test_wait_answers_when_the_task_ends(cluster: Cluster) -> None:
    submitted = await cluster.submit("search", {"s": 0.3}, task_type="sleep")
    assert not submitted.terminal
    done = await cluster.wait(submitted.task_id, timeout=20)
    assert (done.state, done.result) == ("succeeded", {"s": 0.3})


async def test_wait_with_a_short_timeout_returns_the_running_task(cluster: Cluster) -> None:
    submitted = await cluster.submit("search", {"s": 1.5}, task_type="sleep")
    early = await cluster.wait(submitted.task_id, timeout=0.2)
    assert early.state in {"assigned", "running"}
    assert (await cluster.wait(submitted.task_id, timeout=20)).state == "succeeded"


async def test_wait_for_an_unknown_task_is_not_found(cluster: Cluster) -> None:
    with pytest.raises(NotFoundError, match="no task ghost"):
        await cluster.wait("ghost", timeout=1)


async def test_run_with_no_wait_answers_at_once(cluster: Cluster) -> None:
    command = api.RunTask.model_validate(
        {
            "task_id": "r0",
            "spec": {"skills": ["search"], "task_type": "sleep", "payload": {"s": 1}},
            "wait_s": 0,
        }
    )
    info = await cluster.api.call("run", command)
    assert info["state"] in {"assigned", "running"}


async def test_quick_tasks_skip_started_and_slow_ones_record_it(
    cluster: Cluster, coordinator_url: str
) -> None:
    quick = await cluster.run("search", None, task_type="quick", timeout=20)
    slow = await cluster.run("search", {"s": 0.5}, task_type="sleep", timeout=20)
    assert quick.state == slow.state == "succeeded"
    nc = await nats.connect(coordinator_url)
    try:
        assert "TaskStarted" not in await _types(nc, quick.task_id)
        assert TaskStarted.__name__ in await _types(nc, slow.task_id)
    finally:
        await nc.close()


async def test_a_full_node_is_never_given_more_than_its_capacity(
    cluster: Cluster, worker: NodeAgent, coordinator_url: str
) -> None:
    peak = 0

    async def watch() -> None:
        nonlocal peak
        while True:
            peak = max(peak, worker.running)
            await asyncio.sleep(0.005)

    watcher = asyncio.create_task(watch())
    try:
        results = await asyncio.gather(
            *(cluster.run("search", {"s": 0.2}, task_type="sleep", timeout=30) for _ in range(8))
        )
    finally:
        watcher.cancel()
    assert {r.state for r in results} == {"succeeded"}
    assert peak == 2
    # Waiting only for a free slot is not worth an event per task.
    nc = await nats.connect(coordinator_url)
    try:
        for result in results:
            assert TaskQueued.__name__ not in await _types(nc, result.task_id)
    finally:
        await nc.close()

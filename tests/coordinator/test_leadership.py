"""Leader epochs, capacity under concurrent submits, rejoining, an aged-out stream."""

from __future__ import annotations

import asyncio
from typing import Any

import nats
import pytest

import eventsrc
from eventsrc.config import CoordinatorConfig
from eventsrc.coordinator.app import Coordinator
from eventsrc.node.agent import NodeAgent
from eventsrc.node.builtins import builtin_skill
from eventsrc.projections.runner import ProjectionRunner
from eventsrc.projections.state import ClusterState
from eventsrc.store import JetStreamEventStore, StreamSettings
from tests.conftest import MakeServer
from tests.factories import envelope
from tests.waiting import until


async def start_node(url: str, node_id: str, **options: Any) -> tuple[Any, NodeAgent]:
    nc = await nats.connect(url)
    agent = NodeAgent(
        nc,
        JetStreamEventStore(nc),
        node_id=node_id,
        skills={"search": builtin_skill("search")},
        executors={},
        **options,
    )

    async def work(task: dict[str, Any]) -> str:
        await asyncio.sleep(0.02)
        return "done"

    agent.handlers["work"] = work
    await agent.start()
    return nc, agent


async def test_an_older_coordinator_steps_down_and_the_new_one_serves(
    make_server: MakeServer,
) -> None:
    server = make_server()
    assert server.url is not None
    config = CoordinatorConfig(nats_url=server.url, stale_after=30, sweep_interval=5)
    async with Coordinator(config) as first:
        assert first.service is not None
        async with Coordinator(config) as second:
            assert second.service is not None and second.service.epoch == first.service.epoch + 1
            await until(lambda: first.service is not None and first.service._deposed)
            nc, agent = await start_node(server.url, "n1")
            try:
                async with eventsrc.connect(server.url, project=False) as cluster:
                    infos = [await cluster.submit(["search"], task_type="work") for _ in range(8)]
                    done = [await cluster.wait(info.task_id, 20) for info in infos]
                assert [d.state for d in done] == ["succeeded"] * 8
            finally:
                await agent.close(leave=True)
                await nc.close()


async def test_concurrent_submits_never_overcommit_a_node(coordinator_url: str) -> None:
    peak = 0

    def watch(state: ClusterState) -> None:
        nonlocal peak
        node = state.nodes.get("solo")
        if node is not None:
            peak = max(peak, len(node.running))

    nc, agent = await start_node(coordinator_url, "solo", capacity=1)
    watcher_nc = await nats.connect(coordinator_url)
    runner = ProjectionRunner(JetStreamEventStore(watcher_nc), on_applied=watch)
    try:
        await runner.start()
        async with eventsrc.connect(coordinator_url, project=False) as cluster:
            infos = await asyncio.gather(
                *(cluster.submit(["search"], task_type="work") for _ in range(40))
            )
            done = await asyncio.gather(*(cluster.wait(i.task_id, 60) for i in infos))
        assert {d.state for d in done} == {"succeeded"}
        assert peak == 1
    finally:
        await runner.close()
        await agent.close(leave=True)
        await nc.close()
        await watcher_nc.close()


async def test_an_expired_node_rejoins_as_a_new_incarnation(coordinator_url: str) -> None:
    # Heartbeats far apart: the coordinator (stale_after=2) expires it between them.
    nc, agent = await start_node(coordinator_url, "sleepy", heartbeat_interval=60)
    first = agent.incarnation
    try:
        await until(lambda: agent.incarnation != first, timeout=30)
        async with eventsrc.connect(coordinator_url) as cluster:
            state = cluster.runner.state
            await until(lambda: state.nodes["sleepy"].incarnation == agent.incarnation)
            assert state.nodes["sleepy"].state in {"alive", "expired"}
    finally:
        await agent.close(leave=True)
        await nc.close()


async def test_a_projection_starts_on_a_stream_whose_events_aged_out(
    make_server: MakeServer,
) -> None:
    from eventsrc.events import Heartbeat, SkillMetadata, SkillRegistered

    server = make_server()
    nc = await nats.connect(server.url)
    try:
        store = JetStreamEventStore(nc, settings=StreamSettings(events_max_age_s=1))
        await store.ensure_streams()
        await store.append(SkillRegistered(**envelope(), metadata=SkillMetadata(name="x")))
        await store.append(Heartbeat(**envelope("node:n"), node_id="n"))

        for _ in range(100):
            if await store.last_seq() == 0:
                break
            await asyncio.sleep(0.1)
        assert await store.last_seq() == 0, "the events did not age out"
        runner = ProjectionRunner(store)
        await runner.start(timeout=5)
        await runner.close()
        assert runner.state.skills == {}
    finally:
        await nc.close()


@pytest.fixture(autouse=True)
def _quiet_deposed_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("CRITICAL", logger="eventsrc.coordinator.service")

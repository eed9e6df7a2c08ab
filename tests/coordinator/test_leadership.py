"""Leadership (lease and epochs) in process, capacity under concurrent submits, rejoining,
an aged-out stream."""

from __future__ import annotations

import asyncio
from typing import Any

import nats
import pytest

import eventsrc
from eventsrc.config import CoordinatorConfig
from eventsrc.coordinator.app import Coordinator
from eventsrc.coordinator.leadership import elect
from eventsrc.errors import LeaseLostError, ServerUnavailableError
from eventsrc.events import LeaderElected
from eventsrc.node.agent import NodeAgent
from eventsrc.node.builtins import builtin_skill
from eventsrc.projections.state import ClusterState
from eventsrc.runner import ProjectionRunner
from eventsrc.store import JetStreamEventStore, StreamSettings
from eventsrc.store.lease import LEADER_BUCKET, LEADER_KEY, encode_holder
from tests.conftest import MakeServer
from tests.factories import envelope
from tests.waiting import until, until_awaited


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


LEASE_S = 1.0


def lease_config(url: str) -> CoordinatorConfig:
    return CoordinatorConfig(nats_url=url, stale_after=30, sweep_interval=5, lease_s=LEASE_S)


async def run_work(url: str, count: int) -> list[str]:
    """Submit ``count`` tasks through whichever coordinator leads; their end states."""
    async with eventsrc.connect(url, project=False) as cluster:
        infos = [await cluster.submit(["search"], task_type="work") for _ in range(count)]
        return [(await cluster.wait(info.task_id, 20)).state for info in infos]


async def api_status(url: str) -> Any:
    async with eventsrc.connect(url, project=False) as cluster:
        return await cluster.api.call("status", timeout=2)


async def test_a_second_coordinator_stands_by_and_takes_over_when_the_first_stops(
    make_server: MakeServer,
) -> None:
    server = make_server()
    assert server.url is not None
    first = Coordinator(lease_config(server.url))
    second = Coordinator(lease_config(server.url))
    await first.start()
    await second.start()
    nc, agent = await start_node(server.url, "n1")
    try:
        assert first.leading and first.service is not None
        assert not second.leading and second.service is None
        assert second.leadership is not None and second.leadership.holder is not None
        assert second.leadership.holder.coordinator_id == first.coordinator_id
        assert (await api_status(server.url))["leader"] == first.coordinator_id
        epoch = first.service.epoch
        # The standby's projection follows the stream (warm): it sees the leader's work.
        assert await run_work(server.url, 3) == ["succeeded"] * 3
        await until(lambda: len(second.runner.state.tasks) == 3 if second.runner else False)

        await first.close()  # a clean stop releases the lease: no need to wait for the TTL
        await until(lambda: second.leading, "the standby to lead", timeout=LEASE_S + 10)
        assert second.service is not None and second.service.epoch == epoch + 1
        assert (await api_status(server.url))["leader"] == second.coordinator_id
        assert await run_work(server.url, 3) == ["succeeded"] * 3
    finally:
        await agent.close(leave=True)
        await nc.close()
        await second.close()
        await first.close()


async def test_a_leader_deposed_by_a_newer_epoch_steps_down_and_contests_again(
    make_server: MakeServer,
) -> None:
    server = make_server()
    assert server.url is not None
    async with Coordinator(lease_config(server.url)) as coordinator:
        service = coordinator.service
        assert service is not None and coordinator.runner is not None
        async with coordinator.runner.reading() as state:
            expected = state.aggregate_seq["evt.cluster"]
        # A writer that ignores the lease (an old version, a hand-made event).
        rogue = LeaderElected(**envelope("rogue"), epoch=service.epoch + 1, coordinator_id="rogue")
        await coordinator.store.append(rogue, expected_seq=expected)

        await until(lambda: service.deposed, "the leader to stop deciding")
        # It gave the lease up, contested again and leads from the epoch after the rogue's.
        await until(
            lambda: (
                coordinator.service is not None and coordinator.service.epoch == service.epoch + 2
            ),
            "a new term",
        )
        assert coordinator.service is not service


async def test_a_leader_that_loses_its_lease_stops_serving_at_once(
    make_server: MakeServer,
) -> None:
    server = make_server()
    assert server.url is not None
    nc = await nats.connect(server.url)
    try:
        async with Coordinator(lease_config(server.url)) as coordinator:
            service = coordinator.service
            assert service is not None
            kv = await nc.jetstream().key_value(LEADER_BUCKET)
            await kv.purge(LEADER_KEY)
            await kv.create(LEADER_KEY, encode_holder("intruder", 0))
            lost = asyncio.get_running_loop().time()

            # The next renewal (every lease/3) is refused: it stops deciding and serving.
            await until(lambda: not coordinator.leading, "the leader to step down", timeout=5)
            assert asyncio.get_running_loop().time() - lost < LEASE_S
            assert service.deposed
            with pytest.raises(ServerUnavailableError):
                await api_status(server.url)  # a standby does not answer the API

            # The intruder does not renew: its lease runs out and the coordinator leads again.
            await until(lambda: coordinator.leading, "the lease to come back", timeout=10)
            assert coordinator.service is not None
            assert coordinator.service.epoch == service.epoch + 1
            assert (await api_status(server.url))["leader"] == coordinator.coordinator_id
    finally:
        await nc.close()


async def test_a_leader_cut_off_from_nats_steps_down_and_leads_again_after(
    make_server: MakeServer,
) -> None:
    server = make_server()
    assert server.url is not None and server.port is not None
    async with Coordinator(lease_config(server.url)) as coordinator:
        service = coordinator.service
        assert service is not None
        server.stop()
        stopped = asyncio.get_running_loop().time()
        await until(lambda: not coordinator.leading, "the leader to step down", timeout=10)
        # Its last renewal was sent before the server stopped, so it stopped deciding
        # before its lease could have run out on the server.
        assert asyncio.get_running_loop().time() - stopped < LEASE_S
        assert service.deposed

        make_server(server.data_dir, port=server.port)
        # Behaviour, not speed: the projection's consumer has to come back first.
        await until(lambda: coordinator.leading, "leading again after NATS is back", timeout=60)
        assert coordinator.service is not None
        assert coordinator.service.epoch > service.epoch


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
    assert server.url is not None
    nc = await nats.connect(server.url)
    try:
        store = JetStreamEventStore(nc, settings=StreamSettings(events_max_age_s=1))
        await store.ensure_streams()
        await store.append(SkillRegistered(**envelope(), metadata=SkillMetadata(name="x")))
        await store.append(Heartbeat(**envelope("node:n"), node_id="n"))

        async def aged_out() -> bool:
            return await store.last_seq() == 0

        await until_awaited(aged_out, "the events to age out", 10, 0.1)
        runner = ProjectionRunner(store)
        await runner.start(timeout=5)
        await runner.close()
        assert runner.state.skills == {}
    finally:
        await nc.close()


@pytest.fixture(autouse=True)
def _quiet_deposed_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("CRITICAL", logger="eventsrc.coordinator")


async def test_elect_appends_nothing_once_the_lease_is_not_held(make_server: MakeServer) -> None:
    """A coordinator stalled past its lease must not depose the holder: the election and
    the settings are appended only while the lease check says it is still ours."""
    server = make_server()
    assert server.url is not None
    nc = await nats.connect(server.url)
    try:
        store = JetStreamEventStore(nc)
        await store.ensure_streams()
        runner = ProjectionRunner(store)
        await runner.start(timeout=5)
        try:
            with pytest.raises(LeaseLostError, match="no longer holds the leader lease"):
                await elect(
                    store, runner, coordinator_id="late", settings={}, holds_lease=lambda: False
                )
            assert await store.last_seq() == 0

            # The lease lapses between the election and the settings: only the first lands.
            answers = iter([True, False])
            with pytest.raises(LeaseLostError):
                await elect(
                    store,
                    runner,
                    coordinator_id="late",
                    settings={"stale_after": 99.0},
                    holds_lease=lambda: next(answers),
                )
            assert await store.last_seq() == 1
            assert runner.state.epoch == 1 and runner.state.settings.get("stale_after") != 99.0
        finally:
            await runner.close()
    finally:
        await nc.close()

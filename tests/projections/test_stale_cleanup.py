"""Stale cleanup end to end: heartbeats as evidence, expiry by event, a clockless replay.

Through ``eventsrc.connect`` and an in-process coordinator on a real server. The
coordinator's own sweep is set far off so the explicit ``cleanup_stale_instances`` call
is the one that decides.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

import eventsrc
from eventsrc.config import CoordinatorConfig
from eventsrc.coordinator.app import Coordinator
from eventsrc.events import Heartbeat, NodeExpired, SkillInstanceExpired, SkillMetadata
from eventsrc.ports import HEARTBEATS_STREAM, StoredEvent
from eventsrc.projections.canonical import state_hash
from eventsrc.runner import ProjectionRunner
from tests.conftest import MakeServer
from tests.factories import envelope
from tests.projections.builders import joined
from tests.waiting import until

STALE_AFTER = 1.0


@dataclass
class Setup:
    cluster: eventsrc.Cluster
    coordinator: Coordinator


@pytest.fixture
async def setup(make_server: MakeServer) -> AsyncIterator[Setup]:
    server = make_server()
    assert server.url is not None
    config = CoordinatorConfig(nats_url=server.url, stale_after=3600.0, sweep_interval=3600.0)
    async with Coordinator(config) as coordinator, eventsrc.connect(server.url) as cluster:
        yield Setup(cluster, coordinator)


async def test_silent_nodes_expire_with_evidence_and_replay_without_a_clock(
    setup: Setup,
) -> None:
    cluster, coordinator = setup.cluster, setup.coordinator
    leader, service = coordinator.runner, coordinator.service
    assert leader is not None and service is not None
    registry = cluster.registry
    await registry.register_skill(SkillMetadata(name="python"))
    await registry.register_skill(SkillMetadata(name="search"))
    # A member node that will go silent, and two registry-only nodes.
    seq = await cluster.store.append(joined("n-joined"))
    await cluster.runner.wait_for(seq)
    await registry.register_skill_instance("python", "n-joined")
    await registry.register_skill_instance("python", "n-silent")
    await registry.register_skill_instance("search", "n-silent")
    await registry.register_skill_instance("python", "n-beating")
    assert await registry.get_available_nodes_for_skill("python") == [
        "n-beating",
        "n-joined",
        "n-silent",
    ]

    state = cluster.runner.state
    registered_at = {
        (skill, node_id): instance.registered_at
        for skill, holders in state.instances.items()
        for node_id, instance in holders.items()
    }
    joined_at = state.nodes["n-joined"].joined_at
    assert joined_at is not None and all(registered_at.values())
    newest = max([joined_at, *(t for t in registered_at.values() if t is not None)])
    # Real time must pass: the evidence is the server's timestamps.
    await until(
        lambda: datetime.now(UTC) - newest > timedelta(seconds=STALE_AFTER + 0.1),
        "the registrations to become stale",
    )

    beat = Heartbeat(**envelope("node:n-beating"), node_id="n-beating", cpu_percent=7.5)
    hb_seq = await cluster.store.append(beat)

    def heard(runner: ProjectionRunner) -> bool:
        liveness = runner.state.liveness.get("n-beating")
        return liveness is not None and liveness.last_seq == hb_seq

    await until(lambda: heard(cluster.runner), "the heartbeat to reach the client")
    await until(lambda: heard(leader), "the heartbeat to reach the coordinator")
    assert set(cluster.runner.state.liveness) == {"n-beating"}

    before = await cluster.store.last_seq()
    expired = await registry.cleanup_stale_instances(stale_after=STALE_AFTER)

    assert sorted(expired) == [
        ("python", "n-joined"),
        ("python", "n-silent"),
        ("search", "n-silent"),
    ]
    instances = {
        (i.skill, i.node_id): i.status
        for skill in ("python", "search")
        for i in await registry.get_skill_instances(skill, include_offline=True)
    }
    assert instances == {
        ("python", "n-beating"): "active",
        ("python", "n-joined"): "expired",
        ("python", "n-silent"): "expired",
        ("search", "n-silent"): "expired",
    }
    assert await registry.get_available_nodes_for_skill("python") == ["n-beating"]
    assert await registry.get_available_nodes_for_skill("search") == []
    assert cluster.runner.state.nodes["n-joined"].state == "expired"

    stored = [
        record.event
        async for record in cluster.store.read(from_seq=before + 1)
        if isinstance(record, StoredEvent)
    ]
    instance_expiries = [e for e in stored if isinstance(e, SkillInstanceExpired)]
    node_expiries = [e for e in stored if isinstance(e, NodeExpired)]
    assert sorted((e.skill, e.node_id) for e in instance_expiries) == [
        ("python", "n-silent"),
        ("search", "n-silent"),
    ]
    assert [e.node_id for e in node_expiries] == ["n-joined"]
    swept_at = {e.swept_at for e in instance_expiries} | {e.swept_at for e in node_expiries}
    assert len(swept_at) == 1  # one sweep, one time
    for event in instance_expiries:
        assert event.last_seen_at == registered_at[(event.skill, event.node_id)]
        assert event.stale_after_s == STALE_AFTER
        assert event.last_seen_at is not None
        assert event.swept_at - event.last_seen_at > timedelta(seconds=STALE_AFTER)
        assert event.epoch == service.epoch
    (node_expiry,) = node_expiries
    assert node_expiry.last_heartbeat_at is None and node_expiry.last_heartbeat_seq == 0
    assert node_expiry.stale_after_s == STALE_AFTER
    assert node_expiry.swept_at - joined_at > timedelta(seconds=STALE_AFTER)

    # A replay from scratch, with no heartbeats and no clock, reaches the same state.
    async with cluster.runner.reading() as live:
        expected = state_hash(live)
        last = live.last_seq
    async with ProjectionRunner(cluster.store, follow_heartbeats=False) as replayed:
        assert replayed.state.last_seq == last
        assert replayed.state.liveness == {}
        assert state_hash(replayed.state) == expected
    async with leader.reading() as leader_state:
        assert state_hash(leader_state) == expected
    assert await cluster.store.last_seq(HEARTBEATS_STREAM) == hb_seq

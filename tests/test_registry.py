"""The week-5 registry and dependency scenarios through the public API, real server."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest

import eventsrc
from eventsrc import SkillCategory, SkillMetadata
from eventsrc.errors import InvalidIdError, ServerUnavailableError
from tests.conftest import MakeServer


@pytest.fixture
async def cluster(coordinator_url: str) -> AsyncIterator[eventsrc.Cluster]:
    async with eventsrc.connect(coordinator_url) as connected:
        yield connected


def skill(
    name: str, category: SkillCategory, *deps: str, tags: tuple[str, ...] = ()
) -> SkillMetadata:
    return SkillMetadata(
        name=name, description=f"{name} skill", category=category, dependencies=deps, tags=tags
    )


async def test_seed_registry_scenario(cluster: eventsrc.Cluster) -> None:
    registry = cluster.registry
    assert await registry.register_skill(skill("python", SkillCategory.SYSTEM, tags=("code",)))
    assert await registry.register_skill(skill("search", SkillCategory.NETWORK))
    assert await registry.register_skill(skill("weather", SkillCategory.NETWORK, "search"))
    await registry.register_skill_instance("python", "node_001")
    await registry.register_skill_instance("search", "node_001")
    await registry.register_skill_instance("weather", "node_002")

    python = await registry.get_skill_metadata("python")
    assert python is not None and python.category == SkillCategory.SYSTEM
    instances = await registry.get_skill_instances("python")
    assert [(i.node_id, i.status) for i in instances] == [("node_001", "active")]
    assert await registry.get_node_skills("node_001") == {"python", "search"}
    assert await registry.get_available_nodes_for_skill("weather") == ["node_002"]
    assert await registry.resolve_skill_dependencies(["weather"]) == {
        "direct": ["search"],
        "all": ["search"],
        "missing": [],
    }
    stats = await registry.get_stats()
    assert stats["total_skills"] == 3 and stats["total_instances"] == 3
    assert stats["category_counts"] == {"network": 2, "system": 1}
    assert [m.name for m in await registry.list_skills(SkillCategory.NETWORK)] == [
        "search",
        "weather",
    ]
    assert [m.name for m in await registry.list_skills(tag="code")] == ["python"]

    assert await registry.unregister_skill_instance("weather", "node_002")
    assert await registry.get_available_nodes_for_skill("weather") == []
    assert not await registry.unregister_skill_instance("weather", "node_002")


async def test_seed_dependency_scenario(cluster: eventsrc.Cluster) -> None:
    registry = cluster.registry
    for meta in (
        skill("python", SkillCategory.SYSTEM),
        skill("search", SkillCategory.NETWORK),
        skill("weather", SkillCategory.NETWORK, "search"),
        skill("data-analysis", SkillCategory.DATA_PROCESSING, "python"),
        skill("ml", SkillCategory.MACHINE_LEARNING, "python", "data-analysis"),
        skill("loop-a", SkillCategory.CUSTOM, "loop-b"),
        skill("loop-b", SkillCategory.CUSTOM, "loop-a"),
    ):
        await registry.register_skill(meta)
    resolve = registry.resolve_skill_dependencies
    assert await resolve(["python"]) == {"direct": [], "all": [], "missing": []}
    assert await resolve(["weather"]) == {"direct": ["search"], "all": ["search"], "missing": []}
    assert await resolve(["ml"]) == {
        "direct": ["data-analysis", "python"],
        "all": ["data-analysis", "python"],
        "missing": [],
    }
    assert (await resolve(["unknown_skill"]))["missing"] == ["unknown_skill"]
    assert await resolve(["loop-a"]) == {"direct": ["loop-b"], "all": ["loop-b"], "missing": []}


async def test_registering_the_same_metadata_twice_stores_nothing(
    cluster: eventsrc.Cluster,
) -> None:
    meta = skill("python", SkillCategory.SYSTEM)
    assert await cluster.registry.register_skill(meta)
    first = await cluster.registry.get_skill_metadata("python")
    assert first is not None and first.created_at is not None
    assert first.updated_at == first.created_at
    before = await cluster.store.last_seq()
    # Success, as in week 5, though nothing changed: nothing is stored.
    assert await cluster.registry.register_skill(meta)
    assert await cluster.registry.register_skill(first)  # its catalog times are no change
    assert await cluster.store.last_seq() == before
    assert await cluster.registry.register_skill(meta.model_copy(update={"version": "2.0"}))
    updated = await cluster.registry.get_skill_metadata("python")
    assert updated is not None and updated.version == "2.0"
    assert updated.created_at == first.created_at
    assert updated.updated_at is not None and updated.updated_at > first.created_at


async def test_registry_writes_need_a_coordinator(make_server: MakeServer) -> None:
    server = make_server()
    async with eventsrc.connect(server.url, project=False) as bare:
        await bare.store.ensure_streams()  # as a coordinator that has since stopped left them
    async with eventsrc.connect(server.url) as alone:
        with pytest.raises(ServerUnavailableError, match="no coordinator"):
            await alone.registry.register_skill(skill("python", SkillCategory.SYSTEM))


async def test_bad_input_is_refused_clearly(
    cluster: eventsrc.Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    # An unknown skill: False, as in week 5, and the log says why.
    with caplog.at_level(logging.WARNING, logger="eventsrc.registry"):
        assert await cluster.registry.register_skill_instance("nope", "node_001") is False
    assert "'nope' is not in the catalog; register it first" in caplog.text
    assert await cluster.registry.get_skill_instances("nope") == []
    with pytest.raises(InvalidIdError, match="node id"):
        await cluster.registry.register_skill_instance("python", "bad.id")


async def test_a_second_client_sees_the_first_clients_writes(coordinator_url: str) -> None:
    url = coordinator_url
    async with eventsrc.connect(url) as first, eventsrc.connect(url) as second:
        await first.registry.register_skill(skill("python", SkillCategory.SYSTEM))
        await first.registry.register_skill_instance("python", "n1")
        await second.runner.wait_for(await first.store.last_seq())
        assert await second.registry.get_available_nodes_for_skill("python") == ["n1"]

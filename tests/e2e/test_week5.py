"""The week-5 integration scenarios, written with that API's own names and calls.

Registry, discovery, skill-based scheduling and dependency resolution, with the checks
its report prints, against a real coordinator and real node processes. The four run
on a fresh cluster, then a second time on the same cluster: what the first run left
behind (nodes that left, withdrawn instances, a fuller catalog) must not change what
the calls answer.
"""

from __future__ import annotations

import functools
import signal
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path

import pytest

import eventsrc
from eventsrc import TaskPriority
from eventsrc.errors import InvalidRequestError
from eventsrc.skills.skill_discovery import BUILTIN_SKILLS, SkillDiscovery
from eventsrc.skills.skill_registry import SkillCategory, SkillMetadata, SkillRegistry
from tests.conftest import MakeServer
from tests.e2e.conftest import DEADLINE_S, E2E, poll

WEEK5_CATEGORIES = {
    "system": 1,
    "network": 2,
    "data_processing": 1,
    "machine_learning": 1,
    "media_processing": 1,
}
NODES: dict[str, Sequence[str]] = {
    "node_001": ["python", "search"],
    "node_002": ["python", "weather"],
    "node_003": ["python", "ml", "data-analysis"],
}


@pytest.fixture
def week5(
    make_server: MakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[E2E]:
    """A coordinator on a fresh server. Instances registered through the registry alone
    expire after ``--stale-after``: longer than the 2 s of the other e2e tests, so that
    a slow run's checks still see them. The discovery scans a temp home and folder."""
    home, workspace = tmp_path / "home", tmp_path / "workspace"
    home.mkdir()
    workspace.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(workspace)
    server = make_server()
    with ExitStack() as stack:
        cluster = E2E(server, tmp_path, stack)
        cluster.start_coordinator(extra=["--stale-after", "60"])
        yield cluster


def metadata(name: str, category: SkillCategory, *dependencies: str) -> SkillMetadata:
    return SkillMetadata(
        name=name,
        description=f"the {name} skill",
        category=category,
        version="1.0.0",
        author="week5",
        dependencies=list(dependencies),
        required_resources={},
        tags=[name],
    )


async def registry_scenario(registry: SkillRegistry, *, fresh: bool) -> None:
    print("=== registry ===")
    for meta in (
        SkillMetadata(
            name="python",
            description="Python code execution and scripts",
            category=SkillCategory.SYSTEM,
            author="week5",
            required_resources={"cpu": "low", "memory": "medium"},
        ),
        metadata("search", SkillCategory.NETWORK),
        metadata("weather", SkillCategory.NETWORK, "search"),
    ):
        assert await registry.register_skill(meta) is True
        print(f"skill registered: {meta.name}")
    for skill, node_id in (("python", "node_001"), ("search", "node_001"), ("weather", "node_002")):
        assert await registry.register_skill_instance(skill, node_id) is True
    print("skill instances registered")

    python = await registry.get_skill_metadata("python")
    assert python is not None
    assert python.description == "Python code execution and scripts"
    assert python.category == SkillCategory.SYSTEM
    assert python.author == "week5"
    assert python.required_resources == {"cpu": "low", "memory": "medium"}
    assert python.created_at is not None and python.updated_at is not None
    print(f"looked up python: {python.description} ({python.category.value})")

    instances = await registry.get_skill_instances("python")
    assert len(instances) == 1, instances
    assert instances[0].node_id == "node_001"
    print(f"python instances: {len(instances)}")
    node_skills = await registry.get_node_skills("node_001")
    assert node_skills == {"python", "search"}
    print(f"skills of node_001: {sorted(node_skills)}")
    assert await registry.get_available_nodes_for_skill("weather") == ["node_002"]

    weather = await registry.resolve_skill_dependencies(["weather"])
    assert weather["direct"] == ["search"]
    assert weather["all"] == ["search"]
    print(f"weather needs: direct {weather['direct']}, all {weather['all']}")

    stats = await registry.get_stats()
    # The catalog only grows: the second run also sees what the first one added.
    assert stats["total_skills"] == (3 if fresh else 6), stats
    assert stats["total_skills"] == len(await registry.list_skills())
    assert stats["total_instances"] == 3, stats
    assert stats["category_counts"]["network"] == 2
    assert stats["total_registrations"] >= 3
    if not fresh:
        assert stats["offline_instances"] > 0, "the first run's nodes left"
    print(f"registry: {stats['total_skills']} skills, {stats['total_instances']} instances")


async def discovery_scenario(registry: SkillRegistry, skills_dir: Path) -> None:
    print("=== discovery ===")
    discovery = SkillDiscovery(registry, skills_dir=str(skills_dir))
    registered = await discovery.register_local_skills(BUILTIN_SKILLS)
    assert registered == 6
    print(f"registered {registered} local skills")

    await discovery.start("node_discovery")
    try:
        print("discovery started")
        discovered = await discovery.get_discovered_skills()
        assert len(discovered) == 0
        print(f"discovered: {len(discovered)}")
        stats = await discovery.get_skill_stats()
        assert stats["total_skills"] == 6
        assert stats["category_counts"] == WEEK5_CATEGORIES
        print(f"total {stats['total_skills']}, by category {stats['category_counts']}")
        names = {entry["name"] for entry in BUILTIN_SKILLS}
        assert await registry.get_node_skills("node_discovery") == names
    finally:
        await discovery.stop()
    assert await registry.get_node_skills("node_discovery") == set()


async def scheduling_scenario(e2e: E2E, cluster: eventsrc.Cluster) -> None:
    print("=== skill-based scheduling ===")
    await e2e.start_nodes(NODES)
    registry = cluster.registry
    for node_id, skills in NODES.items():
        await poll(
            functools.partial(_holds, registry, node_id, skills),
            f"{node_id} with {skills} in the client's projection",
        )
        print(f"{node_id}: {skills}")
    print("scheduler running")

    placed = 0
    for required, node_id, priority in (
        (["python"], "node_001", TaskPriority.NORMAL),
        (["weather"], "node_002", TaskPriority.HIGH),
        (["ml"], "node_003", TaskPriority.LOW),
        (["python", "search"], "node_001", TaskPriority.CRITICAL),
    ):
        task = await cluster.submit(required, {"code": "print(1)"}, priority=priority)
        assert task.node_id == node_id, (required, task)
        assert task.priority == priority.rank
        placed += 1
        print(f"{required} -> {task.node_id}")
    assert placed == 4
    print(f"placed: {placed}")

    # The week-5 task dict's extra keys are refused, not dropped.
    with pytest.raises(InvalidRequestError, match=r"unknown task option\(s\) name;"):
        await cluster.submit(["python"], {"code": "print(1)"}, name="nightly")

    for node_id in NODES:
        assert e2e.nodes[node_id].signal(signal.SIGTERM, timeout=DEADLINE_S) == 0
        await e2e.wait_node(node_id, "left")


async def _holds(registry: SkillRegistry, node_id: str, skills: Sequence[str]) -> bool:
    return set(skills) <= await registry.get_node_skills(node_id)


async def dependency_scenario(registry: SkillRegistry) -> None:
    print("=== dependency resolution ===")
    for meta in (
        metadata("python", SkillCategory.SYSTEM),
        metadata("search", SkillCategory.NETWORK),
        metadata("weather", SkillCategory.NETWORK, "search"),
        metadata("data-analysis", SkillCategory.DATA_PROCESSING, "python"),
        metadata("ml", SkillCategory.MACHINE_LEARNING, "data-analysis", "python"),
    ):
        assert await registry.register_skill(meta)
    print("skills and their dependencies registered")
    for asked, direct in (
        (["python"], []),
        (["weather"], ["search"]),
        (["ml"], ["data-analysis", "python"]),
    ):
        resolved = await registry.resolve_skill_dependencies(asked)
        assert resolved == {"direct": direct, "all": direct, "missing": []}, resolved
        print(f"{asked}: direct {resolved['direct']}, all {resolved['all']}, missing []")
    unknown = await registry.resolve_skill_dependencies(["unknown_skill"])
    assert unknown["missing"] == ["unknown_skill"]
    print(f"missing found: {unknown['missing']}")


async def week5_run(e2e: E2E, skills_dir: Path, *, fresh: bool) -> None:
    async with eventsrc.connect(e2e.url) as cluster:
        await registry_scenario(cluster.registry, fresh=fresh)
        await discovery_scenario(cluster.registry, skills_dir)
        await scheduling_scenario(e2e, cluster)
        await dependency_scenario(cluster.registry)


async def test_the_week5_scenarios_pass_twice_on_one_cluster(week5: E2E, tmp_path: Path) -> None:
    skills_dir = tmp_path / "skills"
    skills_dir.mkdir()
    await week5_run(week5, skills_dir, fresh=True)
    await week5_run(week5, skills_dir, fresh=False)


SKILL_MD = """---
name: shout
description: Upper-cases text
metadata: {"eventsrc": {"category": "data_processing", "run": "tr a-z A-Z"}}
---
"""


async def test_discovery_keeps_rescanning_and_withdraws_on_stop(week5: E2E, tmp_path: Path) -> None:
    skills_dir = tmp_path / "skills"
    skills_dir.mkdir()
    async with eventsrc.connect(week5.url) as cluster:
        registry = cluster.registry
        async with SkillDiscovery(registry, str(skills_dir), discovery_interval=0.2) as found:
            await found.start("node_scan")
            assert await found.get_discovered_skills() == []

            (skills_dir / "shout").mkdir()
            (skills_dir / "shout" / "SKILL.md").write_text(SKILL_MD, encoding="utf-8")

            async def registered() -> bool:
                return await registry.get_node_skills("node_scan") == {"shout"}

            await poll(registered, "the rescan to register shout on node_scan")
            shout = await registry.get_skill_metadata("shout")
            assert shout is not None and shout.category == SkillCategory.DATA_PROCESSING
            assert [m.name for m in await found.get_discovered_skills()] == ["shout"]
            stats = await found.get_skill_stats()
            assert stats["category_counts"] == {"data_processing": 1}
            assert stats["scans"] >= 2

            (skills_dir / "shout" / "SKILL.md").unlink()

            async def withdrawn() -> bool:
                return await registry.get_node_skills("node_scan") == set()

            await poll(withdrawn, "the rescan to withdraw shout from node_scan")
            (skills_dir / "shout" / "SKILL.md").write_text(SKILL_MD, encoding="utf-8")
            await poll(registered, "shout to come back on node_scan")
        # Leaving the block stopped the service: its instances are withdrawn.
        assert await registry.get_node_skills("node_scan") == set()
        assert not found.running  # the rescan task was cancelled and awaited


async def test_a_rescan_brings_back_instances_the_coordinator_expired(
    e2e: E2E, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The e2e coordinator expires silent instances after 2 s; no node heartbeats here.
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    async with eventsrc.connect(e2e.url) as cluster:
        registry = cluster.registry
        python = next(entry for entry in BUILTIN_SKILLS if entry["name"] == "python")
        async with SkillDiscovery(registry, discovery_interval=0.3) as found:
            assert await found.register_local_skills([python]) == 1
            await found.start("node_quiet")

            async def expired_then_back() -> bool:
                # A second registration event: the first instance was expired (nothing
                # else withdraws it) and a rescan registered it again.
                stats = await registry.get_stats()
                back = await registry.get_node_skills("node_quiet") == {"python"}
                return stats["total_registrations"] >= 2 and back

            await poll(expired_then_back, "the sweep to expire python on node_quiet and a rescan")
            history = await registry.get_skill_instances("python", include_offline=True)
            assert [(i.node_id, i.status) for i in history] == [("node_quiet", "active")]

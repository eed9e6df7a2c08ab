"""Read-only questions about a ClusterState: the week-5 registry's queries, pure."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from eventsrc.events import SkillCategory, SkillMetadata
from eventsrc.projections.state import ClusterState, InstanceView


class SkillInstance(BaseModel):
    """A skill on a node as callers see it (a copy; safe to keep)."""

    model_config = ConfigDict(frozen=True)

    skill: str
    node_id: str
    status: str
    registered_at: datetime | None
    usage_count: int
    success_count: int
    failure_count: int
    success_rate: float

    @classmethod
    def of(cls, view: InstanceView) -> SkillInstance:
        return cls(
            skill=view.skill,
            node_id=view.node_id,
            status=view.status,
            registered_at=view.registered_at,
            usage_count=view.usage_count,
            success_count=view.success_count,
            failure_count=view.failure_count,
            success_rate=view.success_rate,
        )


def skill_instances(
    state: ClusterState, skill: str, *, include_offline: bool = False
) -> list[SkillInstance]:
    """The live instances of a skill (see ``ClusterState.live``), by node id; with
    ``include_offline`` every instance, whatever its status."""
    holders = state.instances.get(skill, {})
    return [
        SkillInstance.of(holders[node_id])
        for node_id in sorted(holders)
        if include_offline or state.live(holders[node_id])
    ]


def node_skills(state: ClusterState, node_id: str) -> set[str]:
    """The skills a node holds active instances of."""
    return set(state.node_skills.get(node_id, ()))


def list_skills(
    state: ClusterState, category: SkillCategory | str | None = None, *, tag: str | None = None
) -> list[SkillMetadata]:
    """Catalog skills by name, optionally of one category and/or carrying a tag."""
    wanted = SkillCategory(category) if category is not None else None
    return [
        meta
        for name, meta in sorted(state.skills.items())
        if (wanted is None or meta.category == wanted) and (tag is None or tag in meta.tags)
    ]


def resolve_dependencies(state: ClusterState, skill_names: list[str]) -> dict[str, list[str]]:
    """``{"direct", "all", "missing"}`` for the asked skills, as in the week-5 API.

    ``direct``: dependencies the asked skills name; ``all``: transitive closure; both
    without the asked skills themselves, sorted. ``missing``: asked or needed names not
    in the catalog. Cycles terminate (each skill is visited once).
    """
    asked = set(skill_names)
    missing: set[str] = set()
    direct: set[str] = set()
    for name in asked:
        meta = state.skills.get(name)
        if meta is None:
            missing.add(name)
        else:
            direct.update(meta.dependencies)
    seen: set[str] = set(asked)
    closure: set[str] = set()
    frontier = list(direct)
    while frontier:
        name = frontier.pop()
        if name in seen:
            continue
        seen.add(name)
        closure.add(name)
        meta = state.skills.get(name)
        if meta is None:
            missing.add(name)
            continue
        frontier.extend(meta.dependencies)
    return {
        "direct": sorted(direct - asked),
        "all": sorted(closure - asked),
        "missing": sorted(missing),
    }


def reported_skills(state: ClusterState) -> set[str]:
    """Skills some node has reported finding without being able to run them."""
    return {skill.name for node in state.nodes.values() for skill in node.unavailable}


def registry_stats(state: ClusterState) -> dict[str, Any]:
    """Counts of the catalog and its instances, with the week-5 keys.

    ``total_instances`` counts live instances only; ``offline_instances`` the rest
    (unregistered, expired, or of nodes that left), by status in ``instances_by_status``.
    ``total_registrations`` / ``total_unregistrations`` count instance registrations and
    withdrawals over the whole history.
    """
    instances = [i for holders in state.instances.values() for i in holders.values()]
    live = sum(1 for instance in instances if state.live(instance))
    statuses = Counter(instance.status.value for instance in instances)
    categories = Counter(meta.category.value for meta in state.skills.values())
    return {
        "total_skills": len(state.skills),
        "total_instances": live,
        "offline_instances": len(instances) - live,
        "instances_by_status": dict(sorted(statuses.items())),
        "category_counts": dict(sorted(categories.items())),
        "total_registrations": state.instance_registrations,
        "total_unregistrations": state.instance_unregistrations,
        "nodes": len(state.nodes),
        "nodes_with_skills": sum(1 for skills in state.node_skills.values() if skills),
    }

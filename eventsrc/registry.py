"""The week-5 SkillRegistry: reads from the projection, writes as events.

Reads take the runner's reader lock and answer from memory. Writes go through a
``RegistryWriter``: in the coordinator ``eventsrc.writer.EventWriter`` decides against
the projection and appends with optimistic concurrency; elsewhere the command API does
that in the coordinator. Every write returns once the local projection has applied its
events (read your own write).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from eventsrc.commands.registry import (
    ExpireStale,
    RegisterInstance,
    RegisterSkill,
    UnregisterInstance,
    decide_expire_stale,
    decide_register_instance,
    decide_register_skill,
    decide_unregister_instance,
)
from eventsrc.errors import NotFoundError
from eventsrc.events import (
    Event,
    NodeExpired,
    SkillCategory,
    SkillInstanceExpired,
    SkillMetadata,
    validate_token,
)
from eventsrc.projections import queries
from eventsrc.projections.queries import SkillInstance
from eventsrc.projections.state import ClusterState, InstanceStatus, NodeIds
from eventsrc.runner import ProjectionRunner
from eventsrc.writer import C, Decide

log = logging.getLogger(__name__)


class RegistryWriter(Protocol):
    """Where registry writes go; returns the events it stored."""

    async def execute(self, decide: Decide[C], command: C) -> tuple[Event, ...]: ...


class SkillRegistry:
    """The week-5 registry API, every method async."""

    def __init__(self, runner: ProjectionRunner, writer: RegistryWriter) -> None:
        self._runner = runner
        self._writer = writer

    async def register_skill(self, metadata: SkillMetadata) -> bool:
        """Add or update a catalog skill; True once the catalog holds it as given (also
        when it already did). Errors (a bad name, no coordinator) raise."""
        await self._writer.execute(decide_register_skill, RegisterSkill(metadata=metadata))
        return True

    async def register_skill_instance(self, skill_name: str, node_id: str) -> bool:
        """Record that ``node_id`` runs ``skill_name``; True once it is registered (also
        when it already was), False for a skill not in the catalog (logged with why)."""
        command = RegisterInstance(
            skill=validate_token(skill_name, what="skill name"),
            node_id=validate_token(node_id, what="node id"),
        )
        try:
            await self._writer.execute(decide_register_instance, command)
        except NotFoundError as err:
            log.warning("instance of %s on %s not registered: %s", skill_name, node_id, err)
            return False
        return True

    async def unregister_skill_instance(self, skill_name: str, node_id: str) -> bool:
        """Withdraw an instance; False when it was not active."""
        command = UnregisterInstance(
            skill=validate_token(skill_name, what="skill name"),
            node_id=validate_token(node_id, what="node id"),
        )
        return bool(await self._writer.execute(decide_unregister_instance, command))

    async def cleanup_stale_instances(self, stale_after: float = 30.0) -> list[tuple[str, str]]:
        """Expire what has been silent for ``stale_after`` s; returns (skill, node) pairs."""
        events = await self._writer.execute(
            decide_expire_stale, ExpireStale(stale_after_s=stale_after)
        )
        expired: list[tuple[str, str]] = []
        async with self._runner.reading() as state:
            for event in events:
                if isinstance(event, SkillInstanceExpired):
                    expired.append((event.skill, event.node_id))
                elif isinstance(event, NodeExpired):
                    instances = state.instances
                    expired.extend(
                        (skill, event.node_id)
                        for skill, holders in sorted(instances.items())
                        if holders.get(event.node_id) is not None
                        and holders[event.node_id].status == InstanceStatus.EXPIRED
                    )
        return expired

    async def get_skill_metadata(self, skill_name: str) -> SkillMetadata | None:
        async with self._runner.reading() as state:
            return state.skills.get(skill_name)

    async def get_skill_instances(
        self, skill_name: str, *, include_offline: bool = False
    ) -> list[SkillInstance]:
        """Live instances (active, on a member node or registered here alone); with
        ``include_offline`` also unregistered, expired and left ones."""
        async with self._runner.reading() as state:
            return queries.skill_instances(state, skill_name, include_offline=include_offline)

    async def get_available_nodes_for_skill(self, skill_name: str) -> NodeIds:
        """The node ids with a live instance, sorted: a read-only sequence equal to the
        list of them (no copy of every id per call)."""
        async with self._runner.reading() as state:
            return state.holders(skill_name)

    async def get_node_skills(self, node_id: str) -> set[str]:
        async with self._runner.reading() as state:
            return queries.node_skills(state, node_id)

    async def list_skills(
        self, category: SkillCategory | str | None = None, *, tag: str | None = None
    ) -> list[SkillMetadata]:
        async with self._runner.reading() as state:
            return queries.list_skills(state, category, tag=tag)

    async def resolve_skill_dependencies(self, skill_names: list[str]) -> dict[str, list[str]]:
        async with self._runner.reading() as state:
            return queries.resolve_dependencies(state, list(skill_names))

    async def get_stats(self) -> dict[str, Any]:
        """``total_skills``, ``total_instances`` (live), ``offline_instances``,
        ``category_counts``, ``total_registrations`` and more (``registry_stats``)."""
        async with self._runner.reading() as state:
            return queries.registry_stats(state)

    async def read(self, question: Callable[[ClusterState], Any]) -> Any:
        """Answer any pure question about the state under the reader lock."""
        async with self._runner.reading() as state:
            return question(state)

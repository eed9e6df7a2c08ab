"""The seed's SkillRegistry: reads from the projection, writes as events.

Reads take the runner's reader lock and answer from memory. Writes go through a
``RegistryWriter``: in the coordinator (and in tests) ``DirectRegistryWriter`` decides
against the projection and appends with optimistic concurrency; every write returns
once the local projection has applied its events (read your own write).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from eventsrc.commands.base import Command, Origin
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
from eventsrc.errors import ConcurrencyError, DuplicateEventError, StoreError
from eventsrc.events import (
    Event,
    NodeExpired,
    SkillCategory,
    SkillInstanceExpired,
    SkillMetadata,
    new_event_id,
    validate_token,
)
from eventsrc.ports import EventStore
from eventsrc.projections import queries
from eventsrc.projections.queries import SkillInstance
from eventsrc.projections.runner import ProjectionRunner
from eventsrc.projections.state import ClusterState

log = logging.getLogger(__name__)

CommandT = TypeVar("CommandT", bound=Command)
Decide = Callable[..., tuple[Event, ...]]

MAX_CONFLICT_RETRIES = 5


class RegistryWriter(Protocol):
    """Where registry writes go; returns the events it stored."""

    async def execute(self, decide: Decide, command: Command) -> tuple[Event, ...]: ...


class DirectRegistryWriter:
    """Decide against the local projection and append; retries lost races."""

    def __init__(
        self,
        store: EventStore,
        runner: ProjectionRunner,
        *,
        origin: Origin | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._runner = runner
        self._origin = origin or Origin()
        self._clock = clock

    async def execute(self, decide: Decide, command: Command) -> tuple[Event, ...]:
        """Decide, append each event guarded by its aggregate's last sequence, wait."""
        for _ in range(MAX_CONFLICT_RETRIES):
            async with self._runner.reading() as state:
                events = decide(
                    state, command, now=self._clock(), new_id=new_event_id, origin=self._origin
                )
                expected = [state.aggregate_seq.get(e.aggregate_subject, 0) for e in events]
            try:
                last = 0
                for event, seq in zip(events, expected, strict=True):
                    last = await self._append(event, seq)
                await self._runner.wait_for(last)
                return events
            except ConcurrencyError:
                # Someone else wrote to the aggregate: catch up and decide again.
                await self._runner.wait_for(await self._store.last_seq())
        raise StoreError(
            f"{type(command).__name__} kept losing races after {MAX_CONFLICT_RETRIES} "
            f"tries; try again"
        )

    async def _append(self, event: Event, expected: int) -> int:
        try:
            return await self._store.append(event, expected_seq=expected)
        except DuplicateEventError as dup:
            return dup.seq


class SkillRegistry:
    """The seed's registry API, every method async."""

    def __init__(self, runner: ProjectionRunner, writer: RegistryWriter) -> None:
        self._runner = runner
        self._writer = writer

    async def register_skill(self, metadata: SkillMetadata) -> bool:
        """Add or update a catalog skill; False when it was already exactly so."""
        return bool(
            await self._writer.execute(decide_register_skill, RegisterSkill(metadata=metadata))
        )

    async def register_skill_instance(self, skill_name: str, node_id: str) -> bool:
        """Record that ``node_id`` runs ``skill_name``; raises NotFoundError for unknown skills."""
        command = RegisterInstance(
            skill=validate_token(skill_name, what="skill name"),
            node_id=validate_token(node_id, what="node id"),
        )
        return bool(await self._writer.execute(decide_register_instance, command))

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
                        and holders[event.node_id].status == "expired"
                    )
        return expired

    async def get_skill_metadata(self, skill_name: str) -> SkillMetadata | None:
        async with self._runner.reading() as state:
            return state.skills.get(skill_name)

    async def get_skill_instances(self, skill_name: str) -> list[SkillInstance]:
        async with self._runner.reading() as state:
            return queries.skill_instances(state, skill_name)

    async def get_available_nodes_for_skill(self, skill_name: str) -> list[str]:
        async with self._runner.reading() as state:
            return state.active_instance_nodes(skill_name)

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
        async with self._runner.reading() as state:
            return queries.registry_stats(state)

    async def read(self, question: Callable[[ClusterState], Any]) -> Any:
        """Answer any pure question about the state under the reader lock."""
        async with self._runner.reading() as state:
            return question(state)

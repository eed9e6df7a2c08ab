"""The week-5 SkillDiscovery: the node's skill scanner, registering what it finds.

``SkillDiscovery(registry, skills_dir="./skills", discovery_interval=60)`` scans as a
node does (OpenClaw's folders, then ``skills_dir``; see ``eventsrc.node.discovery``) and
keeps a registry up to date for one node id::

    discovery = SkillDiscovery(cluster.registry, skills_dir="./skills")
    await discovery.register_local_skills(BUILTIN_SKILLS)   # catalog entries
    await discovery.start("node_001")   # scan, register instances, rescan every 60 s
    ...
    await discovery.stop()              # stop rescanning, withdraw those instances

Writes go through the registry, so they need a running coordinator. With no node
process of that id heartbeating, the coordinator expires the instances after its
``stale_after`` like any silent node's; each rescan registers them again.

The keyword form ``SkillDiscovery(env=..., workspace=..., extra_dirs=...)`` is the bare
scanner (``scan()``), as a node uses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from pydantic import ValidationError

from eventsrc.errors import ConfigError, EventsrcError, first_problem
from eventsrc.events import SkillMetadata, validate_token
from eventsrc.node.builtins import BUILTIN_SKILLS as BUILTIN_METADATA
from eventsrc.node.discovery import SkillScanner
from eventsrc.registry import SkillRegistry

__all__ = ["BUILTIN_SKILLS", "SkillDiscovery", "build_manifest", "register_builtin_skills"]

log = logging.getLogger(__name__)

SkillConfig = Mapping[str, Any] | SkillMetadata
"""A skill as ``register_local_skills`` takes it: a manifest dict or the metadata."""


def build_manifest(metadata: SkillMetadata) -> dict[str, Any]:
    """A skill's manifest: the week-5 dict of its metadata (what ``BUILTIN_SKILLS`` holds)."""
    return {
        "name": metadata.name,
        "description": metadata.description,
        "category": metadata.category.value,
        "version": metadata.version,
        "author": metadata.author,
        "dependencies": list(metadata.dependencies),
        "required_resources": dict(metadata.resources),
        "tags": list(metadata.tags),
    }


BUILTIN_SKILLS: list[dict[str, Any]] = [build_manifest(m) for m in BUILTIN_METADATA.values()]
"""The six built-in catalog skills as manifests (``eventsrc.node.builtins`` defines them)."""


class SkillDiscovery(SkillScanner):
    """The scanner plus the week-5 lifecycle: register skills and one node's instances.

    ``skills_dir`` is scanned after OpenClaw's own folders (like ``--skills-dir``).
    ``env`` is the environment the skills would run in (gating reads PATH and
    variables from it); the week-5 form has none, and then this process's is used.
    """

    def __init__(
        self,
        registry: SkillRegistry | None = None,
        skills_dir: str | Path | None = None,
        discovery_interval: float = 60.0,
        *,
        env: Mapping[str, str] | None = None,
        workspace: str | Path | None = None,
        home: str | Path | None = None,
        extra_dirs: Sequence[str | Path] = (),
        platform: str = sys.platform,
    ) -> None:
        if discovery_interval <= 0:
            raise ConfigError(f"discovery_interval must be > 0 seconds, not {discovery_interval}")
        dirs = [*([skills_dir] if skills_dir is not None else []), *extra_dirs]
        super().__init__(
            env=os.environ if env is None else env,
            workspace=workspace,
            home=home,
            extra_dirs=dirs,
            platform=platform,
        )
        self.skill_registry = registry
        self.skills_dir = Path(skills_dir) if skills_dir is not None else None
        self.discovery_interval = discovery_interval
        self._node_id: str | None = None
        self._local: dict[str, SkillMetadata] = {}
        self._discovered: dict[str, SkillMetadata] = {}
        self._registered: set[str] = set()
        self._scans = 0
        self._loop: asyncio.Task[None] | None = None

    @property
    def node_id(self) -> str | None:
        """The node whose instances this service registers (set by ``start``)."""
        return self._node_id

    @property
    def running(self) -> bool:
        return self._loop is not None

    async def register_local_skills(self, skills: Iterable[SkillConfig] | None = None) -> int:
        """Put skills in the catalog (``BUILTIN_SKILLS`` when none are given) and, once
        started, register them on this node; returns how many were registered.

        A skill that cannot be registered (a bad field, an unknown key) is logged and
        skipped, as the week-5 service did.
        """
        registry = self._require_registry("register_local_skills")
        registered = 0
        for config in BUILTIN_SKILLS if skills is None else skills:
            try:
                metadata = _metadata_of(config)
                await registry.register_skill(metadata)
            except (ValidationError, EventsrcError) as err:
                log.error("local skill %s not registered: %s", _name_of(config), _one_line(err))
                continue
            self._local[metadata.name] = metadata
            registered += 1
            if self._node_id is not None:
                await self._register_instance(registry, metadata.name)
        if registered:
            log.info("registered %d local skills", registered)
        return registered

    async def start(self, node_id: str) -> None:
        """Scan now, register the skills found and this node's instances of every skill
        this service knows, then rescan every ``discovery_interval`` seconds."""
        registry = self._require_registry("start")
        if self._loop is not None:
            log.warning("skill discovery already runs for %s", self._node_id)
            return
        self._node_id = validate_token(node_id, what="node id")
        await self._discover(registry)
        self._loop = asyncio.create_task(self._rescan(registry), name=f"discovery-{node_id}")
        log.info(
            "skill discovery started for %s (%s, every %g s)",
            node_id,
            ", ".join(str(root) for _, root in self.roots()),
            self.discovery_interval,
        )

    async def stop(self) -> None:
        """Stop rescanning and withdraw the instances this service registered; idempotent."""
        loop, self._loop = self._loop, None
        if loop is None:
            return
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop
        registry, node_id = self.skill_registry, self._node_id
        if registry is not None and node_id is not None:
            for name in sorted(self._registered):
                with _logged(f"withdrawing {name} on {node_id}"):
                    await registry.unregister_skill_instance(name, node_id)
        self._registered.clear()
        log.info("skill discovery stopped for %s", node_id)

    async def close(self) -> None:
        """``stop()``, for ``async with``."""
        await self.stop()

    async def __aenter__(self) -> SkillDiscovery:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def get_discovered_skills(self) -> list[SkillMetadata]:
        """The skills the last scan found and this node can run, by name."""
        return [self._discovered[name] for name in sorted(self._discovered)]

    async def get_skill_stats(self) -> dict[str, Any]:
        """What this service knows: ``total_skills``, ``category_counts``, and more."""
        known = {**self._discovered, **self._local}
        counts: dict[str, int] = {}
        for metadata in known.values():
            counts[metadata.category.value] = counts.get(metadata.category.value, 0) + 1
        return {
            "total_skills": len(known),
            "local_skills": len(self._local),
            "discovered_skills": len(self._discovered),
            "registered_instances": len(self._registered),
            "category_counts": dict(sorted(counts.items())),
            "node_id": self._node_id,
            "running": self.running,
            "scans": self._scans,
        }

    def _require_registry(self, what: str) -> SkillRegistry:
        if self.skill_registry is None:
            raise ConfigError(
                f"SkillDiscovery.{what} needs a registry: "
                "SkillDiscovery(cluster.registry, skills_dir=...)"
            )
        return self.skill_registry

    async def _rescan(self, registry: SkillRegistry) -> None:
        while True:
            await asyncio.sleep(self.discovery_interval)
            # A scan that fails (no coordinator now) is tried again next interval.
            with _logged("rescanning skills"):
                await self._discover(registry)

    async def _discover(self, registry: SkillRegistry) -> None:
        found = await asyncio.to_thread(self.scan)
        self._scans += 1
        for line in found.errors:
            log.warning("skipped: %s", line)
        discovered = {name: skill.metadata for name, skill in found.eligible().items()}
        for name, metadata in sorted(discovered.items()):
            if name not in self._local:
                await registry.register_skill(metadata)
        gone = set(self._discovered) - set(discovered) - set(self._local)
        self._discovered = discovered
        node_id = self._node_id
        if node_id is None:
            return
        for name in sorted(gone & self._registered):
            await registry.unregister_skill_instance(name, node_id)
            self._registered.discard(name)
        # Every scan registers all of them again: a no-op for an active instance, and it
        # brings back one the coordinator expired (no node heartbeats for this id).
        for name in sorted({*self._local, *discovered}):
            await self._register_instance(registry, name)
        if discovered:
            log.info("discovered %d skills: %s", len(discovered), ", ".join(sorted(discovered)))

    async def _register_instance(self, registry: SkillRegistry, name: str) -> None:
        assert self._node_id is not None
        if await registry.register_skill_instance(name, self._node_id):
            self._registered.add(name)


async def register_builtin_skills(skill_discovery: SkillDiscovery, node_id: str) -> int:
    """Register the built-ins through ``skill_discovery`` (``node_id`` as in week 5:
    instances follow once the service is started for it); returns how many."""
    validate_token(node_id, what="node id")
    return await skill_discovery.register_local_skills(BUILTIN_SKILLS)


def _metadata_of(config: SkillConfig) -> SkillMetadata:
    if isinstance(config, SkillMetadata):
        return config
    return SkillMetadata.model_validate(dict(config))


def _name_of(config: SkillConfig) -> str:
    return str(config.name if isinstance(config, SkillMetadata) else config.get("name", "?"))


def _one_line(err: Exception) -> str:
    if isinstance(err, ValidationError):
        return str(first_problem(err))
    return str(err)


@contextlib.contextmanager
def _logged(what: str) -> Iterator[None]:
    try:
        yield
    except EventsrcError as err:
        log.warning("%s failed: %s", what, err)

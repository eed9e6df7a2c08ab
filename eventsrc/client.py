"""``eventsrc.connect``: the Python entry point for programs that use a cluster."""

from __future__ import annotations

import os
from contextlib import AsyncExitStack
from types import TracebackType

from eventsrc.commands.base import Origin
from eventsrc.projections.runner import ProjectionRunner
from eventsrc.registry import DirectRegistryWriter, SkillRegistry
from eventsrc.store import JetStreamEventStore, NatsOptions, connect_nats, resolve_servers


class Cluster:
    """A connection to an eventsrc cluster with a live local projection.

    Use as ``async with eventsrc.connect(url) as cluster:``; reads are answered by the
    local projection, writes are stored as events and read back before returning.
    """

    def __init__(self, options: NatsOptions, *, follow_heartbeats: bool = True) -> None:
        self._options = options
        self._follow_heartbeats = follow_heartbeats
        self._stack = AsyncExitStack()
        self._registry: SkillRegistry | None = None
        self._runner: ProjectionRunner | None = None
        self._store: JetStreamEventStore | None = None

    @property
    def registry(self) -> SkillRegistry:
        """The seed's SkillRegistry over this cluster."""
        assert self._registry is not None, "use `async with eventsrc.connect(...)` first"
        return self._registry

    @property
    def runner(self) -> ProjectionRunner:
        """The local projection (state, reader lock, wait_for)."""
        assert self._runner is not None, "use `async with eventsrc.connect(...)` first"
        return self._runner

    @property
    def store(self) -> JetStreamEventStore:
        """The event store of this connection."""
        assert self._store is not None, "use `async with eventsrc.connect(...)` first"
        return self._store

    async def open(self) -> Cluster:
        """Connect (failing fast with one line if NATS is not there) and catch up."""
        nc = await connect_nats(self._options, long_running=False)
        self._stack.push_async_callback(nc.close)
        self._store = JetStreamEventStore(nc)
        await self._store.ensure_streams()
        self._runner = ProjectionRunner(self._store, follow_heartbeats=self._follow_heartbeats)
        await self._stack.enter_async_context(self._runner)
        writer = DirectRegistryWriter(self._store, self._runner, origin=Origin(producer="client"))
        self._registry = SkillRegistry(self._runner, writer)
        return self

    async def close(self) -> None:
        """Disconnect; idempotent."""
        await self._stack.aclose()

    async def __aenter__(self) -> Cluster:
        try:
            return await self.open()
        except BaseException:
            await self.close()
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def connect(url: str | None = None, *, creds: str | None = None) -> Cluster:
    """A Cluster for ``url`` (else ``EVENTSRC_NATS_URL``, ``./.eventsrc/url``, default)."""
    servers = resolve_servers(url, os.environ)
    return Cluster(
        NatsOptions(
            servers=servers,
            name="eventsrc-client",
            creds=creds or os.environ.get("EVENTSRC_NATS_CREDS"),
        )
    )

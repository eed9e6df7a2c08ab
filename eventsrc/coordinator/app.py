"""The coordinator process: embedded server (when no URL is given), streams, projection,
leadership (the KV lease) and, for each term it wins, the service; started and stopped
in order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any, Protocol

from eventsrc.commands.tasks import Limits
from eventsrc.config import CoordinatorConfig, nats_options
from eventsrc.coordinator.leadership import Leadership, Term
from eventsrc.coordinator.service import CoordinatorService
from eventsrc.errors import ConfigError
from eventsrc.progress import Progress, following
from eventsrc.projections.state import ClusterState
from eventsrc.runner import ProjectionRunner
from eventsrc.store import Connection, JetStreamEventStore, StreamSettings, connect_nats
from eventsrc.store.connection import split_urls
from eventsrc.store.lease import KvLease
from eventsrc.store.server import EmbeddedServer
from eventsrc.store.snapshots import SnapshotStore

log = logging.getLogger(__name__)

ENVELOPE_ROOM = 16 * 1024
"""Bytes a task's events need beside its payload; a payload limit above the server's
max payload minus this is lowered, so whatever is accepted can also be assigned."""


def stream_settings(config: CoordinatorConfig) -> StreamSettings:
    """The stream limits the coordinator enforces."""
    return StreamSettings(
        replicas=config.replicas,
        events_max_age_s=config.events_max_age,
        events_max_bytes=config.events_max_bytes,
        heartbeats_max_per_node=config.heartbeats_max_per_node,
        heartbeats_max_age_s=config.heartbeats_max_age,
        output_max_age_s=config.output_max_age,
        output_max_bytes=config.output_max_bytes,
    )


class LocalNode(Protocol):
    """What the coordinator needs of the node it runs in its own process: an async
    context manager with an id."""

    @property
    def node_id(self) -> str: ...

    async def __aenter__(self) -> Any: ...

    async def __aexit__(self, *exc_info: object) -> Any: ...


class LocalNodeFactory(Protocol):
    """Builds the cluster-of-one's node on the coordinator's connection and store;
    ``node_id`` is the configured one, or None for the node's own default."""

    def __call__(
        self, nc: Connection, store: JetStreamEventStore, *, node_id: str | None
    ) -> LocalNode: ...


class Coordinator:
    """An async context manager owning the server (if embedded), connection and store.

    ``local_node`` builds the node a cluster of one runs in this process (the entry
    point passes the node package's; the coordinator does not import it). It runs when
    the config asks for it, by default only with the embedded server.
    """

    def __init__(
        self, config: CoordinatorConfig, *, local_node: LocalNodeFactory | None = None
    ) -> None:
        self.config = config
        self._local_node_factory = local_node
        self.server: EmbeddedServer | None = None
        self.servers: tuple[str, ...] = ()
        self._stack = AsyncExitStack()
        self._nc: Connection | None = None
        self._store: JetStreamEventStore | None = None
        self.runner: ProjectionRunner | None = None
        self.leadership: Leadership | None = None
        self.service: CoordinatorService | None = None
        self._serving: asyncio.Task[None] | None = None
        self._term_served = asyncio.Event()
        self.local_node: LocalNode | None = None
        # Unique per instance (the lease tells holders apart by it): containers often
        # share host names and pids.
        suffix = secrets.token_hex(3)
        self.coordinator_id = f"coordinator-{socket.gethostname()}-{os.getpid()}-{suffix}"

    @property
    def embedded(self) -> bool:
        """True when this coordinator started (and owns) the nats-server."""
        return self.server is not None

    @property
    def leading(self) -> bool:
        """True while this coordinator holds the lease and serves the command API."""
        return self.service is not None

    @property
    def store(self) -> JetStreamEventStore:
        """The event store; only after ``start``."""
        assert self._store is not None, "Coordinator.start() first"
        return self._store

    async def start(self) -> str:
        """Start or reach NATS, make sure the streams exist; return the URL(s) in use."""
        if self.config.nats_url:
            self.servers = split_urls(self.config.nats_url)
        else:
            self.server = EmbeddedServer(
                self.config.data_dir,
                port=self.config.embedded_port,
                sync=self.config.sync_interval,
            )
            await self._stack.enter_async_context(self.server)
            assert self.server.url is not None
            self.servers = (self.server.url,)
        options = nats_options(self.config, self.servers, "eventsrc-coordinator")
        self._nc = await connect_nats(options, long_running=True)
        self._stack.push_async_callback(self._close_nats)
        self._store = JetStreamEventStore(self._nc, settings=stream_settings(self.config))
        await self._store.ensure_streams()
        self.runner = ProjectionRunner(
            self._store,
            snapshots=SnapshotStore(self._store.js, replicas=self.config.replicas),
            on_applied=self._on_applied,
            tune_gc=True,
        )
        # A long history takes a while to replay: a bar on a terminal says how far (from
        # the snapshot's position on, when one is restored).
        runner = self.runner
        bar = Progress("catching up", await self._store.last_seq())
        async with following(bar, lambda: runner.state.last_seq):
            await self._stack.enter_async_context(runner)
        self._stack.push_async_callback(self._final_snapshot)
        lease = KvLease(self._store.js, lease_s=self.config.lease_s, replicas=self.config.replicas)
        self.leadership = Leadership(
            lease,
            self._store,
            self.runner,
            coordinator_id=self.coordinator_id,
            settings={
                "stale_after_s": self.config.stale_after,
                "sweep_interval_s": self.config.sweep_interval,
            },
        )
        # Registered before the leadership, so it is awaited after the leadership closed
        # (which ends the term being served and then the terms).
        self._stack.push_async_callback(self._stop_serving)
        await self._stack.enter_async_context(self.leadership)
        self._serving = asyncio.create_task(self._serve_terms(), name="serve-terms")
        if self.leadership.leading:
            # A lone coordinator leads by the time start() returns.
            await self._term_served.wait()
        if self.config.local_node is not None:
            wanted = self.config.local_node
        else:
            wanted = self.embedded and self._local_node_factory is not None
        if wanted:
            await self._start_local_node()
        return ",".join(self.servers)

    async def _serve_terms(self) -> None:
        """Serve the command API for each term the leadership hands out."""
        assert self.leadership is not None
        async with contextlib.aclosing(self.leadership.terms()) as terms:
            async for term in terms:
                try:
                    await self._serve(term)
                except Exception as err:  # the loop must survive, or terms go unserved
                    log.exception("serving epoch %d failed", term.epoch)
                    if not term.over:
                        self.leadership.give_up(f"could not serve: {err}")

    async def _serve(self, term: Term) -> None:
        """Serve one term until it ends (the leadership watches lease and epoch)."""
        assert self._nc is not None and self.runner is not None and self.leadership is not None
        service = CoordinatorService(
            self._nc,
            self.store,
            self.runner,
            coordinator_id=self.coordinator_id,
            epoch=term.epoch,
            stale_after=self.config.stale_after,
            sweep_interval=self.config.sweep_interval,
            limits=Limits(
                max_queued=self.config.max_queued,
                max_payload_bytes=min(
                    self.config.max_payload_bytes, self._nc.max_payload - ENVELOPE_ROOM
                ),
            ),
            holds_lease=self.leadership.holds_lease,
            standbys=self.leadership.standbys,
        )
        try:
            try:
                await service.start()
            except Exception as err:
                if not term.over:
                    self.leadership.give_up(f"could not take the lead: {err}")
                return
            self.service = service
            self._term_served.set()
            await term.ended()
        finally:
            self.service = None
            self._term_served.set()
            await service.close()  # stops deciding before its first await

    async def _stop_serving(self) -> None:
        serving, self._serving = self._serving, None
        if serving is not None:
            await asyncio.wait({serving}, timeout=30)
            if not serving.done():
                serving.cancel()

    async def _close_nats(self) -> None:
        if self._nc is None:
            return
        try:
            await self._nc.close()
        except OSError as err:
            # nats-py flushes what it buffered while disconnected and fails if the
            # server is gone; nothing is left to do for a connection we are dropping.
            log.warning("NATS connection closed uncleanly: %s", err)

    async def _start_local_node(self) -> None:
        """A cluster of one: a node in this process, built by the factory given."""
        assert self._nc is not None and self._store is not None
        if self._local_node_factory is None:
            raise ConfigError(
                "local_node is on but this Coordinator was given no node factory; run "
                "`python -m eventsrc.coordinator`, or pass local_node=..."
            )
        node = self._local_node_factory(
            self._nc, self._store, node_id=self.config.local_node_id or None
        )
        await self._stack.enter_async_context(node)
        self.local_node = node

    def _on_applied(self, state: ClusterState) -> None:
        if self.service is not None:
            self.service.mark_dirty(state)

    async def _final_snapshot(self) -> None:
        # A clean stop leaves a fresh snapshot, so the next start replays little.
        if self.runner is not None:
            try:
                await self.runner.snapshot()
            except Exception as err:  # never block a clean stop; the next start replays more
                log.warning("final snapshot not written: %s", err)

    async def close(self) -> None:
        """Stop everything started, in reverse order; idempotent."""
        await self._stack.aclose()

    async def __aenter__(self) -> Coordinator:
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

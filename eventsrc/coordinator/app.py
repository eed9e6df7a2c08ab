"""The coordinator process: embedded server (when no URL is given), streams, projection,
leadership (the KV lease) and, while leading, the service; started and stopped in order."""

from __future__ import annotations

import logging
import os
import secrets
import socket
from contextlib import AsyncExitStack
from types import TracebackType

from nats.aio.client import Client

from eventsrc.commands.tasks import Limits
from eventsrc.config import CoordinatorConfig, NodeConfig, nats_options
from eventsrc.coordinator.leadership import Leadership, elect
from eventsrc.coordinator.service import CoordinatorService
from eventsrc.node.agent import NodeAgent
from eventsrc.node.assemble import build_node_agent
from eventsrc.node.setup import local_node_id
from eventsrc.progress import Progress, following
from eventsrc.projections.runner import ProjectionRunner
from eventsrc.projections.state import ClusterState
from eventsrc.store import JetStreamEventStore, StreamSettings, connect_nats
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
    )


class Coordinator:
    """An async context manager owning the server (if embedded), connection and store."""

    def __init__(self, config: CoordinatorConfig) -> None:
        self.config = config
        self.server: EmbeddedServer | None = None
        self.servers: tuple[str, ...] = ()
        self._stack = AsyncExitStack()
        self._nc: Client | None = None
        self._store: JetStreamEventStore | None = None
        self.runner: ProjectionRunner | None = None
        self.leadership: Leadership | None = None
        self.service: CoordinatorService | None = None
        self.local_node: NodeAgent | None = None
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
            self.server = EmbeddedServer(self.config.data_dir, port=self.config.embedded_port)
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
            lease, coordinator_id=self.coordinator_id, lead=self._lead, step_down=self._step_down
        )
        await self._stack.enter_async_context(self.leadership)
        if self.config.local_node if self.config.local_node is not None else self.embedded:
            await self._start_local_node()
        return ",".join(self.servers)

    async def _lead(self) -> int:
        """The lease is ours: elect the next epoch and serve; returns the epoch."""
        assert self._nc is not None and self.runner is not None
        settings = {
            "stale_after_s": self.config.stale_after,
            "sweep_interval_s": self.config.sweep_interval,
        }
        epoch = await elect(
            self.store, self.runner, coordinator_id=self.coordinator_id, settings=settings
        )
        service = CoordinatorService(
            self._nc,
            self.store,
            self.runner,
            coordinator_id=self.coordinator_id,
            epoch=epoch,
            stale_after=self.config.stale_after,
            sweep_interval=self.config.sweep_interval,
            limits=Limits(
                max_queued=self.config.max_queued,
                max_payload_bytes=min(
                    self.config.max_payload_bytes, self._nc.max_payload - ENVELOPE_ROOM
                ),
            ),
            on_deposed=self._deposed,
            holds_lease=self.leadership.holds_lease if self.leadership else None,
            standbys=self.leadership.standbys if self.leadership else None,
        )
        try:
            await service.start()
        except BaseException:
            await service.close()
            raise
        self.service = service
        return epoch

    def _deposed(self, reason: str) -> None:
        if self.leadership is not None:
            self.leadership.abdicate(reason)

    async def _step_down(self, reason: str) -> None:
        service, self.service = self.service, None
        if service is not None:
            await service.close()  # stops deciding before its first await

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
        """A cluster of one: a node in this process with built-in python and ./skills."""
        assert self._nc is not None and self._store is not None
        config = NodeConfig(
            node_id=self.config.local_node_id or local_node_id(), skills=("python",)
        )
        self.local_node = build_node_agent(self._nc, self._store, config, env=os.environ)
        await self._stack.enter_async_context(self.local_node)

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

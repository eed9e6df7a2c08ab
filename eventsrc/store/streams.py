"""The three streams and their limits, created or upgraded idempotently."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import nats.errors
from nats.js import JetStreamContext
from nats.js.api import (
    ConsumerConfig,
    DiscardPolicy,
    PeerInfo,
    RetentionPolicy,
    StorageType,
    StreamConfig,
    StreamInfo,
)
from nats.js.errors import APIError, NotFoundError, ServiceUnavailableError

from eventsrc.events.subjects import EVENTS_FILTER, HEARTBEATS_FILTER, OUTPUT_FILTER
from eventsrc.ports import EVENTS_STREAM, HEARTBEATS_STREAM, OUTPUT_STREAM

log = logging.getLogger(__name__)

SETTLE_TIMEOUT_S = 30.0
"""How long to wait for a new or rescaled replicated stream to have a leader and current
replicas (JetStream elects within seconds; a scale-up copies the data first)."""
_SETTLE_POLL_S = 0.1


@dataclass(frozen=True, slots=True)
class StreamSettings:
    """Limits of the streams; 0 or -1 mean unlimited as in JetStream.

    The events stream discards *new* messages when full, so a full store refuses new
    commands with a clear error instead of silently dropping history. Heartbeats are
    soft state: a bounded history per node, oldest dropped first. So are running
    tasks' progress and output lines: bounded in age and bytes, oldest dropped first.
    """

    replicas: int = 1
    events_max_age_s: float = 0
    events_max_bytes: int = -1
    duplicate_window_s: float = 120
    heartbeats_max_per_node: int = 1000
    heartbeats_max_age_s: float = 3600
    output_max_age_s: float = 3600
    output_max_bytes: int = 256 * 1024 * 1024


def events_config(settings: StreamSettings) -> StreamConfig:
    """The JetStream config of ``EVENTSRC_EVENTS``."""
    window = settings.duplicate_window_s
    if settings.events_max_age_s:
        window = min(window, settings.events_max_age_s)  # JetStream requires it
    return StreamConfig(
        name=EVENTS_STREAM,
        description="eventsrc: registrations, membership, task lifecycle, cluster events",
        subjects=[EVENTS_FILTER],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.NEW,
        max_age=settings.events_max_age_s,
        max_bytes=settings.events_max_bytes,
        duplicate_window=window,
        num_replicas=settings.replicas,
        allow_direct=True,
        allow_atomic=True,
    )


def heartbeats_config(settings: StreamSettings) -> StreamConfig:
    """The JetStream config of ``EVENTSRC_HEARTBEATS``."""
    return _soft_state_config(
        HEARTBEATS_STREAM,
        "eventsrc: node heartbeats (soft state, bounded history)",
        HEARTBEATS_FILTER,
        settings,
        max_age_s=settings.heartbeats_max_age_s,
        max_bytes=-1,
        max_msgs_per_subject=settings.heartbeats_max_per_node,
    )


def output_config(settings: StreamSettings) -> StreamConfig:
    """The JetStream config of ``EVENTSRC_OUTPUT``: progress and output lines of running
    tasks, kept ``output_max_age_s`` and at most ``output_max_bytes`` (oldest dropped)."""
    return _soft_state_config(
        OUTPUT_STREAM,
        "eventsrc: running tasks' progress and output (soft state, bounded)",
        OUTPUT_FILTER,
        settings,
        max_age_s=settings.output_max_age_s,
        max_bytes=settings.output_max_bytes,
    )


def _soft_state_config(
    name: str,
    description: str,
    subjects: str,
    settings: StreamSettings,
    *,
    max_age_s: float,
    max_bytes: int,
    max_msgs_per_subject: int = -1,
) -> StreamConfig:
    """A stream of soft state: bounded, the oldest dropped first (never refused)."""
    # JetStream requires the dedup window to fit inside max_age.
    window = min(10.0, max_age_s or 10.0)
    return StreamConfig(
        name=name,
        description=description,
        subjects=[subjects],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        max_age=max_age_s,
        max_bytes=max_bytes,
        max_msgs_per_subject=max_msgs_per_subject,
        duplicate_window=window,
        num_replicas=settings.replicas,
        allow_direct=True,
    )


def stream_configs(settings: StreamSettings) -> tuple[StreamConfig, ...]:
    """The config of every stream of ours."""
    return events_config(settings), heartbeats_config(settings), output_config(settings)


_COMPARED = (
    "subjects",
    "discard",
    "max_age",
    "max_bytes",
    "max_msgs_per_subject",
    "duplicate_window",
    "num_replicas",
    "allow_direct",
    "allow_atomic",
)


async def ensure_streams(
    js: JetStreamContext, settings: StreamSettings, *, settle_timeout: float = SETTLE_TIMEOUT_S
) -> bool:
    """Create the streams, or update them when their limits differ from ``settings``;
    True when the events stream takes atomic batches.

    The events stream is asked for atomic batches (``allow_atomic``, nats-server 2.12 or
    later). A server or stream that refuses them (an older server, a stream an operator
    made with ``persist_mode: async``) is left without, with one log line: decisions are
    then stored as chained appends. A persist mode set on an existing stream is kept
    (JetStream cannot change it).

    A replicated stream that was just created or rescaled (R1 -> R3 after a restore)
    refuses or times out writes until its replicas have a leader and caught up, so this
    waits for that, up to ``settle_timeout`` seconds (then it only logs a warning).
    """
    atomic = False
    for config in stream_configs(settings):
        name = config.name
        assert name is not None
        try:
            info = await js.stream_info(name)
        except NotFoundError:
            info, refused = await _write(js.add_stream, config)
            written = True
            log.info("created stream %s", config.name)
        else:
            config = dataclasses.replace(config, persist_mode=info.config.persist_mode)
            changed = [
                key for key in _COMPARED if getattr(info.config, key) != getattr(config, key)
            ]
            refused = None
            written = False
            if changed:
                updated, refused = await _write(
                    js.update_stream, config, kept=info, changed=changed
                )
                written, info = updated is not info, updated
                if written:
                    log.info("updated stream %s to the configured limits", config.name)
        if config.allow_atomic:
            atomic = bool(info.config.allow_atomic)
            if not atomic:
                log.warning(
                    "stream %s does not take atomic batches (%s): the events of a decision "
                    "are stored as chained appends, one round trip each; atomic batches need "
                    "nats-server 2.12 or later and a stream without persist_mode async",
                    config.name,
                    refused or "the server ignored allow_atomic",
                )
        if written and settings.replicas > 1:
            await _wait_settled(js, name, settings.replicas, settle_timeout)
    return atomic


async def _write(
    write: Callable[[StreamConfig], Awaitable[StreamInfo]],
    config: StreamConfig,
    *,
    kept: StreamInfo | None = None,
    changed: Sequence[str] = (),
) -> tuple[StreamInfo, str | None]:
    """``write(config)`` (create or update) and why atomic batches were refused, if
    they were: a config asking for them that the server refuses is written again
    without them, or not at all when they were all that ``changed`` from ``kept``."""
    try:
        return await write(config), None
    except APIError as err:
        if not config.allow_atomic or isinstance(err, ServiceUnavailableError):
            raise
        refused = str(err.description)
    if kept is not None and list(changed) == ["allow_atomic"]:
        return kept, refused
    return await write(dataclasses.replace(config, allow_atomic=None)), refused


async def _wait_settled(js: JetStreamContext, name: str, replicas: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            info = await js.stream_info(name)
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError, ServiceUnavailableError):
            info = None  # no leader to answer yet
        if info is not None and _settled(info, replicas):
            return
        if time.monotonic() > deadline:
            log.warning(
                "stream %s has no leader with %d current replicas after %g s; writes may "
                "time out until it has (check /jsz on the NATS servers)",
                name,
                replicas,
                timeout,
            )
            return
        await asyncio.sleep(_SETTLE_POLL_S)


def _settled(info: StreamInfo, replicas: int) -> bool:
    cluster = info.cluster
    if cluster is None or not cluster.leader:
        return False
    peers = cluster.replicas or []
    return len(peers) == replicas - 1 and all(peer.current for peer in peers)


async def ensure_consumer(
    js: JetStreamContext, stream: str, config: ConsumerConfig
) -> ConsumerConfig:
    """Create the durable consumer ``config`` names on ``stream`` unless it exists (an
    existing one is kept as it is, with what it has not delivered or had acked); the
    settings it has."""
    assert config.durable_name is not None
    try:
        info = await js.consumer_info(stream, config.durable_name)
    except NotFoundError:
        info = await js.add_consumer(stream, config)
    settings: ConsumerConfig = info.config
    return settings


async def stream_leaders(
    js: JetStreamContext, names: tuple[str, ...], *, timeout: float = 1.0
) -> dict[str, str]:
    """Per stream, the server that leads it and its replicas (``nats-2; replicas nats-1
    (current), nats-3 (current)``), or why that is unknown now (e.g. electing a leader).
    A stream on a single server names that server. Asks for all streams at once."""
    found = await asyncio.gather(*(_stream_leader(js, name, timeout) for name in names))
    return dict(zip(names, found, strict=True))


async def _stream_leader(js: JetStreamContext, name: str, timeout: float) -> str:
    try:
        info = await asyncio.wait_for(js.stream_info(name), timeout)
    except (TimeoutError, nats.errors.Error) as err:
        return f"no answer ({str(err) or type(err).__name__}): electing a leader?"
    cluster = info.cluster
    if cluster is None or not cluster.leader:
        return "no leader"
    peers = ", ".join(f"{peer.name} ({_peer_state(peer)})" for peer in cluster.replicas or [])
    return f"{cluster.leader}" + (f"; replicas {peers}" if peers else "")


def _peer_state(peer: PeerInfo) -> str:
    if peer.offline:
        return "offline"
    return "current" if peer.current else "catching up"

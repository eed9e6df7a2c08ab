"""The two streams and their limits, created or upgraded idempotently."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from eventsrc.ports import EVENTS_STREAM, HEARTBEATS_STREAM

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StreamSettings:
    """Limits of the streams; 0 or -1 mean unlimited as in JetStream.

    The events stream discards *new* messages when full, so a full store refuses new
    commands with a clear error instead of silently dropping history. Heartbeats are
    soft state: a bounded history per node, oldest dropped first.
    """

    replicas: int = 1
    events_max_age_s: float = 0
    events_max_bytes: int = -1
    duplicate_window_s: float = 120
    heartbeats_max_per_node: int = 1000
    heartbeats_max_age_s: float = 3600


def events_config(settings: StreamSettings) -> StreamConfig:
    """The JetStream config of ``EVENTSRC_EVENTS``."""
    window = settings.duplicate_window_s
    if settings.events_max_age_s:
        window = min(window, settings.events_max_age_s)  # JetStream requires it
    return StreamConfig(
        name=EVENTS_STREAM,
        description="eventsrc: registrations, membership, task lifecycle, cluster events",
        subjects=["evt.>"],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.NEW,
        max_age=settings.events_max_age_s,
        max_bytes=settings.events_max_bytes,
        duplicate_window=window,
        num_replicas=settings.replicas,
        allow_direct=True,
    )


def heartbeats_config(settings: StreamSettings) -> StreamConfig:
    """The JetStream config of ``EVENTSRC_HEARTBEATS``."""
    # JetStream requires the dedup window to fit inside max_age.
    window = min(10.0, settings.heartbeats_max_age_s or 10.0)
    return StreamConfig(
        name=HEARTBEATS_STREAM,
        description="eventsrc: node heartbeats (soft state, bounded history)",
        subjects=["hb.>"],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        max_age=settings.heartbeats_max_age_s,
        max_bytes=-1,
        max_msgs_per_subject=settings.heartbeats_max_per_node,
        duplicate_window=window,
        num_replicas=settings.replicas,
        allow_direct=True,
    )


_COMPARED = (
    "subjects",
    "discard",
    "max_age",
    "max_bytes",
    "max_msgs_per_subject",
    "duplicate_window",
    "num_replicas",
    "allow_direct",
)


async def ensure_streams(js: JetStreamContext, settings: StreamSettings) -> None:
    """Create both streams, or update them when their limits differ from ``settings``."""
    for config in (events_config(settings), heartbeats_config(settings)):
        assert config.name is not None
        try:
            info = await js.stream_info(config.name)
        except NotFoundError:
            await js.add_stream(config)
            log.info("created stream %s", config.name)
            continue
        current = info.config
        if any(getattr(current, key) != getattr(config, key) for key in _COMPARED):
            await js.update_stream(config)
            log.info("updated stream %s to the configured limits", config.name)

"""The NATS adapter layer: embedded server, connection, streams and the event store."""

from __future__ import annotations

from eventsrc.ports import (
    EVENTS_STREAM,
    HEARTBEATS_STREAM,
    OUTPUT_STREAM,
    EventStore,
    Record,
    StoredEvent,
)
from eventsrc.store.connection import Connection, NatsOptions, connect_nats, resolve_servers
from eventsrc.store.jetstream import JetStreamEventStore, stream_for
from eventsrc.store.streams import StreamSettings, ensure_streams

__all__ = [
    "EVENTS_STREAM",
    "HEARTBEATS_STREAM",
    "OUTPUT_STREAM",
    "Connection",
    "EventStore",
    "JetStreamEventStore",
    "NatsOptions",
    "Record",
    "StoredEvent",
    "StreamSettings",
    "connect_nats",
    "ensure_streams",
    "resolve_servers",
    "stream_for",
]

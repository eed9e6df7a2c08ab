"""What a node says about itself: the join and heartbeat events, with host metrics."""

from __future__ import annotations

import platform
import socket
from datetime import UTC, datetime
from typing import Any

import psutil

import eventsrc
from eventsrc.events import CURRENT_SCHEMA_VERSIONS, Heartbeat, NodeJoined, new_event_id

EVENT_SCHEMA = max(CURRENT_SCHEMA_VERSIONS.values())
"""The newest event schema this code writes (the coordinator refuses newer)."""

MB = 1024 * 1024


def envelope(producer: str) -> dict[str, Any]:
    """Envelope fields of a node event."""
    return {"event_id": new_event_id(), "time": datetime.now(UTC), "producer": producer}


def joined_event(
    producer: str, *, node_id: str, incarnation: str, capacity: int, labels: dict[str, str]
) -> NodeJoined:
    """NodeJoined with this host's facts (name, OS, cpus, memory)."""
    return NodeJoined(
        **envelope(producer),
        node_id=node_id,
        incarnation=incarnation,
        eventsrc_version=eventsrc.__version__,
        event_schema=EVENT_SCHEMA,
        capacity=capacity,
        labels=labels,
        hostname=socket.gethostname(),
        platform=platform.system().lower(),
        cpu_count=psutil.cpu_count() or 0,
        memory_total_mb=psutil.virtual_memory().total // MB,
    )


def heartbeat_event(
    producer: str,
    *,
    node_id: str,
    incarnation: str,
    running: int,
    capacity: int,
    skills: tuple[str, ...],
) -> Heartbeat:
    """A heartbeat with the host's load now (call ``prime_cpu_meter`` once first)."""
    memory = psutil.virtual_memory()
    return Heartbeat(
        **envelope(producer),
        node_id=node_id,
        incarnation=incarnation,
        cpu_percent=psutil.cpu_percent(interval=None),
        memory_percent=memory.percent,
        cpu_count=psutil.cpu_count() or 0,
        memory_total_mb=memory.total // MB,
        memory_free_mb=memory.available // MB,
        running_tasks=running,
        capacity=capacity,
        skills=skills,
    )


def prime_cpu_meter() -> None:
    """psutil's cpu_percent measures since the previous call; the first reading is 0."""
    psutil.cpu_percent(interval=None)

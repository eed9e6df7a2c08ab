"""What a node says about itself: the join and heartbeat events, with host metrics."""

from __future__ import annotations

import os
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
        pid=os.getpid(),
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


def process_is_gone(*, hostname: str, pid: int, started_before: datetime | None) -> bool:
    """True when the process ``pid`` on ``hostname`` is this host's and certainly dead:
    no such pid, a pid that is ours (a restarted container), or a pid reused by a
    process started after ``started_before``."""
    if hostname != socket.gethostname() or not pid:
        return False
    if pid == os.getpid():
        return True
    try:
        created = datetime.fromtimestamp(psutil.Process(pid).create_time(), UTC)
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False  # e.g. access denied: it exists, so assume it lives
    return started_before is not None and created > started_before


def prime_cpu_meter() -> None:
    """psutil's cpu_percent measures since the previous call; the first reading is 0."""
    psutil.cpu_percent(interval=None)

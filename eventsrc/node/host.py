"""What a node says about itself: the join and heartbeat events, with host metrics."""

from __future__ import annotations

import os
import platform
import socket
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import psutil

import eventsrc
from eventsrc.events import EVENT_SCHEMA, Heartbeat, NodeJoined, Origin

MB = 1024 * 1024
PID_REUSE_TOLERANCE_S = 1.0
"""psutil's start times are rounded to clock ticks; a reused pid started much later."""


def envelope(producer: str) -> dict[str, Any]:
    """Envelope fields of a node event, stamped now."""
    return Origin(producer=producer).stamp(datetime.now(UTC)).envelope()


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
        host_id=host_identity(),
        pid=os.getpid(),
        process_started=process_started(),
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


@cache
def host_identity() -> str:
    """This host as a process sees it: machine id, boot id and pid namespace (Linux).

    Two machines may share a host name (cloned images, ``raspberrypi``) and two
    containers a pid; a pid means the same process only under the same identity. ""
    where any part is unknown: then no process is ever judged from here.
    """
    parts = []
    for path in ("/etc/machine-id", "/proc/sys/kernel/random/boot_id"):
        try:
            parts.append(Path(path).read_text(encoding="ascii").strip())
        except (OSError, UnicodeDecodeError):
            return ""
    try:
        parts.append(str(os.stat("/proc/self/ns/pid").st_ino))
    except OSError:
        return ""
    return ":".join(parts) if all(parts) else ""


def process_started() -> float:
    """When this process started, by this host's clock (seconds since the epoch)."""
    return psutil.Process().create_time()


def process_is_gone(*, host_id: str, pid: int, started: float) -> bool:
    """True only when the process ``pid`` that started at ``started`` on ``host_id`` is
    certainly dead: ``host_id`` is ours and the pid is free, a zombie, ours, or held by
    a process that started at another time. False whenever that cannot be known."""
    if not host_id or host_id != host_identity() or not pid or not started:
        return False
    if pid == os.getpid():
        return True  # same pid namespace: that process is gone and we have its pid
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return True
        return abs(proc.create_time() - started) > PID_REUSE_TOLERANCE_S
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False  # e.g. access denied: it exists, so assume it lives


def prime_cpu_meter() -> None:
    """psutil's cpu_percent measures since the previous call; the first reading is 0."""
    psutil.cpu_percent(interval=None)

"""eventsrc: an event-sourced cluster layer for OpenClaw machines on NATS JetStream.

``async with eventsrc.connect(url) as cluster:`` gives ``cluster.registry`` (the week-5
SkillRegistry). Errors all derive from ``eventsrc.EventsrcError``.
"""

from __future__ import annotations

from eventsrc.client import Cluster, connect
from eventsrc.errors import EventsrcError
from eventsrc.events import SkillCategory, SkillMetadata, TaskPriority
from eventsrc.registry import SkillRegistry
from eventsrc.skills import BUILTIN_SKILLS, SkillDiscovery

__version__ = "0.1.0"

__all__ = [
    "BUILTIN_SKILLS",
    "Cluster",
    "EventsrcError",
    "SkillCategory",
    "SkillDiscovery",
    "SkillMetadata",
    "SkillRegistry",
    "TaskPriority",
    "__version__",
    "connect",
]

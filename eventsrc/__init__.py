"""eventsrc: an event-sourced cluster layer for OpenClaw machines on NATS JetStream.

``async with eventsrc.connect(url) as cluster:`` gives ``cluster.registry`` (the seed's
SkillRegistry). Errors all derive from ``eventsrc.EventsrcError``.
"""

from __future__ import annotations

from eventsrc.client import Cluster, connect
from eventsrc.errors import EventsrcError
from eventsrc.events import SkillCategory, SkillMetadata
from eventsrc.registry import SkillRegistry

__version__ = "0.1.0"

__all__ = [
    "Cluster",
    "EventsrcError",
    "SkillCategory",
    "SkillMetadata",
    "SkillRegistry",
    "__version__",
    "connect",
]

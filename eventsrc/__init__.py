"""eventsrc: an event-sourced cluster layer for OpenClaw machines on NATS JetStream."""

from __future__ import annotations

__version__ = "0.1.0"

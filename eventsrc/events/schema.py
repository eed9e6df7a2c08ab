"""JSON Schema of every event type, for consumers in other languages."""

from __future__ import annotations

from typing import Any

from eventsrc.events.catalog import EVENT_ADAPTER, EVENT_CLASSES


def event_schemas() -> dict[str, dict[str, Any]]:
    """Event type name -> JSON Schema of that event (envelope fields included)."""
    return {name: cls.model_json_schema() for name, cls in sorted(EVENT_CLASSES.items())}


def union_schema() -> dict[str, Any]:
    """One JSON Schema accepting any event, discriminated by ``type``."""
    return EVENT_ADAPTER.json_schema()

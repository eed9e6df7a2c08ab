"""The canonical form of a ClusterState: what is hashed, snapshotted and restored."""

from __future__ import annotations

from typing import Any, Final

from pydantic import TypeAdapter

from eventsrc.events import canonical_hash
from eventsrc.projections.state import ClusterState, Retention

_ADAPTER: Final = TypeAdapter(ClusterState)

# Soft state (heartbeats) is not replayable from the events stream; retention is a
# setting of the process, not a fact of the history.
_NOT_CANONICAL: Final = {
    "liveness",
    "heartbeat_seq",
    "heartbeat_problems",
    "retention",
    "open_tasks",
    "waiting",
    "available",
}


def to_canonical(state: ClusterState) -> dict[str, Any]:
    """A JSON-ready dict of everything the events stream determines."""
    data: dict[str, Any] = _ADAPTER.dump_python(state, mode="json", exclude=_NOT_CANONICAL)
    return data


def from_canonical(data: dict[str, Any], *, retention: Retention | None = None) -> ClusterState:
    """Rebuild a state from ``to_canonical`` output (raises pydantic's ValidationError)."""
    state = _ADAPTER.validate_python(data)
    if retention is not None:
        state.retention = retention
    state.rebuild_indexes()
    return state


def state_hash(state: ClusterState) -> str:
    """SHA-256 of the canonical form: equal states hash equal, in any process."""
    return canonical_hash(to_canonical(state))

"""Snapshot bytes <-> ClusterState, with the checks that make a bad snapshot harmless.

A snapshot carries the events-stream sequence it covers, the state schema version of
the code that wrote it and a canonical hash. Restoring refuses (returns a reason) on
any mismatch, and the caller falls back to a full replay.
"""

from __future__ import annotations

import zlib
from typing import Any, Final

import orjson
from pydantic import ValidationError

from eventsrc.errors import first_problem
from eventsrc.events import canonical_hash
from eventsrc.projections.canonical import from_canonical, to_canonical
from eventsrc.projections.state import STATE_SCHEMA_VERSION, ClusterState, Retention

SNAPSHOT_FORMAT: Final = 1


def snapshot_document(state: ClusterState) -> dict[str, Any]:
    """The snapshot of ``state`` as a dict (a copy: safe to encode outside the lock)."""
    canonical = to_canonical(state)
    return {
        "format": SNAPSHOT_FORMAT,
        "state_schema": STATE_SCHEMA_VERSION,
        "seq": state.last_seq,
        "hash": canonical_hash(canonical),
        "state": canonical,
    }


def encode_snapshot(document: dict[str, Any]) -> bytes:
    """Bytes to store for a snapshot document: zlib-compressed JSON.

    The JSON of a large state is mostly repeated keys; level 1 shrinks it ~18x in a few
    ms, and the object store moves far fewer chunks at start-up.
    """
    return zlib.compress(orjson.dumps(document), 1)


def read_document(raw: bytes) -> Any:
    """The JSON document in stored snapshot bytes (compressed or, from older versions,
    plain). Raises ValueError (zlib.error or orjson.JSONDecodeError) when it is neither."""
    if raw[:1] != b"{":
        raw = zlib.decompress(raw)
    return orjson.loads(raw)


def restore_snapshot(
    raw: bytes, *, retention: Retention | None = None
) -> tuple[ClusterState | None, str]:
    """``(state, "")`` for a sound snapshot, else ``(None, why it was refused)``."""
    try:
        document = read_document(raw)
    except (zlib.error, orjson.JSONDecodeError) as err:
        return None, f"snapshot is not JSON, compressed or plain ({err})"
    if not isinstance(document, dict) or document.get("format") != SNAPSHOT_FORMAT:
        return None, "snapshot has an unknown format"
    if document.get("state_schema") != STATE_SCHEMA_VERSION:
        return None, (
            f"snapshot state schema {document.get('state_schema')} differs from this "
            f"code's {STATE_SCHEMA_VERSION}"
        )
    canonical = document.get("state")
    if not isinstance(canonical, dict) or canonical_hash(canonical) != document.get("hash"):
        return None, "snapshot hash does not match its content"
    try:
        state = from_canonical(canonical, retention=retention)
    except ValidationError as err:
        problem = first_problem(err, root="state")
        return None, f"snapshot content does not fit the state model ({problem})"
    if state.last_seq != document.get("seq"):
        return None, "snapshot sequence does not match its content"
    return state, ""

"""Bytes <-> events: one codec, with upcasting of older schema versions.

Decoding takes the fast path (one ``validate_json``) for events of the current schema
version and falls back to orjson + upcasters + ``validate_python`` for older ones.
Anything that still does not validate becomes an ``UndecodableEventError`` carrying the
stream sequence, subject and raw bytes; callers skip and count it, never crash on it.

An event must also be one that orjson can write again (states are hashed, snapshotted
and served with it): pydantic's parser accepts integers beyond 64 bits, which would
break every later hash and snapshot, so such an event is undecodable too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any, Final

import orjson
from pydantic import ValidationError

from eventsrc.errors import UndecodableEventError, UnknownEventTypeError, first_problem
from eventsrc.events.catalog import CURRENT_SCHEMA_VERSIONS, EVENT_ADAPTER, Event

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
"""Turns the JSON dict of (type, version) into the dict of version + 1."""


def _drain_v1(data: dict[str, Any]) -> dict[str, Any]:
    # A drain written before drains held across re-joins still ends at the next join:
    # the history means what it meant when it was written.
    return {**data, "until_undrained": False}


# (event type, version it upcasts from) -> upcaster; add an entry here when a schema
# changes, never migrate stored events.
UPCASTERS: Final[dict[tuple[str, int], Upcaster]] = {
    ("NodeDrainRequested", 1): _drain_v1,
}

# Only a number of 19 or more digits can exceed 64 bits; mapping every digit to "0"
# finds such a run in ~0.3 µs per event, so the exact check runs only on suspects.
_DIGITS: Final = bytes.maketrans(b"0123456789", b"0" * 10)
_LONG_NUMBER: Final = b"0" * 19

# The adapter's validator itself: ``TypeAdapter.validate_json`` adds ~0.3 µs of Python
# per call (a tenth of a replay's decoding) to check options decode never passes.
_validate_json: Final = EVENT_ADAPTER.validator.validate_json


def encode(event: Event) -> bytes:
    """Serialise an event to the JSON bytes stored in JetStream."""
    # The model's own Rust serialiser: faster than model_dump() + orjson (measured 2.0 vs
    # 3.2 µs for a TaskSubmitted). orjson stays for the slow decode path and hashing.
    # Fields that are None are left out (docs/events.md, "Absent fields"): their default
    # is None, forever, so decoding gives the same event, and a replay sends, parses and
    # validates about a third fewer bytes. Values inside free-form fields (a payload, a
    # result) are kept as they are, None included.
    return event.__pydantic_serializer__.to_json(event, exclude_none=True)


def decode(
    raw: bytes,
    *,
    seq: int = 0,
    subject: str = "",
    upcasters: Mapping[tuple[str, int], Upcaster] = UPCASTERS,
) -> Event:
    """Decode stored bytes into an event, upcasting older schema versions.

    When ``subject`` is given the event must belong under it: a payload that claims
    another node or task than its subject is refused (that is what keeps a node from
    forging events for others). Raises UndecodableEventError (UnknownEventTypeError
    for a type this code does not know).
    """
    try:
        event: Event = _validate_json(raw)
    except ValidationError:
        event = _decode_slow(raw, seq=seq, subject=subject, upcasters=upcasters)
    else:
        if event.schema_version < CURRENT_SCHEMA_VERSIONS[event.type]:
            event = _decode_slow(raw, seq=seq, subject=subject, upcasters=upcasters)
        elif may_hold_long_number(raw):
            _check_writable(event, seq=seq, subject=subject, raw=raw)
    if subject and event.subject != subject:
        raise UndecodableEventError(
            f"a {event.type} for {event.subject} was stored under {subject}",
            seq=seq,
            subject=subject,
            raw=raw,
        )
    return event


def may_hold_long_number(raw: bytes) -> bool:
    """Whether JSON ``raw`` may hold an integer beyond 64 bits once validated: a run of 19
    or more digits, or a ``\\u`` escape (digits spelt as escapes in a string that a model
    reads as an integer). False means none can; True asks for the exact check."""
    return b"\\u" in raw or _LONG_NUMBER in raw.translate(_DIGITS)


def _decode_slow(
    raw: bytes, *, seq: int, subject: str, upcasters: Mapping[tuple[str, int], Upcaster]
) -> Event:
    def fail(reason: str) -> UndecodableEventError:
        return UndecodableEventError(reason, seq=seq, subject=subject, raw=raw)

    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        raise fail(f"not JSON ({err})") from err
    if not isinstance(data, dict):
        raise fail(f"expected a JSON object, got {type(data).__name__}")
    event_type = data.get("type")
    if not isinstance(event_type, str) or event_type not in CURRENT_SCHEMA_VERSIONS:
        raise UnknownEventTypeError(
            f"unknown event type {event_type!r} (written by a newer eventsrc?)",
            seq=seq,
            subject=subject,
            raw=raw,
        )
    version = data.get("schema_version", 1)
    if not isinstance(version, int) or version < 0:
        raise fail(f"bad schema_version {version!r}")
    while version < CURRENT_SCHEMA_VERSIONS[event_type]:
        upcast = upcasters.get((event_type, version))
        if upcast is None:
            raise fail(f"no upcaster for {event_type} v{version}")
        data = upcast(dict(data))
        version += 1
        data["schema_version"] = version
    try:
        # Back through pydantic's JSON parser: the same limits (nesting depth) as the
        # fast path, so both paths admit the same events.
        rewritten = orjson.dumps(data)
    except TypeError as err:
        raise fail(f"cannot be written as JSON again ({err})") from err
    try:
        event: Event = _validate_json(rewritten)
    except ValidationError as err:
        raise fail(str(first_problem(err, root="event"))) from err
    return event


def _check_writable(event: Event, *, seq: int, subject: str, raw: bytes) -> None:
    try:
        canonical_json(event.model_dump())
    except TypeError as err:  # orjson: an integer beyond 64 bits
        raise UndecodableEventError(
            f"{event.type} holds a value JSON tools cannot store ({err})",
            seq=seq,
            subject=subject,
            raw=raw,
        ) from err


def canonical_json(value: Any) -> bytes:
    """Deterministic JSON (sorted keys) for hashing states and snapshots."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)


def canonical_hash(value: Any) -> str:
    """SHA-256 hex digest of ``canonical_json(value)``."""
    return hashlib.sha256(canonical_json(value)).hexdigest()

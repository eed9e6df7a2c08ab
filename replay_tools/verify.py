"""``verify``: prove that the stored history is sound and that a restart rebuilds it.

Checks, in one pass over ``EVENTSRC_EVENTS``:

- sequence gaps: a stream that no longer starts at 1 (limits, purge) is noted; events
  deleted from the middle of the history fail;
- every message decodes (an undecodable one fails) and no event breaks the state
  machine (illegal ones fail; late and fenced ones are counted — they are races the
  design keeps for audit);
- the stored snapshot: the hash of its canonical state equals the hash of a full replay
  up to the snapshot's sequence, and snapshot + the events after it equals the full
  replay at the end (docs/design.md: restart = snapshot + tail).

Heartbeats are checked for undecodable (e.g. forged) messages; their bounded history
makes gaps normal.
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import orjson

from eventsrc.errors import UndecodableEventError
from eventsrc.ports import EVENTS_STREAM, HEARTBEATS_STREAM, Record
from eventsrc.projections.apply import apply_record
from eventsrc.projections.canonical import state_hash
from eventsrc.projections.snapshot import read_document, restore_snapshot
from eventsrc.projections.state import STATE_SCHEMA_VERSION, ClusterState
from eventsrc.store import JetStreamEventStore
from eventsrc.store.raw import stream_state
from replay_tools.common import load_snapshot_bytes, require_stream
from replay_tools.render import Progress

Level = Literal["ok", "info", "FAIL"]
MAX_DETAILS = 20
_KINDS = ("undecodable", "illegal", "late", "fenced")


@dataclass(slots=True)
class Check:
    """One line of the report, with the evidence behind a failure."""

    name: str
    level: Level
    text: str
    details: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Snapshot:
    seq: int
    hash: str
    state: ClusterState


@dataclass(slots=True)
class _Pass:
    """What one pass over the events stream found."""

    full: ClusterState = field(default_factory=ClusterState)
    tail: ClusterState | None = None
    hash_at_snapshot: str | None = None
    gaps: list[tuple[int, int]] = field(default_factory=list)
    found: dict[str, list[str]] = field(default_factory=lambda: {k: [] for k in _KINDS})
    messages: int = 0


async def verify(store: JetStreamEventStore) -> list[Check]:
    """All checks; the caller fails when any is ``FAIL``."""
    # The snapshot first: one a live coordinator writes meanwhile is then never ahead of
    # the stream's end as read below.
    raw = await load_snapshot_bytes(store)
    info = await require_stream(store, EVENTS_STREAM)
    checks: list[Check] = []
    snapshot = _parse_snapshot(raw, info.last_seq, checks)
    found = await _replay(store, snapshot, info.first_seq, info.last_seq)
    checks[:0] = _stream_checks(found, info.first_seq, info.last_seq)
    if snapshot is not None:
        checks += _snapshot_checks(found, snapshot, head_removed=info.first_seq > 1)
    checks.append(await _heartbeat_check(store))
    return checks


def _parse_snapshot(raw: bytes | None, last_seq: int, checks: list[Check]) -> _Snapshot | None:
    if raw is None:
        checks.append(Check("snapshot", "info", "no snapshot stored; checked the stream only"))
        return None
    try:
        document = read_document(raw)
    except (zlib.error, orjson.JSONDecodeError):
        document = None
    schema = document.get("state_schema") if isinstance(document, dict) else None
    if isinstance(document, dict) and schema != STATE_SCHEMA_VERSION:
        checks.append(
            Check(
                "snapshot",
                "info",
                f"the snapshot has state schema {schema}, this code {STATE_SCHEMA_VERSION}: "
                f"a coordinator of this version ignores it and replays; not compared",
            )
        )
        return None
    restored, why = restore_snapshot(raw)
    if restored is None or not isinstance(document, dict):
        checks.append(Check("snapshot", "FAIL", f"the stored snapshot is unsound: {why}"))
        return None
    if restored.last_seq > last_seq:
        checks.append(
            Check(
                "snapshot",
                "FAIL",
                f"the snapshot covers seq {restored.last_seq} but {EVENTS_STREAM} ends at "
                f"{last_seq}: it belongs to another history",
            )
        )
        return None
    return _Snapshot(restored.last_seq, str(document["hash"]), restored)


async def _replay(
    store: JetStreamEventStore, snapshot: _Snapshot | None, first_seq: int, last_seq: int
) -> _Pass:
    found = _Pass(tail=snapshot.state if snapshot is not None else None)
    snap_seq = snapshot.seq if snapshot is not None else None
    previous = first_seq - 1
    progress = Progress("verifying events", max(last_seq - first_seq + 1, 0))
    async for record in store.read(from_seq=first_seq):
        if record.seq > previous + 1:
            found.gaps.append((previous + 1, record.seq - 1))
        previous = record.seq
        if snap_seq is not None and found.hash_at_snapshot is None and record.seq > snap_seq:
            found.hash_at_snapshot = state_hash(found.full)
        _apply_counting(found, record)
        if snap_seq is not None and record.seq == snap_seq:
            found.hash_at_snapshot = state_hash(found.full)
        if found.tail is not None and snap_seq is not None and record.seq > snap_seq:
            apply_record(found.tail, record)
        found.messages += 1
        progress.update(record.seq - first_seq + 1)
    progress.done()
    if previous < last_seq:
        found.gaps.append((previous + 1, last_seq))
    if snap_seq is not None and found.hash_at_snapshot is None:
        found.hash_at_snapshot = state_hash(found.full)
    return found


def _apply_counting(found: _Pass, record: Record) -> None:
    problems = found.full.problems
    before = [getattr(problems, kind) for kind in _KINDS]
    apply_record(found.full, record)
    for kind, count in zip(_KINDS, before, strict=True):
        if getattr(problems, kind) != count and len(found.found[kind]) < MAX_DETAILS:
            if isinstance(record, UndecodableEventError):
                text = f"seq {record.seq} {record.subject}: {record.reason}"
            else:
                text = problems.recent[-1]
            found.found[kind].append(text)


def _stream_checks(found: _Pass, first_seq: int, last_seq: int) -> list[Check]:
    checks: list[Check] = []
    head = [gap for gap in found.gaps if gap[0] == 1]
    middle = [gap for gap in found.gaps if gap[0] != 1]
    span = f"{found.messages} messages, sequences {first_seq}..{last_seq}"
    if middle:
        deleted = sum(end - start + 1 for start, end in middle)
        checks.append(
            Check(
                "events",
                "FAIL",
                f"{span}: {deleted} events were deleted from the middle of the history",
                [f"seq {start}..{end} missing" for start, end in middle[:MAX_DETAILS]],
            )
        )
    else:
        checks.append(Check("events", "ok", f"{span}, no gaps in the history"))
    if head:
        checks.append(
            Check(
                "events",
                "info",
                f"sequences 1..{head[0][1]} are no longer stored (stream limits or a purge); "
                f"the replay starts at {first_seq}",
            )
        )
    problems = found.full.problems
    undecodable = found.found["undecodable"]
    checks.append(
        Check(
            "decoding",
            "FAIL",
            f"{problems.undecodable} of {found.messages} messages are not events",
            undecodable,
        )
        if problems.undecodable
        else Check("decoding", "ok", "every message decodes to an event")
    )
    kept = f"late {problems.late}, fenced {problems.fenced} (kept for audit, change nothing)"
    checks.append(
        Check(
            "transitions",
            "FAIL",
            f"{problems.illegal} of {found.messages} events break the state machine; {kept}",
            found.found["illegal"],
        )
        if problems.illegal
        else Check(
            "transitions",
            "ok",
            f"no illegal events; {kept}",
            found.found["late"][:5] + found.found["fenced"][:5],
        )
    )
    return checks


def _snapshot_checks(found: _Pass, snapshot: _Snapshot, *, head_removed: bool) -> list[Check]:
    checks: list[Check] = []
    replayed = found.hash_at_snapshot or ""
    if replayed == snapshot.hash:
        checks.append(
            Check(
                "snapshot",
                "ok",
                f"at seq {snapshot.seq}, hash {snapshot.hash[:16]} equals a full replay up "
                f"to seq {snapshot.seq}",
            )
        )
    else:
        level: Level = "info" if head_removed else "FAIL"
        why = (
            "events before the stream's first sequence are gone, so a replay cannot reproduce it"
            if head_removed
            else "the snapshot and the history disagree"
        )
        checks.append(
            Check(
                "snapshot",
                level,
                f"at seq {snapshot.seq}, hash {snapshot.hash[:16]} differs from a full replay "
                f"up to seq {snapshot.seq} ({replayed[:16]}): {why}",
            )
        )
    if found.tail is not None:
        full, tail = state_hash(found.full), state_hash(found.tail)
        after = found.full.last_seq - snapshot.seq
        span = (
            f"snapshot + events {snapshot.seq + 1}..{found.full.last_seq}"
            if after > 0
            else "the snapshot (no events after it)"
        )
        if full == tail:
            checks.append(Check("restart", "ok", f"{span} equals a full replay (hash {full[:16]})"))
        elif not head_removed:
            checks.append(
                Check(
                    "restart",
                    "FAIL",
                    f"{span} ({tail[:16]}) differs from a full replay "
                    f"({full[:16]}): a restart would not rebuild the same state",
                )
            )
    return checks


async def _heartbeat_check(store: JetStreamEventStore) -> Check:
    info = await stream_state(store, HEARTBEATS_STREAM)
    if info is None:
        return Check("heartbeats", "info", f"no {HEARTBEATS_STREAM} stream")
    bad: list[str] = []
    count = 0
    async for record in store.read(stream=HEARTBEATS_STREAM):
        count += 1
        if isinstance(record, UndecodableEventError):
            bad.append(f"seq {record.seq} {record.subject}: {record.reason}")
    if bad:
        return Check(
            "heartbeats",
            "FAIL",
            f"{len(bad)} of {count} heartbeats are not valid",
            bad[:MAX_DETAILS],
        )
    return Check(
        "heartbeats",
        "ok",
        f"{count} retained (sequences {info.first_seq}..{info.last_seq}), all valid",
    )


def failed(checks: list[Check]) -> bool:
    """True when any check failed."""
    return any(check.level == "FAIL" for check in checks)


def to_json(checks: list[Check]) -> dict[str, Any]:
    """The ``--json`` document."""
    return {"ok": not failed(checks), "checks": [asdict(check) for check in checks]}


def to_text(checks: list[Check]) -> str:
    """One line per check, failures with their evidence indented below."""
    lines: list[str] = []
    for check in checks:
        lines.append(f"{check.level:<5} {check.name}: {check.text}")
        lines += [f"        {detail}" for detail in check.details]
    bad = sum(check.level == "FAIL" for check in checks)
    lines.append("verify: ok" if not bad else f"verify: {bad} check(s) failed")
    return "\n".join(lines)

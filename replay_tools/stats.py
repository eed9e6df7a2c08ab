"""``stats``: how much is stored, of which kinds, over which time span."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from eventsrc.errors import UndecodableEventError
from eventsrc.ports import EVENTS_STREAM, HEARTBEATS_STREAM
from eventsrc.runtime import format_table as table
from eventsrc.store import JetStreamEventStore
from eventsrc.store.raw import stream_state
from replay_tools.common import iso, require_stream, short_time
from replay_tools.render import Progress

UNDECODABLE = "(undecodable)"


@dataclass(slots=True)
class StreamStats:
    """One stream's size and span."""

    name: str
    exists: bool = True
    messages: int = 0
    bytes: int = 0
    first_seq: int = 0
    last_seq: int = 0
    deleted: int = 0
    first_time: datetime | None = None
    last_time: datetime | None = None


@dataclass(slots=True)
class Stats:
    """Counts by event type and by subject prefix, and both streams' sizes."""

    streams: list[StreamStats] = field(default_factory=list)
    by_type: Counter[str] = field(default_factory=Counter)
    by_prefix: Counter[str] = field(default_factory=Counter)


def prefix_of(subject: str) -> str:
    """``evt.task.t1.lifecycle`` -> ``evt.task``; ``hb.n1`` -> ``hb``."""
    parts = subject.split(".")
    return parts[0] if parts[0] == "hb" else ".".join(parts[:2])


async def stats(store: JetStreamEventStore) -> Stats:
    """Read both streams once and count."""
    await require_stream(store, EVENTS_STREAM)
    result = Stats()
    for name in (EVENTS_STREAM, HEARTBEATS_STREAM):
        info = await stream_state(store, name)
        entry = StreamStats(name, exists=info is not None)
        result.streams.append(entry)
        if info is None:
            continue
        entry.messages, entry.bytes = info.messages, info.bytes
        entry.first_seq, entry.last_seq = info.first_seq, info.last_seq
        entry.deleted = info.num_deleted or 0
        if info.messages == 0:
            continue
        progress = Progress(f"counting {name}", info.messages)
        done = 0
        async for record in store.read(stream=name, from_seq=info.first_seq):
            result.by_prefix[prefix_of(record.subject)] += 1
            if isinstance(record, UndecodableEventError):
                result.by_type[UNDECODABLE] += 1
            else:
                result.by_type[record.event.type] += 1
                entry.first_time = entry.first_time or record.time
                entry.last_time = record.time
            done += 1
            progress.update(done)
        progress.done()
    return result


def to_json(result: Stats) -> dict[str, Any]:
    """The ``--json`` document."""
    return {
        "streams": {
            entry.name: {
                "exists": entry.exists,
                "messages": entry.messages,
                "bytes": entry.bytes,
                "first_seq": entry.first_seq,
                "last_seq": entry.last_seq,
                "deleted": entry.deleted,
                "first_time": iso(entry.first_time),
                "last_time": iso(entry.last_time),
            }
            for entry in result.streams
        },
        "by_type": dict(sorted(result.by_type.items())),
        "by_prefix": dict(sorted(result.by_prefix.items())),
    }


def to_text(result: Stats) -> str:
    """Three small tables."""
    streams = table(
        [
            [
                e.name,
                e.messages,
                e.bytes,
                f"{e.first_seq}..{e.last_seq}",
                e.deleted,
                short_time(e.first_time),
                short_time(e.last_time),
            ]
            if e.exists
            else [e.name, "absent", "-", "-", "-", "-", "-"]
            for e in result.streams
        ],
        ["STREAM", "MESSAGES", "BYTES", "SEQUENCES", "DELETED", "FIRST", "LAST"],
    )
    prefixes = table(
        [[prefix, count] for prefix, count in sorted(result.by_prefix.items())],
        ["SUBJECTS", "MESSAGES"],
    )
    types = table(
        [[name, count] for name, count in result.by_type.most_common()], ["TYPE", "MESSAGES"]
    )
    return f"{streams}\n\n{prefixes}\n\n{types}"

"""``what-if`` around the pure simulation: load both streams, then report."""

from __future__ import annotations

from typing import Any

from eventsrc.ports import EVENTS_STREAM, HEARTBEATS_STREAM, Record
from eventsrc.runtime import format_table as table
from eventsrc.store import JetStreamEventStore
from eventsrc.store.raw import stream_state
from replay_tools.common import iso, require_stream, short_time
from replay_tools.whatif import Change, Options, Report, what_if

_SAY = {
    "expired_earlier": "would expire earlier",
    "expired_later": "would expire later",
    "not_expired": "would not expire",
    "newly_expired": "would expire (did not)",
}


async def load_streams(store: JetStreamEventStore) -> tuple[list[Record], list[Record], bool]:
    """The records of both streams, and whether the heartbeats' history is cut short."""
    info = await require_stream(store, EVENTS_STREAM)
    events: list[Record] = [record async for record in store.read(from_seq=info.first_seq)]
    heartbeats: list[Record] = []
    truncated = False
    beats = await stream_state(store, HEARTBEATS_STREAM)
    if beats is not None and beats.messages:
        heartbeats = [
            record
            async for record in store.read(stream=HEARTBEATS_STREAM, from_seq=beats.first_seq)
        ]
        span = beats.last_seq - beats.first_seq + 1
        truncated = beats.first_seq > 1 or beats.messages < span
    return events, heartbeats, truncated


async def load_and_compare(store: JetStreamEventStore, options: Options) -> Report:
    """Read the recorded history of both streams and run ``what_if`` on it."""
    events, heartbeats, truncated = await load_streams(store)
    if truncated != options.heartbeats_truncated:
        options = Options(
            stale_after=options.stale_after,
            sweep_interval=options.sweep_interval,
            heartbeat_interval=options.heartbeat_interval,
            heartbeats_truncated=truncated,
        )
    return what_if(events, heartbeats, options)


def _change_json(change: Change) -> dict[str, Any]:
    return {
        "node_id": change.node_id,
        "incarnation": change.incarnation,
        "change": change.change,
        "recorded_at": iso(change.recorded_at),
        "would_be_at": iso(change.would_be_at),
        "last_heartbeat_at": iso(change.last_heartbeat_at),
        "silent_s": change.silent_s,
        "tasks": list(change.tasks),
    }


def to_json(report: Report) -> dict[str, Any]:
    """The ``--json`` document."""
    options = report.options
    return {
        "stale_after": options.stale_after,
        "sweep_interval": options.sweep_interval,
        "heartbeat_interval": options.heartbeat_interval,
        "recorded_stale_after": report.recorded_stale_after,
        "window": [iso(t) for t in report.window] if report.window else None,
        "sweeps": report.sweeps,
        "changes": [_change_json(change) for change in report.changes],
        "unchanged": [{"node_id": n, "incarnation": i} for n, i in report.unchanged],
        "notes": report.notes,
    }


def to_text(report: Report) -> str:
    """A sentence per differing expiry, with the tasks it would have requeued or kept."""
    options = report.options
    recorded = (
        f"{report.recorded_stale_after:g} s"
        if report.recorded_stale_after is not None
        else "unknown (no expiry recorded)"
    )
    lines = [
        f"what if stale_after were {options.stale_after:g} s (recorded: {recorded}), "
        f"sweeping every {options.sweep_interval:g} s"
        + (
            f", heartbeats every {options.heartbeat_interval:g} s"
            if options.heartbeat_interval
            else ""
        ),
    ]
    if report.window:
        lines.append(
            f"history {short_time(report.window[0])} .. {short_time(report.window[1])}, "
            f"{report.sweeps} sweeps re-decided"
        )
    if not report.changes:
        lines.append("no node expiry would have differed")
    else:
        rows = [
            [
                c.node_id,
                c.incarnation,
                _SAY[c.change],
                short_time(c.recorded_at),
                short_time(c.would_be_at),
                f"{c.silent_s:.2f}" if c.silent_s is not None else "-",
                ", ".join(c.tasks) or "-",
            ]
            for c in report.changes
        ]
        header = [
            "NODE",
            "INCARNATION",
            "CHANGE",
            "RECORDED",
            "WOULD BE",
            "SILENT S",
            "TASKS ON IT",
        ]
        lines += ["", table(rows, header)]
    if report.unchanged:
        lines.append(f"unchanged expiries: {', '.join(n for n, _ in report.unchanged)}")
    lines += [f"note: {note}" for note in report.notes]
    return "\n".join(lines)

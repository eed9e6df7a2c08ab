"""``what-if``: re-decide node expiry over the recorded history with another threshold.

Pure: ``what_if(events, heartbeats, options)`` takes the records of both streams and
never reads a clock. Two states are folded side by side in server-time order:

- *recorded*: every event as stored — when each node really expired and which tasks it
  held then;
- *alternative*: the same events without the recorded expiry decisions, plus the
  recorded heartbeats, swept with ``decide_expire_stale`` (the coordinator's own rule)
  and the other threshold at every sweep instant — the recorded ``swept_at`` times and
  a regular grid of ``sweep_interval`` seconds anchored on them.

Expiries are compared per node incarnation: expired earlier, later, not at all, or
newly. Differences within one sweep interval are the resolution of the simulation and
are not reported. Where the bounded heartbeat history no longer covers a period, the
recorded decision stands and nothing is re-decided.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
import statistics
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from eventsrc.commands.base import Origin
from eventsrc.commands.registry import ExpireStale, decide_expire_stale
from eventsrc.errors import InvalidRequestError, UndecodableEventError
from eventsrc.events import Heartbeat, NodeExpired, SkillInstanceExpired
from eventsrc.ports import Record, StoredEvent
from eventsrc.projections.apply import apply, apply_heartbeat, apply_record
from eventsrc.projections.state import MEMBER_STATES, ClusterState, Retention

ChangeKind = Literal["expired_earlier", "expired_later", "not_expired", "newly_expired"]
MAX_SWEEPS = 5_000_000
_NEVER = datetime.max.replace(tzinfo=UTC)
_KEEP_ALL = Retention(max_finished=10**9, max_finished_age_s=100 * 365 * 86400.0)


@dataclass(frozen=True, slots=True)
class Options:
    """The alternative to simulate."""

    stale_after: float
    sweep_interval: float = 5.0
    heartbeat_interval: float | None = None
    heartbeats_truncated: bool = False


@dataclass(frozen=True, slots=True)
class Expiry:
    """One node incarnation's expiry, in one of the two worlds."""

    at: datetime
    tasks: tuple[str, ...]
    last_heartbeat_at: datetime | None


@dataclass(frozen=True, slots=True)
class Change:
    """A node expiry that would have differed, and the tasks it concerned."""

    node_id: str
    incarnation: str
    change: ChangeKind
    recorded_at: datetime | None
    would_be_at: datetime | None
    last_heartbeat_at: datetime | None
    silent_s: float | None
    tasks: tuple[str, ...]


@dataclass(slots=True)
class Report:
    """The outcome of ``what_if``."""

    options: Options
    recorded_stale_after: float | None = None
    window: tuple[datetime, datetime] | None = None
    sweeps: int = 0
    changes: list[Change] = field(default_factory=list)
    unchanged: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(order=True, frozen=True, slots=True)
class _Item:
    time: datetime
    rank: int  # events, then heartbeats, then a sweep at the same instant
    order: int
    record: Record | None = field(compare=False, default=None)


def what_if(events: Sequence[Record], heartbeats: Sequence[Record], options: Options) -> Report:
    """Compare the recorded node expiries with those under ``options.stale_after``.

    ``events`` are the records of ``EVENTSRC_EVENTS`` in stream order, ``heartbeats``
    those of ``EVENTSRC_HEARTBEATS``. Raises InvalidRequestError when the sweep grid
    would be unreasonably large.
    """
    report = Report(options)
    recorded_beats = _heartbeats(heartbeats)
    beats = _thin(recorded_beats, options.heartbeat_interval)
    stored = [record for record in events if isinstance(record, StoredEvent)]
    if not stored:
        report.notes.append("the events stream holds no events: nothing to compare")
        return report
    start = stored[0].time
    end = max(stored[-1].time, beats[-1].time if beats else start)
    report.window = (start, end)
    expiries = [r.event for r in stored if isinstance(r.event, NodeExpired | SkillInstanceExpired)]
    if any(isinstance(event, NodeExpired) for event in expiries):
        report.recorded_stale_after = [
            e.stale_after_s for e in expiries if isinstance(e, NodeExpired)
        ][-1]
    sweeps = _sweep_instants(start, end, options.sweep_interval, [e.swept_at for e in expiries])
    report.sweeps = len(sweeps)
    known = _KnownFrom(recorded_beats if options.heartbeats_truncated else None)
    world = _Worlds(options, known)
    for item in heapq.merge(_event_items(events, start), _beat_items(beats), _sweep_items(sweeps)):
        if item.rank == 0:
            world.event(item.record, item.time)
        elif item.rank == 1:
            assert isinstance(item.record, StoredEvent)
            assert isinstance(item.record.event, Heartbeat)
            apply_heartbeat(world.alt, item.record.event, seq=item.record.seq, time=item.time)
        else:
            world.sweep(item.time)
    _compare(report, world, beats)
    _notes(report, recorded_beats, known, world.kept)
    return report


class _KnownFrom:
    """From when on each node's heartbeats are all still retained."""

    def __init__(self, beats: Sequence[StoredEvent] | None) -> None:
        self._first: dict[str, datetime] = {}
        self.truncated = beats is not None
        self.overall = beats[0].time if beats else (_NEVER if beats is not None else None)
        for beat in beats or ():
            assert isinstance(beat.event, Heartbeat)
            self._first.setdefault(beat.event.node_id, beat.time)

    def judged(self, node_id: str, at: datetime) -> bool:
        if not self.truncated:
            return True
        since = self._first.get(node_id, self.overall)
        return since is not None and at >= since


class _Worlds:
    """The recorded and the alternative state, folded side by side."""

    def __init__(self, options: Options, known: _KnownFrom) -> None:
        self.options = options
        self.known = known
        self.actual = ClusterState(retention=_KEEP_ALL)
        self.alt = ClusterState(retention=_KEEP_ALL)
        self.recorded: dict[tuple[str, str], Expiry] = {}
        self.simulated: dict[tuple[str, str], Expiry] = {}
        self.kept = 0  # recorded expiries outside the heartbeat window, not re-decided
        self._seq = itertools.count(1)
        self._ids = (f"what-if-{n}" for n in itertools.count(1))

    def _member(self, node_id: str, incarnation: str) -> bool:
        node = self.actual.nodes.get(node_id)
        return node is not None and node.incarnation == incarnation and node.state in MEMBER_STATES

    def _running(self, node_id: str, incarnation: str) -> tuple[str, ...]:
        if not self._member(node_id, incarnation):
            return ()
        return tuple(sorted(self.actual.nodes[node_id].running))

    def event(self, record: Record | None, time: datetime) -> None:
        assert record is not None
        event = record.event if isinstance(record, StoredEvent) else None
        if isinstance(event, NodeExpired):
            key = (event.node_id, event.incarnation)
            member = self._member(*key)
            running = self._running(*key)
            apply_record(self.actual, record)
            if not member:
                return  # late or fenced: it changed nothing in the recorded world either
            if self.known.judged(event.node_id, event.swept_at):
                self.recorded[key] = Expiry(event.swept_at, running, event.last_heartbeat_at)
                return
            self.kept += 1  # outside the heartbeat window: the recorded decision stands
        elif isinstance(event, SkillInstanceExpired):
            apply_record(self.actual, record)
            if self.known.judged(event.node_id, event.swept_at):
                return
        else:
            apply_record(self.actual, record)
            if isinstance(record, UndecodableEventError):
                return
        assert event is not None
        apply(self.alt, event, seq=next(self._seq), time=time)

    def sweep(self, now: datetime) -> None:
        origin = Origin(producer="what-if", epoch=self.alt.epoch or None)
        command = ExpireStale(stale_after_s=self.options.stale_after)
        ids = self._ids
        stamp = origin.stamp(now, new_id=lambda: next(ids))
        for event in decide_expire_stale(self.alt, command, stamp=stamp):
            assert isinstance(event, NodeExpired | SkillInstanceExpired)
            if not self.known.judged(event.node_id, now):
                continue
            if isinstance(event, NodeExpired):
                key = (event.node_id, event.incarnation)
                running = self._running(*key)
                self.simulated[key] = Expiry(now, running, event.last_heartbeat_at)
            apply(self.alt, event, seq=next(self._seq), time=now)


def _compare(report: Report, world: _Worlds, beats: Sequence[StoredEvent]) -> None:
    times: dict[str, list[datetime]] = {}
    for beat in beats:
        assert isinstance(beat.event, Heartbeat)
        times.setdefault(beat.event.node_id, []).append(beat.time)
    tolerance = report.options.sweep_interval

    def silent(node_id: str, last: datetime | None, until: datetime) -> float | None:
        if last is None:
            return None
        node_times = times.get(node_id, [])
        index = bisect.bisect_right(node_times, last)
        resumed = node_times[index] if index < len(node_times) else until
        return (resumed - last).total_seconds()

    assert report.window is not None
    end = report.window[1]
    for key in sorted(world.recorded.keys() | world.simulated.keys()):
        recorded, simulated = world.recorded.get(key), world.simulated.get(key)
        kind: ChangeKind
        if recorded is not None and simulated is not None:
            delta = (simulated.at - recorded.at).total_seconds()
            if abs(delta) <= tolerance:
                report.unchanged.append(key)
                continue
            kind = "expired_earlier" if delta < 0 else "expired_later"
        else:
            kind = "not_expired" if simulated is None else "newly_expired"
        first = min((e for e in (recorded, simulated) if e is not None), key=lambda e: e.at)
        evidence = simulated if simulated is not None else recorded
        assert evidence is not None
        report.changes.append(
            Change(
                node_id=key[0],
                incarnation=key[1],
                change=kind,
                recorded_at=recorded.at if recorded else None,
                would_be_at=simulated.at if simulated else None,
                last_heartbeat_at=evidence.last_heartbeat_at,
                silent_s=silent(key[0], evidence.last_heartbeat_at, end),
                tasks=first.tasks,
            )
        )


def _notes(report: Report, beats: Sequence[StoredEvent], known: _KnownFrom, kept: int) -> None:
    options = report.options
    report.notes.append(
        f"differences within one sweep interval ({options.sweep_interval:g} s) are the "
        f"resolution of the simulation and are not reported"
    )
    recorded_interval = _typical_interval(beats)
    wanted = options.heartbeat_interval
    if wanted is not None and recorded_interval is not None and wanted < 0.9 * recorded_interval:
        report.notes.append(
            f"the recorded heartbeats are about {recorded_interval:.3g} s apart; a shorter "
            f"interval ({wanted:g} s) cannot be simulated, they were used as recorded"
        )
    interval = max(wanted or 0.0, recorded_interval or 0.0)
    if interval and options.stale_after <= interval:
        report.notes.append(
            f"--stale-after {options.stale_after:g} s is not longer than the heartbeat "
            f"interval (~{interval:.3g} s): healthy nodes expire between two heartbeats"
        )
    if known.truncated and known.overall is not None and known.overall != _NEVER:
        report.notes.append(
            f"the heartbeat history is bounded and now starts at "
            f"{known.overall.isoformat()}; earlier periods are not re-decided"
            + (f" ({kept} recorded expiries kept as they were)" if kept else "")
        )
    if not beats:
        report.notes.append("no heartbeats are retained: every member looks silent")


def _heartbeats(records: Sequence[Record]) -> list[StoredEvent]:
    return [
        record
        for record in records
        if isinstance(record, StoredEvent) and isinstance(record.event, Heartbeat)
    ]


def _thin(beats: list[StoredEvent], interval: float | None) -> list[StoredEvent]:
    """The heartbeats a sender every ``interval`` seconds would have sent (10% slack)."""
    if interval is None:
        return beats
    last: dict[str, datetime] = {}
    kept: list[StoredEvent] = []
    slack = timedelta(seconds=0.9 * interval)
    for beat in beats:
        assert isinstance(beat.event, Heartbeat)
        previous = last.get(beat.event.node_id)
        if previous is None or beat.time - previous >= slack:
            last[beat.event.node_id] = beat.time
            kept.append(beat)
    return kept


def _typical_interval(beats: Sequence[StoredEvent]) -> float | None:
    """The median gap between a node's consecutive heartbeats."""
    last: dict[str, datetime] = {}
    gaps: list[float] = []
    for beat in beats:
        assert isinstance(beat.event, Heartbeat)
        previous = last.get(beat.event.node_id)
        if previous is not None:
            gaps.append((beat.time - previous).total_seconds())
        last[beat.event.node_id] = beat.time
    return statistics.median(gaps) if gaps else None


def _sweep_instants(
    start: datetime, end: datetime, interval: float, recorded: Sequence[datetime]
) -> list[datetime]:
    """A grid every ``interval`` s anchored on the first recorded sweep, plus those."""
    span = (end - start).total_seconds()
    if span / interval > MAX_SWEEPS:
        raise InvalidRequestError(
            f"{span:.0f} s of history at one sweep every {interval:g} s is more than "
            f"{MAX_SWEEPS} sweeps; pass a larger --sweep-interval"
        )
    anchor = min(recorded) if recorded else start
    first = math.ceil((start - anchor).total_seconds() / interval)
    grid: set[datetime] = {t for t in recorded if start <= t <= end}
    for k in itertools.count(first):
        at = anchor + timedelta(seconds=k * interval)
        if at > end:
            break
        grid.add(at)
    return sorted(grid)


def _event_items(records: Sequence[Record], start: datetime) -> Iterator[_Item]:
    time = start
    for order, record in enumerate(records):
        # An undecodable message carries no time: it takes its predecessor's.
        time = record.time if isinstance(record, StoredEvent) else time
        yield _Item(time, 0, order, record)


def _beat_items(beats: Sequence[StoredEvent]) -> Iterator[_Item]:
    for order, beat in enumerate(beats):
        yield _Item(beat.time, 1, order, beat)


def _sweep_items(instants: Sequence[datetime]) -> Iterator[_Item]:
    for order, at in enumerate(instants):
        yield _Item(at, 2, order)

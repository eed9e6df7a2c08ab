"""An in-memory event store with the JetStream store's contract, for fast tests.

It keeps encoded messages per stream, as the server does, and decodes them on every
read, so the codec runs as it does against NATS. What it shares with the real store is
pinned by one contract suite (tests/store/test_contract.py) run against both:
sequences per stream from 1, expected-sequence checks per aggregate subject filter
(checked before dedup, as the server does), dedup by event id, atomic batches (all or
none, guards checked against the stream before the batch), reads in stream order
that stop at the last event stored when they began, and following subscriptions.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from eventsrc.errors import (
    ConcurrencyError,
    DuplicateEventError,
    EventsrcError,
    PayloadTooLargeError,
    UndecodableEventError,
)
from eventsrc.events import Event, decode, encode
from eventsrc.events.subjects import subject_matches
from eventsrc.ports import (
    EVENTS_STREAM,
    HEARTBEATS_STREAM,
    OUTPUT_STREAM,
    Record,
    StoredEvent,
    stream_filter,
)
from eventsrc.store import stream_for

MAX_PAYLOAD = 1024 * 1024
"""The NATS server's default max payload."""


@dataclass(frozen=True, slots=True)
class _Message:
    seq: int
    subject: str
    time: datetime
    data: bytes


@dataclass
class _Stream:
    messages: list[_Message] = field(default_factory=list)
    ids: dict[str, int] = field(default_factory=dict)

    @property
    def last_seq(self) -> int:
        return self.messages[-1].seq if self.messages else 0


class MemoryEventStore:
    """``EventStore`` in a dict; ``clock`` stands in for the server's timestamps."""

    def __init__(
        self,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        max_payload: int = MAX_PAYLOAD,
    ) -> None:
        self._clock = clock
        self._max_payload = max_payload
        self._streams = {
            EVENTS_STREAM: _Stream(),
            HEARTBEATS_STREAM: _Stream(),
            OUTPUT_STREAM: _Stream(),
        }
        self._appended = asyncio.Event()

    async def append(self, event: Event, *, expected_seq: int | None = None) -> int:
        stream = self._streams[stream_for(event.subject)]
        if expected_seq is not None:
            aggregate = event.aggregate_subject
            if self._last_of(stream, aggregate) != expected_seq:
                raise ConcurrencyError(aggregate, expected_seq)
        stored = stream.ids.get(event.event_id)
        if stored is not None:
            raise DuplicateEventError(event.event_id, stored)
        return self._store(stream, event.subject, encode(event), event.event_id)

    async def append_many(self, events: Sequence[Event]) -> list[int]:
        seqs: list[int] = []
        for event in events:
            stream = self._streams[stream_for(event.subject)]
            stored = stream.ids.get(event.event_id)
            seqs.append(
                stored
                if stored is not None
                else self._store(stream, event.subject, encode(event), event.event_id)
            )
        return seqs

    async def append_guarded(
        self, events: Sequence[Event], expected: Sequence[int | None]
    ) -> list[int | EventsrcError]:
        results: list[int | EventsrcError] = []
        for event, seq in zip(events, expected, strict=True):
            try:
                results.append(await self.append(event, expected_seq=seq))
            except EventsrcError as err:
                results.append(err)
        return results

    @property
    def atomic_batches(self) -> bool:
        return True

    async def append_batch(self, events: Sequence[Event], expected: Sequence[int | None]) -> int:
        # Every guard against the stream before the batch, every id unseen: then all.
        for event, seq in zip(events, expected, strict=True):
            stream = self._streams[stream_for(event.subject)]
            if seq is not None and self._last_of(stream, event.aggregate_subject) != seq:
                raise ConcurrencyError("(batch)", seq)
            if event.event_id in stream.ids:
                raise ConcurrencyError("(batch)", -1)
        seqs = [
            self._store(self._streams[stream_for(e.subject)], e.subject, encode(e), e.event_id)
            for e in events
        ]
        return seqs[-1]

    def _last_of(self, stream: _Stream, aggregate: str) -> int:
        return max(
            (m.seq for m in stream.messages if subject_matches(aggregate, m.subject)), default=0
        )

    def put_raw(self, subject: str, data: bytes) -> int:
        """Store bytes that may be no event at all (what a foreign publisher could do)."""
        return self._store(self._streams[stream_for(subject)], subject, data, None)

    async def last_seq(self, stream: str = EVENTS_STREAM) -> int:
        return self._streams[stream].last_seq

    async def read(
        self,
        *,
        stream: str = EVENTS_STREAM,
        subjects: str | Sequence[str] | None = None,
        from_seq: int = 1,
        until_seq: int | None = None,
        from_time: datetime | None = None,
        until_time: datetime | None = None,
    ) -> AsyncIterator[Record]:
        held = self._streams[stream]
        stop = held.last_seq if until_seq is None else min(held.last_seq, until_seq)
        filters = _filters(stream, subjects)
        matching = [m for m in held.messages if _matches(filters, m.subject)]
        for i, message in enumerate(matching):
            if message.seq < from_seq or (from_time is not None and message.time < from_time):
                continue
            if message.seq > stop or (until_time is not None and message.time > until_time):
                return
            # Like a consumer's pending count: the matching messages behind this one.
            yield _record(message, pending=len(matching) - i - 1)

    async def subscribe(
        self,
        *,
        stream: str = EVENTS_STREAM,
        subjects: str | Sequence[str] | None = None,
        from_seq: int = 1,
        last_per_subject: bool = False,
    ) -> AsyncIterator[Record]:
        held = self._streams[stream]
        filters = _filters(stream, subjects)
        matching = [m for m in held.messages if _matches(filters, m.subject)]
        if last_per_subject:
            newest = {m.subject: m for m in matching}
            backlog = sorted(newest.values(), key=lambda m: m.seq)
            from_seq = 1
        else:
            backlog = [m for m in matching if m.seq >= from_seq]
        position = held.last_seq  # before yielding: appends meanwhile are followed
        for i, message in enumerate(backlog):
            yield _record(message, pending=len(backlog) - i - 1)
        while True:
            appended = self._appended
            fresh = [m for m in held.messages if m.seq > position]
            if not fresh:
                await appended.wait()
                continue
            position = fresh[-1].seq
            chosen = [m for m in fresh if m.seq >= from_seq and _matches(filters, m.subject)]
            for i, message in enumerate(chosen):
                yield _record(message, pending=len(chosen) - i - 1)

    def _store(self, stream: _Stream, subject: str, data: bytes, event_id: str | None) -> int:
        if len(data) > self._max_payload:
            raise PayloadTooLargeError(
                f"the event for {subject} is larger than the server's max payload; "
                f"send smaller payloads or results (store large data elsewhere, pass a "
                f"reference)"
            )
        seq = stream.last_seq + 1
        stream.messages.append(_Message(seq, subject, self._clock(), data))
        if event_id is not None:
            stream.ids[event_id] = seq
        self._appended.set()
        self._appended = asyncio.Event()
        return seq


def _filters(stream: str, subjects: str | Sequence[str] | None) -> list[str]:
    if subjects is None:
        return [stream_filter(stream)]
    return [subjects] if isinstance(subjects, str) else list(subjects)


def _matches(filters: list[str], subject: str) -> bool:
    return any(subject_matches(pattern, subject) for pattern in filters)


def _record(message: _Message, *, pending: int) -> Record:
    try:
        event = decode(message.data, seq=message.seq, subject=message.subject)
    except UndecodableEventError as err:
        err.time = message.time
        return err
    return StoredEvent(message.seq, message.subject, message.time, event, pending)

"""Reading the streams without creating consumers: one message get per event.

Secure mode denies nodes and clients the right to create JetStream consumers (a push
consumer's deliver subject is not checked against its creator's permissions, so it could
pour stored messages back into the streams under other subjects). They read with
``$JS.API.STREAM.MSG.GET.<stream>`` and ``next_by_subj``: a request/reply per event,
slower than an ordered consumer but fine for one task's or one node's events. Following
polls, backing off while nothing new arrives.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import nats.errors
import nats.js.errors
from nats.aio.client import Client

from eventsrc.ports import EVENTS_STREAM, Record, StoredEvent, stream_filter
from eventsrc.store.jetstream import (
    JetStreamEventStore,
    _map_error,
    got_record,
)

POLL_MIN_S = 0.05
POLL_MAX_S = 1.0


class ConsumerlessEventStore(JetStreamEventStore):
    """The JetStream store for identities that may not create consumers (secure mode)."""

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
        """Like the consumer-based read; ``from_time`` is applied by skipping older events."""
        stop = await self.last_seq(stream)
        if until_seq is not None:
            stop = min(stop, until_seq)
        merge = _Merge(self, stream, _filters(stream, subjects), max(from_seq, 1))
        while (record := await merge.next()) is not None and record.seq <= stop:
            if isinstance(record, StoredEvent):
                if from_time is not None and record.time < from_time:
                    continue
                if until_time is not None and record.time > until_time:
                    return
            yield record
            if record.seq >= stop:
                return

    async def subscribe(
        self,
        *,
        stream: str = EVENTS_STREAM,
        subjects: str | Sequence[str] | None = None,
        from_seq: int = 1,
        last_per_subject: bool = False,
    ) -> AsyncIterator[Record]:
        """Follow by polling; ``last_per_subject`` starts with the newest message of each
        subject, as a consumer with that deliver policy does (``from_seq`` is ignored)."""
        filters = _filters(stream, subjects)
        if last_per_subject:
            until = await self.last_seq(stream)
            newest = await self._newest_per_subject(stream, filters, until)
            for i, first in enumerate(newest):
                behind = len(newest) - i - 1
                yield replace(first, pending=behind) if isinstance(first, StoredEvent) else first
            from_seq = until + 1
        merge = _Merge(self, stream, filters, max(from_seq, 1))
        delay = POLL_MIN_S
        while True:
            record = await merge.next()
            if record is None:
                await asyncio.sleep(delay)
                delay = min(delay * 2, POLL_MAX_S)
                continue
            delay = POLL_MIN_S
            yield record

    async def _newest_per_subject(
        self, stream: str, filters: list[str], until_seq: int
    ) -> list[Record]:
        """The newest record of each subject matching ``filters``, in stream order; one
        newer than ``until_seq`` is left out (the follow delivers it). The subjects come
        from one stream-info reply per filter, which lists them all for a heartbeat
        stream (one subject per node)."""
        found: set[str] = set()
        for pattern in filters:
            try:
                info = await self.js.stream_info(stream, subjects_filter=pattern)
            except nats.errors.Error as err:
                raise _map_error(err, subject=pattern) from err
            found.update(info.state.subjects or {})
        records: list[Record] = []
        for subject in found:
            try:
                msg = await self.js.get_msg(stream, subject=subject)
            except nats.js.errors.NotFoundError:
                continue  # aged out or purged since the stream info
            except nats.errors.Error as err:
                raise _map_error(err, subject=subject) from err
            record = got_record(msg, pending=0)
            if record.seq <= until_seq:
                records.append(record)
        return sorted(records, key=lambda record: record.seq)

    async def get_next(self, stream: str, subject: str, seq: int) -> Record | None:
        """The first message at or after ``seq`` on ``subject`` (wildcards allowed)."""
        try:
            msg = await self.js.get_msg(stream, seq=seq, subject=subject, next=True)
        except nats.js.errors.NotFoundError:
            return None
        except nats.errors.Error as err:
            raise _map_error(err, subject=subject) from err
        return got_record(msg, pending=0)


class _Merge:
    """Several subject filters read in stream order: one message ahead per filter."""

    def __init__(
        self, store: ConsumerlessEventStore, stream: str, filters: list[str], from_seq: int
    ) -> None:
        self._store = store
        self._stream = stream
        self._next_seq = dict.fromkeys(filters, from_seq)
        self._heads: dict[str, Record | None] = {}

    async def next(self) -> Record | None:
        """The next record of any filter, or None when none has one now (retry later)."""
        for subject, seq in self._next_seq.items():
            if self._heads.get(subject) is None:
                self._heads[subject] = await self._store.get_next(self._stream, subject, seq)
        ready = [(r.seq, s) for s, r in self._heads.items() if r is not None]
        if not ready:
            return None
        _, subject = min(ready)
        record = self._heads[subject]
        assert record is not None
        self._next_seq[subject] = record.seq + 1
        self._heads[subject] = None
        if isinstance(record, StoredEvent) and len(ready) > 1:
            record = StoredEvent(record.seq, record.subject, record.time, record.event, 1)
        return record


def _filters(stream: str, subjects: str | Sequence[str] | None) -> list[str]:
    if subjects is None:
        return [stream_filter(stream)]
    return [subjects] if isinstance(subjects, str) else list(subjects)


def event_store(nc: Client, *, consumers: bool, **options: Any) -> JetStreamEventStore:
    """The store for a connection: consumer-based, or by message get for restricted roles."""
    if consumers:
        return JetStreamEventStore(nc, **options)
    return ConsumerlessEventStore(nc, **options)

"""The JetStream event store: the one place events meet NATS.

Appends use ``Nats-Msg-Id`` (= event id) for dedup and, for optimistic concurrency,
``Nats-Expected-Last-Subject-Sequence`` with ``...-Subject`` set to the aggregate's
subject filter (``evt.task.<id>.>``). Reads go through ordered pull consumers
(``OrderedPull``): as fast as nats-py's ordered push consumer, with what is in flight
bounded by what was asked for.

Note: the server checks the expected sequence before dedup, so a *retried* conditional
append whose first try was stored fails with ConcurrencyError, not DuplicateEventError;
re-read the aggregate (it will contain the event) and decide again.

Many decisions at once are stored as one atomic batch (``append_batch``) when the events
stream takes them: all their events or none, one commit. The events keep their
``Nats-Msg-Id`` (nats-server 2.12.1 and later take it in a batch and refuse the whole
batch when one id is already stored) and their guards, so what is stored reads as any
append does.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Sequence
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Final

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from eventsrc.errors import (
    BatchRefusedError,
    ConcurrencyError,
    DuplicateEventError,
    EventsrcError,
    NotPermittedError,
    PayloadTooLargeError,
    ServerUnavailableError,
    StoreError,
    StoreFullError,
    UndecodableEventError,
)
from eventsrc.events import Event, decode, encode
from eventsrc.events.subjects import is_heartbeat_subject, is_output_subject
from eventsrc.ports import (
    EVENTS_STREAM,
    HEARTBEATS_STREAM,
    OUTPUT_STREAM,
    Record,
    StoredEvent,
    StreamFill,
    stream_filter,
)
from eventsrc.store.connection import jetstream_api
from eventsrc.store.feed import AckReply
from eventsrc.store.ordered import OrderedPull
from eventsrc.store.publisher import Ack, AckedPublisher, SubjectRefusedError
from eventsrc.store.streams import StreamSettings, ensure_streams

log = logging.getLogger(__name__)

# nats-py has no constants for these; names follow nats-server's errors.json.
JS_ERR_WRONG_LAST_SEQUENCE: Final = 10071
# A clustered (R>1) stream checks expectations against appends still in flight too and
# refuses those with this code ("wrong last sequence", no number): the same conflict.
JS_ERR_WRONG_LAST_SEQUENCE_CONSTANT: Final = 10164
JS_ERR_STORE_FAILED: Final = 10077  # "maximum bytes/messages exceeded" with discard=new
# "JetStream system temporarily unavailable" (status 503): the stream (or the cluster's
# meta group) has no leader now, e.g. while it elects one or after losing its quorum.
JS_ERR_CLUSTER_NOT_AVAILABLE: Final = 10008
# "insufficient resources" (503): a server's JetStream store (its disk) has no room.
JS_ERR_INSUFFICIENT_RESOURCES: Final = 10023
# "insufficient storage resources available": a stream's byte limit cannot be reserved
# in the servers' JetStream store (creating or raising a bounded stream).
JS_ERR_STORAGE_RESOURCES_EXCEEDED: Final = 10047
# Atomic batches: "atomic publish is disabled" on the stream, and "unsupported header"
# (nats-server 2.12.0 refuses Nats-Msg-Id in a batch; 2.12.1 and later take it): both
# mean "append one by one".
JS_ERR_ATOMIC_DISABLED: Final = 10174
JS_ERR_ATOMIC_UNSUPPORTED_HEADER: Final = 10177
# "atomic publish batch contains duplicate message id": an event of it is stored already.
JS_ERR_ATOMIC_DUPLICATE_ID: Final = 10201
# Refusals of a batch that store none of it: the server holds too many batches of the
# stream at once (50 in 2.15), or did not get every message of it. Told apart by their
# descriptions.
ATOMIC_REFUSALS: Final = ("atomic publish batch is incomplete", "atomic publish too many inflight")
MAX_BATCHES_IN_FLIGHT: Final = 32
"""Atomic batches this store has in flight at most (under the server's limit per stream)."""

MAX_APPENDING: Final = 10_000
"""Events kept for the follower at most: each is dropped when delivered (within ms); a
``submit_many`` of 1,000 tasks has 2,000 in flight."""

HDR_MSG_ID: Final = "Nats-Msg-Id"
HDR_EXPECTED_LAST_SUBJECT_SEQ: Final = "Nats-Expected-Last-Subject-Sequence"
HDR_EXPECTED_LAST_SUBJECT_SEQ_SUBJECT: Final = "Nats-Expected-Last-Subject-Sequence-Subject"
# Set by ``replay_tools import`` on each copied message: where and when it was first stored.
HDR_ORIGIN_SEQ: Final = "Eventsrc-Origin-Seq"
HDR_ORIGIN_TIME: Final = "Eventsrc-Origin-Time"
"""Set by ``replay_tools import``: the server time the event was first stored at."""


def stream_for(subject: str) -> str:
    """The stream that stores a subject."""
    if is_heartbeat_subject(subject):
        return HEARTBEATS_STREAM
    return OUTPUT_STREAM if is_output_subject(subject) else EVENTS_STREAM


class JetStreamEventStore:
    """Event store on a JetStream connection the caller owns (it is not closed here)."""

    def __init__(
        self,
        nc: Client,
        *,
        settings: StreamSettings | None = None,
        timeout: float = 5.0,
    ) -> None:
        self._nc = nc
        self._js: JetStreamContext = nc.jetstream(timeout=timeout, prefix=jetstream_api(nc))
        self._publisher = AckedPublisher(nc, timeout=timeout)
        self._settings = settings or StreamSettings()
        self._atomic = False
        self._batch_slots = asyncio.Semaphore(MAX_BATCHES_IN_FLIGHT)
        self._following = 0
        self._appending: dict[str, Event] = {}
        """Events being appended while this store follows the events stream, by id: the
        follower takes each as it is instead of decoding the bytes just written (read
        your own write without a decode). Dropped once delivered or refused; bounded."""

    @property
    def js(self) -> JetStreamContext:
        """The JetStream context, for adapters that need more than the port."""
        return self._js

    @property
    def atomic_batches(self) -> bool:
        """Whether ``append_batch`` may be used: the events stream takes atomic batches
        (known once ``ensure_streams`` ran; False before, and once the server refused one)."""
        return self._atomic

    async def ensure_streams(self) -> None:
        """Create the streams, or bring their limits in line with the settings."""
        try:
            self._atomic = await ensure_streams(self._js, self._settings)
        except nats.errors.Error as err:
            raise _map_error(err, subject="(stream setup)") from err

    async def __aenter__(self) -> JetStreamEventStore:
        await self.ensure_streams()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    async def append(self, event: Event, *, expected_seq: int | None = None) -> int:
        """Store one event; see ``EventStore.append`` for the concurrency contract."""
        self._remember((event,))
        try:
            ack = await self._publisher.publish(
                event.subject, encode(event), _append_headers(event, expected_seq)
            )
        except nats.errors.Error as err:
            self._appending.pop(event.event_id, None)
            raise _map_error(err, subject=event.aggregate_subject, expected=expected_seq) from err
        except BaseException:
            self._appending.pop(event.event_id, None)
            raise
        if ack.duplicate:
            self._appending.pop(event.event_id, None)
            raise DuplicateEventError(event.event_id, ack.seq)
        return int(ack.seq)

    async def append_guarded(
        self, events: Sequence[Event], expected: Sequence[int | None]
    ) -> list[int | EventsrcError]:
        """Append every event pipelined, each guarded by its own ``expected`` sequence as
        ``append`` guards one, in one round trip; per event its sequence or the error
        ``append`` would raise (DuplicateEventError for an id already stored)."""
        messages = [
            (event.subject, encode(event), _append_headers(event, seq))
            for event, seq in zip(events, expected, strict=True)
        ]
        self._remember(events)
        try:
            acks = await self._publisher.publish_many(messages)
        except BaseException as err:
            for event in events:
                self._appending.pop(event.event_id, None)
            if isinstance(err, nats.errors.Error):
                raise _map_error(err, subject="(batch)") from err
            raise
        results: list[int | EventsrcError] = []
        for event, seq, ack in zip(events, expected, acks, strict=True):
            if isinstance(ack, nats.errors.Error):
                self._appending.pop(event.event_id, None)
                results.append(_map_error(ack, subject=event.aggregate_subject, expected=seq))
            elif ack.duplicate:
                self._appending.pop(event.event_id, None)
                results.append(DuplicateEventError(event.event_id, ack.seq))
            else:
                results.append(int(ack.seq))
        return results

    async def append_batch(self, events: Sequence[Event], expected: Sequence[int | None]) -> int:
        """Store ``events`` as one atomic batch (at most ``MAX_ATOMIC_BATCH``), each
        guarded by its own ``expected`` sequence as ``append`` guards one: all stored, in
        order with nothing in between, or none. Returns the sequence of the last (the
        others have the ones before it). Raises ConcurrencyError when a guard fails or
        an event's id is stored already (a retried batch: re-read and decide again, as
        after any conflict), StoreError when the server refuses atomic batches
        (``atomic_batches`` is False from then on: append one by one), BatchRefusedError
        when it turned this batch away storing none of it (append it one by one), else as
        ``append`` raises (a timeout leaves the outcome unknown)."""
        messages = [
            (event.subject, encode(event), _append_headers(event, seq))
            for event, seq in zip(events, expected, strict=True)
        ]
        self._remember(events)
        try:
            async with self._batch_slots:
                ack = await self._publisher.publish_batch(messages)
        except BaseException as err:
            for event in events:
                self._appending.pop(event.event_id, None)
            if not isinstance(err, nats.errors.Error):
                raise
            if isinstance(err, nats.js.errors.APIError):
                if err.err_code == JS_ERR_ATOMIC_DUPLICATE_ID:
                    raise ConcurrencyError("(batch)", -1) from err
                if (err.description or "").startswith(ATOMIC_REFUSALS):
                    raise BatchRefusedError(
                        f"{EVENTS_STREAM} turned an atomic batch away ({err.description}); "
                        f"append its events one by one"
                    ) from err
                if err.err_code in (JS_ERR_ATOMIC_DISABLED, JS_ERR_ATOMIC_UNSUPPORTED_HEADER):
                    self._atomic = False
                    log.warning(
                        "%s refused an atomic batch (%s): the events of a decision are "
                        "stored as chained appends from now on",
                        EVENTS_STREAM,
                        err.description,
                    )
            raise _map_error(err, subject="(batch)") from err
        return int(ack.seq)

    def _remember(self, events: Sequence[Event]) -> None:
        """Keep events about to be appended for this store's follower (if it has one)."""
        if not self._following:
            return
        appending = self._appending
        for event in events:
            appending[event.event_id] = event
        while len(appending) > MAX_APPENDING:
            # Never delivered (e.g. the follower stopped meanwhile): forget the oldest.
            del appending[next(iter(appending))]

    async def append_many(self, events: Sequence[Event]) -> list[int]:
        """Publish all events pipelined, then wait for every ack.

        Duplicates (already stored ids) count as stored and return their sequence.
        The first failure is raised after all acks settled; re-running the same batch
        is safe because of dedup.
        """
        messages = [(e.subject, encode(e), {HDR_MSG_ID: e.event_id}) for e in events]
        try:
            acks = await self.publish_pipelined(messages)
        except nats.errors.Error as err:
            raise _map_error(err, subject="(batch)") from err
        seqs: list[int] = []
        failure: EventsrcError | None = None
        for ack in acks:
            if isinstance(ack, nats.errors.Error):
                failure = failure or _map_error(ack, subject="(batch)")
                continue
            seqs.append(ack.seq)
        if failure is not None:
            raise failure
        return seqs

    async def publish_pipelined(
        self, messages: Sequence[tuple[str, bytes, dict[str, str]]]
    ) -> list[Ack | nats.errors.Error]:
        """Publish ``(subject, data, headers)`` messages pipelined, then each one's ack
        or the nats-py error it got, in order.

        Not nats-py's ``publish_async``: in nats-py 2.16 an ack that carries a JetStream
        error (a full stream, a failed guard) raises inside its reply callback
        (``APIError.from_error`` raises instead of returning) and the publish's future is
        never resolved, so the caller waits forever.
        """
        return await self._publisher.publish_many(messages)

    async def last_subject_seq(self, subject: str) -> int:
        """The sequence of the newest event stored under ``subject`` (0: none), read
        from the stream itself: what an append guarded on that subject is checked
        against."""
        try:
            msg = await self._js.get_last_msg(EVENTS_STREAM, subject)
        except nats.js.errors.NotFoundError:
            return 0
        except nats.errors.Error as err:
            raise _map_error(err, subject=subject) from err
        return int(msg.seq or 0)

    async def latest(self, stream: str, subject: str) -> Record | None:
        """The newest message stored under ``subject`` (no wildcards) in ``stream``, by
        one message get (no consumer); None when there is none."""
        try:
            msg = await self._js.get_last_msg(stream, subject)
        except nats.js.errors.NotFoundError:
            return None
        except nats.errors.Error as err:
            raise _map_error(err, subject=subject) from err
        return got_record(msg, pending=0)

    async def last_seq(self, stream: str = EVENTS_STREAM) -> int:
        """The last sequence stored in a stream (0 when it holds no message).

        A stream whose messages all aged out (max age) or were purged keeps its last
        sequence number but holds nothing to wait for: that counts as empty.
        """
        try:
            info = await self._js.stream_info(stream)
        except nats.errors.Error as err:
            raise _map_error(err, subject=stream) from err
        return int(info.state.last_seq) if info.state.messages else 0

    async def fill(self, stream: str = EVENTS_STREAM) -> StreamFill:
        """How full ``stream`` is now (one stream info request); raises
        ServerUnavailableError or StoreError as reads do."""
        try:
            info = await self._js.stream_info(stream)
        except nats.errors.Error as err:
            raise _map_error(err, subject=stream) from err
        return StreamFill(
            used_bytes=int(info.state.bytes),
            messages=int(info.state.messages),
            max_bytes=int(info.config.max_bytes or -1),
            last_seq=int(info.state.last_seq),
        )

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
        """Yield the records in a range in stream order, then stop.

        The range ends at ``until_seq``/``until_time`` or at the last event stored when
        the read began, whichever is first.
        """
        stop = await self.last_seq(stream)
        if until_seq is not None:
            stop = min(stop, until_seq)
        if stop < max(from_seq, 1):
            return
        inbox = _Inbox(self._nc)
        sub = await self._ordered(stream, subjects, inbox, from_seq=from_seq, from_time=from_time)
        try:
            # Nothing matched when the consumer was made: no message will come.
            if sub.created is not None and not sub.created.num_pending:
                return
            async for msg, ack in inbox.messages():
                record, pending = _record(msg, ack)
                seq = record.seq
                if seq > stop:
                    return
                if (
                    until_time is not None
                    and isinstance(record, StoredEvent)
                    and record.time > until_time
                ):
                    return
                yield record
                if seq >= stop or pending == 0:
                    return
            raise ServerUnavailableError(
                f"the connection closed while reading {stream}; check that NATS is running"
            )
        finally:
            await _unsubscribe(sub)

    async def subscribe(
        self,
        *,
        stream: str = EVENTS_STREAM,
        subjects: str | Sequence[str] | None = None,
        from_seq: int = 1,
        last_per_subject: bool = False,
    ) -> AsyncIterator[Record]:
        """Yield records from ``from_seq`` on and keep following new ones until cancelled."""
        inbox = _Inbox(self._nc)
        sub = await self._ordered(
            stream,
            subjects,
            inbox,
            from_seq=from_seq,
            from_time=None,
            last_per_subject=last_per_subject,
        )
        # The whole events stream, live: what this store appends comes by here.
        own = self._appending if stream == EVENTS_STREAM and subjects is None else None
        self._following += own is not None
        try:
            async for msg, ack in inbox.messages():
                yield _record(msg, ack, own=own)[0]
        finally:
            self._following -= own is not None
            if not self._following:
                self._appending.clear()
            await _unsubscribe(sub)

    async def _ordered(
        self,
        stream: str,
        subjects: str | Sequence[str] | None,
        inbox: _Inbox,
        *,
        from_seq: int,
        from_time: datetime | None,
        last_per_subject: bool = False,
    ) -> OrderedPull:
        filters = _filters(stream, subjects)
        config = ConsumerConfig(
            filter_subject=filters[0] if len(filters) == 1 else None,
            filter_subjects=filters if len(filters) > 1 else None,
        )
        if last_per_subject:
            config.deliver_policy = DeliverPolicy.LAST_PER_SUBJECT
        elif from_time is not None:
            config.deliver_policy = DeliverPolicy.BY_START_TIME
            config.opt_start_time = from_time
        elif from_seq > 1:
            config.deliver_policy = DeliverPolicy.BY_START_SEQUENCE
            config.opt_start_seq = from_seq
        else:
            config.deliver_policy = DeliverPolicy.ALL
        reader = OrderedPull(self._nc, self._js, stream, config, inbox.put)
        try:
            await reader.start()
        except (nats.errors.Error, TimeoutError) as err:
            raise _map_error(err, subject=",".join(filters)) from err
        return reader


class _Inbox:
    """Messages handed over by a subscription callback, with backpressure.

    nats-py's ``sub.messages`` iterator creates a task and an ``asyncio.wait`` per
    message (about 30k msg/s here); a callback feeding a deque is about three times
    faster. When the reader falls behind by ``HIGH_WATER`` messages the callback waits,
    which pauses delivery (the ordered consumer's flow control does the rest).
    """

    HIGH_WATER = 20_000
    IDLE_CHECK_S = 5.0

    def __init__(self, nc: Client) -> None:
        self._nc = nc
        self._items: collections.deque[tuple[Msg, AckReply]] = collections.deque()
        self._ready = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()

    def put(self, msg: Msg, ack: AckReply) -> Awaitable[bool] | None:
        """Take a message; past the high water, what the ordered read awaits first."""
        self._items.append((msg, ack))
        self._ready.set()
        if len(self._items) >= self.HIGH_WATER:
            self._room.clear()
            return self._room.wait()
        return None

    async def messages(self) -> AsyncIterator[tuple[Msg, AckReply]]:
        """Yield messages (with their reply subject, read) in order until the connection
        closes."""
        items = self._items
        while True:
            while not items:
                self._ready.clear()
                try:
                    # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow the
                    # cancellation that closing a follower sends.
                    async with asyncio.timeout(self.IDLE_CHECK_S):
                        await self._ready.wait()
                except TimeoutError:
                    if self._nc.is_closed:
                        return
            yield items.popleft()
            if not self._room.is_set() and len(items) < self.HIGH_WATER // 2:
                self._room.set()


def _append_headers(event: Event, expected_seq: int | None) -> dict[str, str]:
    """An append's headers: its id (dedup), and the guard of its aggregate if any. No
    Nats-Expected-Stream header: evt.> and hb.> belong to our streams only, and the
    header would be stored and parsed again on every replay."""
    headers = {HDR_MSG_ID: event.event_id}
    if expected_seq is not None:
        headers[HDR_EXPECTED_LAST_SUBJECT_SEQ] = str(expected_seq)
        aggregate = event.aggregate_subject
        if aggregate != event.subject:
            headers[HDR_EXPECTED_LAST_SUBJECT_SEQ_SUBJECT] = aggregate
    return headers


def _filters(stream: str, subjects: str | Sequence[str] | None) -> list[str]:
    if subjects is None:
        return [stream_filter(stream)]
    if isinstance(subjects, str):
        return [subjects]
    return list(subjects)


def _record(msg: Msg, ack: AckReply, *, own: dict[str, Event] | None = None) -> tuple[Record, int]:
    """The record of a delivered message; ``own`` holds events this process is
    appending, by id: one of them stored under its own subject is taken as it is."""
    seq, pending = ack.stream_seq, ack.pending
    stored_at = _server_time(ack.timestamp_ns)
    headers = msg.headers
    if headers and HDR_ORIGIN_TIME in headers:
        # Imported history keeps the time it was first stored, so a rebuild of an
        # imported deployment equals the original's.
        stored_at = _origin_time(headers[HDR_ORIGIN_TIME], stored_at)
    mine = own.pop(headers.get(HDR_MSG_ID, ""), None) if own and headers else None
    if mine is not None and mine.subject == msg.subject:
        return StoredEvent(seq, msg.subject, stored_at, mine, pending), pending
    try:
        event = decode(msg.data, seq=seq, subject=msg.subject)
    except UndecodableEventError as err:
        err.time = stored_at
        return err, pending
    return StoredEvent(seq, msg.subject, stored_at, event, pending), pending


def got_record(msg: Any, *, pending: int) -> Record:
    """The record of a message get's reply (``js.get_msg`` / ``get_last_msg``)."""
    seq, subject = int(msg.seq), str(msg.subject)
    stored_at: datetime = msg.time
    headers = msg.headers
    if headers and HDR_ORIGIN_TIME in headers:
        stored_at = _origin_time(headers[HDR_ORIGIN_TIME], stored_at)
    try:
        event = decode(msg.data or b"", seq=seq, subject=subject)
    except UndecodableEventError as err:
        err.time = stored_at
        return err
    return StoredEvent(seq, subject, stored_at, event, pending)


_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _server_time(timestamp_ns: int) -> datetime:
    """The server's nanosecond timestamp floored to microseconds. Rounded, it fell after
    the stored time half of the time, and a read from it missed the event it came from;
    floored, it also equals what a message get reports (its ISO time cut to 6 digits)."""
    return _UNIX_EPOCH + timedelta(microseconds=timestamp_ns // 1000)


def _origin_time(value: str, fallback: datetime) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return fallback
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


async def _unsubscribe(sub: Any) -> None:
    # When the connection is gone the ephemeral consumer expires on its own.
    with contextlib.suppress(nats.errors.Error):
        await sub.unsubscribe()


def _map_error(err: Exception, *, subject: str, expected: int | None = None) -> EventsrcError:
    """Turn a nats-py error into ours, with a message a person can act on (the one
    mapping: the raw reads of ``store.raw`` use it too)."""
    if isinstance(err, SubjectRefusedError):
        return NotPermittedError(
            f"NATS refused writing to {err.subject} to these credentials ({err.text}); use "
            f"credentials of a role that may write there",
            subject=err.subject,
        )
    if isinstance(err, nats.js.errors.APIError):
        # A full stream answers 503 too (err_code 10077): the code decides, not the status.
        if err.err_code == JS_ERR_STORE_FAILED:
            return StoreFullError(
                f"the event store is full ({err.description}); nothing was stored — raise "
                f"the stream limits (events_max_bytes / events_max_age_s) or free space"
            )
        if err.err_code == JS_ERR_INSUFFICIENT_RESOURCES:
            return StoreFullError(
                f"the NATS servers have no room to store {subject} ({err.description}); "
                f"nothing was stored — free disk space on the servers' JetStream store "
                f"(or raise their max_file_store) and retry"
            )
        if err.err_code == JS_ERR_STORAGE_RESOURCES_EXCEEDED:
            return StoreFullError(
                f"the NATS servers cannot reserve room for {subject} ({err.description}): "
                f"every bounded stream's limit must fit in their JetStream store — lower "
                f"output_max_bytes or events_max_bytes, or raise the servers' max_file_store"
            )
        unavailable = isinstance(err, nats.js.errors.ServiceUnavailableError)
        if err.err_code == JS_ERR_CLUSTER_NOT_AVAILABLE or (unavailable and not err.err_code):
            # No leader to store or read (or no responders): as unreachable as a server
            # that is down.
            return ServerUnavailableError(
                f"JetStream cannot serve {subject} now, its stream has no leader "
                f"({err.description}): retry in a few seconds; if it lasts, bring the lost "
                f"NATS servers back (a stream needs most of its servers running)"
            )
        if unavailable:
            return StoreError(
                f"JetStream cannot serve {subject}: {err.description} (error {err.err_code})"
            )
        if err.err_code in (JS_ERR_WRONG_LAST_SEQUENCE, JS_ERR_WRONG_LAST_SEQUENCE_CONSTANT):
            return ConcurrencyError(subject, expected if expected is not None else -1)
        if isinstance(err, nats.js.errors.NotFoundError):
            return StoreError(
                f"stream not found for {subject}: start the coordinator once so it creates "
                f"the streams ({err.description})"
            )
        return StoreError(f"JetStream refused the request for {subject}: {err.description}")
    if isinstance(err, nats.errors.MaxPayloadError):
        return PayloadTooLargeError(
            f"the event for {subject} is larger than the server's max payload; "
            f"send smaller payloads or results (store large data elsewhere, pass a reference)"
        )
    if isinstance(err, nats.js.errors.NoStreamResponseError):
        return ServerUnavailableError(
            f"no JetStream stream answers for {subject}: the stream may be electing a new "
            f"leader (a NATS server was lost; retry in a few seconds), or not exist yet "
            f"(start the coordinator once so it creates the streams)"
        )
    reason = str(err) or type(err).__name__
    return ServerUnavailableError(
        f"NATS did not answer for {subject} ({reason}); check that the server is running "
        f"and reachable"
    )

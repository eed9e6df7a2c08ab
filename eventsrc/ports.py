"""The narrow ports the core needs: the event store and the snapshot store.

The JetStream store is the real implementation. Reading yields either a stored event
or the ``UndecodableEventError`` describing a message that is not one — yielded, not
raised, so one bad message never ends a read or a subscription.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Protocol

from eventsrc.errors import EventsrcError, UndecodableEventError
from eventsrc.events import Event
from eventsrc.events.subjects import EVENTS_FILTER, HEARTBEATS_FILTER, OUTPUT_FILTER


@dataclass(slots=True, unsafe_hash=True)
class StoredEvent:
    """An event as the stream holds it; read-only by convention.

    ``time`` is the server's timestamp (the one clock decisions use); ``pending`` is how
    many matching messages were still behind this one when it was delivered, so a
    follower knows when it has caught up and can batch until then.

    Not frozen: a frozen dataclass sets each field through ``object.__setattr__``
    (0.4 µs a record against 0.1 here), and a replay makes one per event. Hashed by its
    fields as a frozen one was.
    """

    seq: int
    subject: str
    time: datetime
    event: Event
    pending: int = 0


Record = StoredEvent | UndecodableEventError
"""What reading a stream yields."""


@dataclass(frozen=True, slots=True)
class StreamFill:
    """How full a stream is: bytes and messages stored, its byte limit (-1: none) and
    its last sequence then."""

    used_bytes: int
    messages: int
    max_bytes: int
    last_seq: int


EVENTS_STREAM = "EVENTSRC_EVENTS"
MAX_ATOMIC_BATCH: Final = 1000
"""The most events one atomic batch holds (nats-server's limit)."""
HEARTBEATS_STREAM = "EVENTSRC_HEARTBEATS"
OUTPUT_STREAM = "EVENTSRC_OUTPUT"
"""Running tasks' progress and output lines: soft state with a bounded retention."""


def stream_filter(stream: str) -> str:
    """The subject filter covering one of our streams."""
    if stream == HEARTBEATS_STREAM:
        return HEARTBEATS_FILTER
    return OUTPUT_FILTER if stream == OUTPUT_STREAM else EVENTS_FILTER


class EventStore(Protocol):
    """What the rest of eventsrc needs from an event store."""

    async def append(self, event: Event, *, expected_seq: int | None = None) -> int:
        """Store one event and return its stream sequence.

        With ``expected_seq`` the append succeeds only if the last event of the
        event's aggregate (``event.aggregate_subject``) is at that sequence (0: none
        yet). Raises ConcurrencyError, DuplicateEventError (with the stored sequence),
        StoreFullError, PayloadTooLargeError, ServerUnavailableError.
        """
        ...

    async def append_many(self, events: Sequence[Event]) -> list[int]:
        """Store many events pipelined (no concurrency check); sequences in order."""
        ...

    async def append_guarded(
        self, events: Sequence[Event], expected: Sequence[int | None]
    ) -> list[int | EventsrcError]:
        """Store many events pipelined, each guarded as ``append`` guards one; per event
        its sequence or the error ``append`` would raise, in order."""
        ...

    @property
    def atomic_batches(self) -> bool:
        """Whether ``append_batch`` may be used now."""
        ...

    async def append_batch(self, events: Sequence[Event], expected: Sequence[int | None]) -> int:
        """Store at most ``MAX_ATOMIC_BATCH`` events, each guarded as ``append`` guards
        one, all or none; the sequence of the last (the others precede it). Raises
        ConcurrencyError when a guard fails or an id is stored already."""
        ...

    def read(
        self,
        *,
        stream: str = EVENTS_STREAM,
        subjects: str | Sequence[str] | None = None,
        from_seq: int = 1,
        until_seq: int | None = None,
        from_time: datetime | None = None,
        until_time: datetime | None = None,
    ) -> AsyncIterator[Record]:
        """Yield the records in a range, in stream order, then stop."""
        ...

    def subscribe(
        self,
        *,
        stream: str = EVENTS_STREAM,
        subjects: str | Sequence[str] | None = None,
        from_seq: int = 1,
        last_per_subject: bool = False,
    ) -> AsyncIterator[Record]:
        """Yield records from ``from_seq`` on and keep following new ones.

        ``last_per_subject`` starts with the newest record of each subject instead
        (how liveness is primed from the heartbeat stream).
        """
        ...

    async def last_seq(self, stream: str = EVENTS_STREAM) -> int:
        """The last sequence stored in a stream (0 when empty)."""
        ...


class SnapshotPort(Protocol):
    """Where snapshots are kept: newest wins."""

    async def save(self, data: bytes) -> None: ...

    async def load(self) -> bytes | None: ...

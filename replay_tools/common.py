"""What every subcommand shares: the connection target, reading helpers, times, errors.

Exit codes follow ``eventsrc``: 0 ok, 1 a finding or a refused request (unknown id,
corrupt file, failed verification), 2 usage (a flag value that cannot be used),
3 NATS cannot be reached.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from eventsrc.commands import scenario
from eventsrc.commands.simulate import iso as iso
from eventsrc.errors import InvalidRequestError, StoreError
from eventsrc.ports import EVENTS_STREAM, Record, StoredEvent
from eventsrc.store import JetStreamEventStore, NatsOptions, connect_nats
from eventsrc.store.getreads import event_store
from eventsrc.store.raw import StreamState, stream_state
from eventsrc.store.snapshots import SnapshotStore


class UsageError(InvalidRequestError):
    """A flag value that cannot be used as given; the CLI exits with 2."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where the streams are: resolved NATS URLs, credentials and TLS files (built by
    the CLI)."""

    servers: tuple[str, ...]
    creds: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None


@asynccontextmanager
async def open_store(target: Target) -> AsyncIterator[JetStreamEventStore]:
    """A store on a fresh one-shot connection, closed at the end of the block.

    Raises ServerUnavailableError (one line naming the URL) when no server answers.
    """
    options = NatsOptions(
        servers=target.servers,
        name="replay_tools",
        creds=target.creds,
        tls_ca=target.tls_ca,
        tls_cert=target.tls_cert,
        tls_key=target.tls_key,
    )
    nc = await connect_nats(options, long_running=False)
    try:
        yield event_store(nc, consumers=options.may_create_consumers())
    finally:
        with contextlib.suppress(Exception):
            await nc.close()


async def require_stream(store: JetStreamEventStore, stream: str = EVENTS_STREAM) -> StreamState:
    """The state of a stream that must exist; a one-line StoreError when it does not."""
    state = await stream_state(store, stream)
    if state is None:
        raise StoreError(
            f"there is no {stream} stream on this server: nothing was recorded here yet "
            f"(check --nats-url, or start the coordinator once so it creates the streams)"
        )
    return state


def read_records(
    store: JetStreamEventStore, stream: str = EVENTS_STREAM, **options: Any
) -> contextlib.aclosing[AsyncGenerator[Record, None]]:
    """``store.read`` as a context manager, so leaving the loop early ends the consumer."""
    records = cast(AsyncGenerator[Record, None], store.read(stream=stream, **options))
    return contextlib.aclosing(records)


async def first_record(
    store: JetStreamEventStore, stream: str = EVENTS_STREAM, *, from_seq: int = 1
) -> Record | None:
    """The first stored record at or after ``from_seq``, or None for an empty range."""
    async with read_records(store, stream, from_seq=from_seq) as records:
        async for record in records:
            return record
    return None


async def load_snapshot_bytes(store: JetStreamEventStore) -> bytes | None:
    """The coordinator's stored snapshot, or None; never creates the bucket.

    (A snapshot that cannot be read is a StoreError here: a tool says so, where the
    coordinator would fall back to a full replay.)
    """
    return await SnapshotStore(store.js).read()


def parse_time(text: str, *, flag: str) -> datetime:
    """An ISO 8601 time; without a zone it is taken as UTC. Raises UsageError."""
    try:
        return scenario.parse_time(text, flag=flag)
    except InvalidRequestError as err:
        raise UsageError(str(err)) from err


def short_time(value: datetime | None) -> str:
    """A time for tables: UTC, millisecond precision."""
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def record_time(record: Record) -> datetime | None:
    """The server time of a record (undecodable records carry none)."""
    return record.time if isinstance(record, StoredEvent) else None


def jsonable(value: Any) -> Any:
    """``value`` with datetimes as ISO strings, for ``json.dumps``."""
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, dict):
        return {key: jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    return value

"""Stored messages as they are, and the facts of the streams that hold them.

For tools that copy or inspect history (``replay_tools``): the event store's ``read``
yields decoded events; a backup needs the raw bytes, the headers (``Nats-Msg-Id`` above
all) and the server time, whatever the payload is, and an import publishes them back as
they were. nats-py's errors become ours here, once, each naming what failed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy

from eventsrc.errors import ServerUnavailableError, StoreError
from eventsrc.ports import stream_filter
from eventsrc.store.jetstream import JetStreamEventStore, _map_error
from eventsrc.store.streams import StreamSettings, stream_configs

IDLE_TIMEOUT_S: Final = 10.0
BUFFER: Final = 10_000


@dataclass(frozen=True, slots=True)
class StreamState:
    """What a stream holds: message count and bytes, sequence range, deleted ones."""

    messages: int
    bytes: int
    first_seq: int
    last_seq: int
    num_deleted: int = 0


@dataclass(frozen=True, slots=True)
class RawMessage:
    """One stored message of a stream."""

    stream: str
    seq: int
    subject: str
    time: datetime
    headers: dict[str, str]
    data: bytes


@dataclass(frozen=True, slots=True)
class RawAck:
    """The server's answer to one raw publish: stored, or a duplicate of a stored id,
    or, with ``error``, why it was not stored."""

    duplicate: bool = False
    error: str | None = None


class RawPublishError(StoreError):
    """Publishing a raw batch failed at ``messages[index]``; no ack of the batch was read."""

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(
            f"publishing stopped at message {index + 1} of the batch ({reason}); publish "
            f"it again: messages already stored are deduplicated by their id"
        )
        self.index = index
        self.reason = reason


def reason_of(err: BaseException) -> str:
    """What a nats-py error says: the server's description, else its text or type."""
    return getattr(err, "description", None) or str(err) or type(err).__name__


@contextlib.contextmanager
def mapped_nats_errors(what: str = "the request") -> Iterator[None]:
    """Turn a nats-py error escaping the block into ours (one line), by the store's own
    mapping, so a tool and ``eventsrc`` report the same failure the same way."""
    try:
        yield
    except nats.errors.Error as err:
        raise _map_error(err, subject=what) from err


async def stream_state(store: JetStreamEventStore, stream: str) -> StreamState | None:
    """The stream's state, or None when the stream does not exist."""
    try:
        info = await store.js.stream_info(stream)
    except nats.js.errors.NotFoundError:
        return None
    except nats.errors.Error as err:
        raise _map_error(err, subject=f"the state of {stream}") from err
    state = info.state
    return StreamState(
        messages=state.messages,
        bytes=state.bytes,
        first_seq=state.first_seq,
        last_seq=state.last_seq,
        num_deleted=state.num_deleted or 0,
    )


async def read_raw(
    store: JetStreamEventStore, stream: str, *, last_seq: int
) -> AsyncIterator[RawMessage]:
    """Every message of ``stream`` up to ``last_seq``, in order, then stop."""
    if last_seq < 1:
        return
    queue: asyncio.Queue[Msg] = asyncio.Queue(maxsize=BUFFER)
    try:
        sub = await store.js.subscribe(
            stream_filter(stream),
            stream=stream,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.ALL,
            cb=queue.put,
            pending_msgs_limit=1_000_000,
            pending_bytes_limit=1024 * 1024 * 1024,
        )
    except nats.errors.Error as err:
        raise _map_error(err, subject=stream) from err
    try:
        while True:
            try:
                msg = await asyncio.wait_for(queue.get(), IDLE_TIMEOUT_S)
            except TimeoutError as err:
                raise ServerUnavailableError(
                    f"{stream} stopped delivering for {IDLE_TIMEOUT_S:g} s; check that NATS "
                    f"is running and try again"
                ) from err
            meta = msg.metadata
            seq = int(meta.sequence.stream)
            if seq > last_seq:
                return
            yield RawMessage(
                stream=stream,
                seq=seq,
                subject=msg.subject,
                time=meta.timestamp,
                headers=dict(msg.headers or {}),
                data=bytes(msg.data),
            )
            if seq >= last_seq or not meta.num_pending:
                return
    finally:
        with contextlib.suppress(nats.errors.Error):
            await sub.unsubscribe()


async def create_missing_streams(
    store: JetStreamEventStore, settings: StreamSettings | None = None
) -> None:
    """Create the streams that do not exist; an existing stream keeps the limits its
    coordinator gave it (unlike ``ensure_streams``)."""
    settings = settings or StreamSettings()
    for config in stream_configs(settings):
        try:
            await store.js.stream_info(str(config.name))
        except nats.js.errors.NotFoundError:
            try:
                await store.js.add_stream(config)
            except nats.errors.Error as err:
                raise _map_error(err, subject=f"creating {config.name}") from err


async def publish_raw(
    store: JetStreamEventStore, messages: Sequence[tuple[str, bytes, dict[str, str]]]
) -> list[RawAck]:
    """Publish ``(subject, data, headers)`` messages pipelined, then read each ack.

    Returns one ``RawAck`` per message, in order. Raises RawPublishError when a publish
    itself fails (then no ack of the batch is read; the error names its first message).
    """
    try:
        replies = await store.publish_pipelined(messages)
    except nats.errors.Error as err:
        raise RawPublishError(0, reason_of(err)) from err
    acks: list[RawAck] = []
    for reply in replies:
        if isinstance(reply, nats.errors.Error):
            acks.append(RawAck(error=reason_of(reply)))
            continue
        acks.append(RawAck(duplicate=reply.duplicate))
    return acks

"""Stored messages as they are (bytes and headers), for export and import.

The event store's ``read`` yields decoded events; a backup needs the raw bytes, the
headers (``Nats-Msg-Id`` above all) and the server time, whatever the payload is.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy

from eventsrc.errors import ServerUnavailableError, StoreError
from eventsrc.ports import stream_filter

IDLE_TIMEOUT_S: Final = 10.0
BUFFER: Final = 10_000


@dataclass(frozen=True, slots=True)
class RawMessage:
    """One stored message of a stream."""

    stream: str
    seq: int
    subject: str
    time: datetime
    headers: dict[str, str]
    data: bytes


def filter_of(stream: str) -> str:
    """The subject filter covering a stream of ours."""
    return stream_filter(stream)


async def read_raw(
    js: JetStreamContext, stream: str, *, last_seq: int
) -> AsyncIterator[RawMessage]:
    """Every message of ``stream`` up to ``last_seq``, in order, then stop."""
    if last_seq < 1:
        return
    queue: asyncio.Queue[Msg] = asyncio.Queue(maxsize=BUFFER)
    try:
        sub = await js.subscribe(
            filter_of(stream),
            stream=stream,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.ALL,
            cb=queue.put,
            pending_msgs_limit=1_000_000,
            pending_bytes_limit=1024 * 1024 * 1024,
        )
    except nats.errors.Error as err:
        raise StoreError(f"cannot read {stream} ({err or type(err).__name__})") from err
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

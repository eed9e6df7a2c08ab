"""Continuous delivery from a durable pull consumer (what nats.go calls ``Consume``).

nats-py 2.x only offers ``fetch``: two pull requests per call (a ``no_wait`` probe,
then a long poll), and after the first message it keeps waiting for the rest of the
batch. A worker wants each message the moment it is stored, so this keeps pull
requests outstanding on a private inbox and tops them up as messages arrive, as the
JetStream pull protocol (ADR-13) intends:

- a pull asks for ``batch`` messages, expires after ``expires_s`` and asks for idle
  heartbeats; when at most half of what was asked is still outstanding, ask again;
- ``408`` (the request expired) and ``409`` (e.g. leader change) end a request: take
  back what it did not deliver (``Nats-Pending-Messages``) and ask again;
- no message or heartbeat for two heartbeat periods (a reconnect drops the server's
  waiting requests) means start over;
- a consumer that is gone (deleted, or an ephemeral one that expired while we were
  disconnected) is reported to ``on_lost``, which may make a new one; without it the
  feed keeps asking (a durable consumer comes back when its owner recreates it).

Used by ``AssignmentFeed`` (a node's durable work consumer) and by ``OrderedPull``
(every read of the event store), so what is in flight is always bounded by what was
asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import NamedTuple

import nats.errors
import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from eventsrc.store.connection import jetstream_api

log = logging.getLogger(__name__)

OnMessage = Callable[[Msg], Awaitable[object] | None]
"""Takes one message; returns None when done with it, or what to await before the next
(a reader of millions of messages hands most over without a coroutine of its own)."""
OnLost = Callable[[], None]
OnHeartbeat = Callable[[Msg], None]

_STATUS = "Status"
_PENDING = "Nats-Pending-Messages"


class PullFeed:
    """Hands every message of ``stream``/``consumer`` to ``on_message``, one at a time,
    in delivery order; acking is the caller's."""

    def __init__(
        self,
        nc: Client,
        *,
        stream: str,
        consumer: str,
        on_message: OnMessage,
        batch: int = 32,
        expires_s: float = 30.0,
        idle_heartbeat_s: float = 5.0,
        on_lost: OnLost | None = None,
        on_heartbeat: OnHeartbeat | None = None,
    ) -> None:
        self._nc = nc
        self._on_lost = on_lost
        self._on_heartbeat = on_heartbeat
        self._next_subject = f"{jetstream_api(nc)}.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self._on_message = on_message
        self._batch = max(1, batch)
        self._expires_s = expires_s
        self._heartbeat_s = idle_heartbeat_s
        self._outstanding = 0
        self._heard = 0.0
        self._clock: Callable[[], float] = time.monotonic
        self._inbox = ""
        self._sub: Subscription | None = None
        self._watchdog: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._inbox = self._nc.new_inbox()
        self._sub = await self._nc.subscribe(self._inbox, cb=self._receive)
        self._clock = asyncio.get_running_loop().time  # looked up once, read per message
        self._heard = self._clock()
        await self._pull()
        self._watchdog = asyncio.create_task(self._watch(), name="pull-feed-watchdog")

    async def stop(self) -> None:
        """Stop asking and receiving; messages pulled but not handled are redelivered
        by JetStream after the consumer's ack wait."""
        if self._watchdog is not None:
            self._watchdog.cancel()
            await asyncio.wait([self._watchdog])
            self._watchdog = None
        if self._sub is not None:
            sub, self._sub = self._sub, None
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()

    async def _pull(self) -> None:
        want = self._batch - self._outstanding
        if want <= 0 or self._sub is None:
            return
        request = {
            "batch": want,
            "expires": int(self._expires_s * 1e9),
            "idle_heartbeat": int(self._heartbeat_s * 1e9),
        }
        try:
            await self._nc.publish(self._next_subject, orjson.dumps(request), reply=self._inbox)
        except nats.errors.Error as err:
            log.warning("asking for work failed: %s; the watchdog asks again", err)
            return
        self._outstanding += want

    async def _receive(self, msg: Msg) -> None:
        self._heard = self._clock()
        headers = msg.headers
        status = headers.get(_STATUS) if headers else None
        if status is not None:
            await self._control(msg, status)
            return
        if self._outstanding:
            self._outstanding -= 1
        if self._outstanding <= self._batch // 2:
            await self._pull()
        waiting = self._on_message(msg)
        if waiting is not None:
            await waiting

    async def _control(self, msg: Msg, status: str) -> None:
        if status == "100":
            # Idle heartbeat: the server is there. It names the last message it delivered
            # (``Nats-Last-Consumer``), for a reader that checks nothing went missing.
            if self._on_heartbeat is not None:
                self._on_heartbeat(msg)
            return
        description = (msg.headers or {}).get("Description", "").lower()
        if status == "503" or (status in ("404", "409") and "consumer" in description):
            # No such consumer (any more): only its owner can make a new one.
            self._outstanding = 0
            if self._on_lost is not None:
                self._on_lost()
                return
            await asyncio.sleep(0.5)
            await self._pull()
            return
        if status in ("404", "408", "409"):
            # The request ended; what it did not deliver is no longer outstanding.
            undelivered = int((msg.headers or {}).get(_PENDING, "0") or 0)
            self._outstanding = max(0, self._outstanding - undelivered)
            if status == "409":
                log.info("pull request ended by the server: 409 %s", description)
                if not undelivered:
                    # Not attributable to a request (e.g. consumer deleted): start over.
                    self._outstanding = 0
                    await asyncio.sleep(0.5)
            await self._pull()

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._heartbeat_s)
            if loop.time() - self._heard > 2 * self._heartbeat_s:
                # Neither messages nor heartbeats: our requests are gone (reconnect,
                # server restart). Forget them and ask afresh.
                silent = loop.time() - self._heard
                log.info("no word from consumer %s for %.0f s", self._next_subject, silent)
                self._outstanding = 0
                self._heard = loop.time()
                if self._on_lost is not None:
                    self._on_lost()  # an ephemeral consumer may have expired meanwhile
                    return
                await self._pull()


class AckReply(NamedTuple):
    """What JetStream says of a delivered message in its reply subject."""

    delivered: int
    stream_seq: int
    consumer_seq: int
    timestamp_ns: int
    pending: int


def ack_reply(msg: Msg) -> AckReply:
    """The reply subject of a JetStream delivery, read once per message.

    Split by hand: nats-py's ``msg.metadata`` builds two dataclasses and a datetime per
    message, a quarter of a replay's decode cost. v1: ``$JS.ACK.<stream>.<consumer>.
    <delivered>.<sseq>.<cseq>.<ns>.<pending>``; v2 adds domain and account hash after
    ``ACK`` (and may end with a token). Anything else nats-py parses (or refuses).
    """
    tokens = (msg.reply or "").split(".")
    base = 4 if len(tokens) == 9 else 6 if len(tokens) >= 11 else 0
    if base and tokens[0] == "$JS":
        delivered, sseq, cseq, stamp, pending = tokens[base : base + 5]
        return AckReply(int(delivered), int(sseq), int(cseq), int(stamp), int(pending))
    meta = msg.metadata
    return AckReply(
        int(meta.num_delivered or 0),
        int(meta.sequence.stream),
        int(meta.sequence.consumer),
        int(meta.timestamp.timestamp() * 1e9),
        int(meta.num_pending or 0),
    )


def delivery_count(msg: Msg) -> int:
    """How often JetStream delivered this message."""
    return ack_reply(msg).delivered

"""Ordered reads through an ephemeral pull consumer: what nats-py's ordered push
consumer does, with what is in flight bounded.

nats-py answers a push consumer's flow control as soon as messages reach the socket,
not when the callback has taken them, so a reader slower than the server (a projection
catching up on millions of events) buffers the rest of the stream in the client:
memory grows with the history, and past the subscription's pending limits messages are
dropped while the consumer believes them delivered. Here the reader asks for messages
(``PullFeed``) and gets no more than it asked for. It is kept for that bound, not for
speed: reading without decoding cost 8.2 to 8.6 µs of CPU per event against 8.2 for
nats-py's ordered push consumer with ``msg.metadata`` (docs/benchmarks.md, "Decoding");
it hands each message on without a coroutine of its own.

Like the ordered push consumer it replaces: no acks, memory storage, a new consumer
from the next stream sequence whenever the consumer sequence skips (a lost message) or
the consumer is gone (deleted, or expired during a long disconnect). A message lost
with nothing after it (delivered while the network was cut, on a quiet subject) shows
in the idle heartbeats: they name the last consumer sequence the server delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, ConsumerInfo, DeliverPolicy

from eventsrc.store.feed import AckReply, PullFeed, ack_reply

log = logging.getLogger(__name__)

Deliver = Callable[[Msg, AckReply], Awaitable[object] | None]
"""Takes a message in order; returns what to await before the next one, if anything."""

BATCH = 1000
LAST_CONSUMER_SEQ = "Nats-Last-Consumer"
"""The idle heartbeat's header with the last consumer sequence the server delivered."""
INACTIVE_THRESHOLD_S = 60.0


class OrderedPull:
    """Delivers a stream's messages (from a start, matching filters) in order, once each."""

    def __init__(
        self,
        nc: Client,
        js: JetStreamContext,
        stream: str,
        config: ConsumerConfig,
        deliver: Deliver,
        *,
        batch: int = BATCH,
    ) -> None:
        self._nc = nc
        self._js = js
        self._stream = stream
        self._config = replace(
            config,
            ack_policy=AckPolicy.NONE,
            mem_storage=True,
            inactive_threshold=INACTIVE_THRESHOLD_S,
            max_deliver=1,
        )
        self._deliver = deliver
        self._batch = batch
        self._name = ""
        self.created: ConsumerInfo | None = None
        """The consumer as created (its pending count then: what a range read expects)."""
        self._feed: PullFeed | None = None
        self._generation = 0
        self._next_consumer_seq = 1
        self._last_stream_seq = 0
        self._restarting: asyncio.Task[None] | None = None
        self._closed = False

    async def start(self) -> None:
        """Create the consumer and start asking; raises nats-py's errors."""
        await self._open(self._config)

    async def unsubscribe(self) -> None:
        """Stop and delete the consumer (it expires by itself if we cannot)."""
        self._closed = True
        if self._restarting is not None:
            self._restarting.cancel()
            await asyncio.wait([self._restarting])
        await self._close_current()

    async def _open(self, config: ConsumerConfig) -> None:
        info = await self._js.add_consumer(self._stream, config)
        self._generation += 1
        generation = self._generation
        self._name = info.name
        self.created = info
        self._next_consumer_seq = 1

        def on_message(msg: Msg) -> Awaitable[object] | None:
            if generation == self._generation:
                return self._on_message(msg)
            return None

        def on_heartbeat(msg: Msg) -> None:
            if generation == self._generation:
                self._on_heartbeat(msg)

        self._feed = PullFeed(
            self._nc,
            stream=self._stream,
            consumer=info.name,
            on_message=on_message,
            batch=self._batch,
            on_lost=self._restart_soon,
            on_heartbeat=on_heartbeat,
        )
        await self._feed.start()

    def _on_message(self, msg: Msg) -> Awaitable[object] | None:
        # Not a coroutine: the feed awaits only what delivery returns, if anything (no
        # coroutine per message on a path that runs millions of times in a rebuild).
        ack = ack_reply(msg)  # read once; the reader gets it along with the message
        if ack.consumer_seq != self._next_consumer_seq:
            log.info("ordered read of %s skipped a message; resuming", self._stream)
            self._restart_soon()
            return None
        self._next_consumer_seq += 1
        self._last_stream_seq = ack.stream_seq
        return self._deliver(msg, ack)

    def _on_heartbeat(self, msg: Msg) -> None:
        # Heartbeats come on the same subscription as the messages, after them: a last
        # delivered sequence at or past the one we wait for is a message that never came.
        last = (msg.headers or {}).get(LAST_CONSUMER_SEQ)
        if last is not None and last.isdigit() and int(last) >= self._next_consumer_seq:
            log.info("ordered read of %s lost message %s in transit; resuming", self._stream, last)
            self._restart_soon()

    def _restart_soon(self) -> None:
        """From a callback of the feed: start over in a task of its own (stopping the
        feed cancels the task its callbacks run in)."""
        if self._closed or (self._restarting is not None and not self._restarting.done()):
            return
        self._generation += 1  # the old feed's messages are ignored from now on
        self._restarting = asyncio.create_task(self._restart(), name="ordered-pull-restart")

    async def _restart(self) -> None:
        await self._close_current()
        config = self._config
        if self._last_stream_seq:
            config = replace(
                config,
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=self._last_stream_seq + 1,
                opt_start_time=None,
            )
        delay = 0.2
        while not self._closed:
            try:
                await self._open(config)
                return
            except (nats.errors.Error, TimeoutError) as err:
                log.info("cannot resume the ordered read of %s yet: %s", self._stream, err)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _close_current(self) -> None:
        feed, self._feed = self._feed, None
        if feed is not None:
            await feed.stop()
        if self._name:
            with contextlib.suppress(nats.errors.Error, TimeoutError):
                await self._js.delete_consumer(self._stream, self._name)

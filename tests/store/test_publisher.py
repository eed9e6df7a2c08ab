"""Pipelined requests over one inbox: a long batch answered steadily ends without a
timeout, however long it takes in all; a batch nobody answers still ends in time."""

from __future__ import annotations

import asyncio
import time

import nats
import nats.errors
from nats.aio.msg import Msg

from eventsrc.store.publisher import Requester
from tests.conftest import MakeServer

TIMEOUT = 0.5
REPLY_EVERY = 0.05  # well inside TIMEOUT each, but the batch takes twice TIMEOUT in all
COUNT = 20


async def test_a_batch_answered_steadily_gets_every_reply_however_long_in_all(
    make_server: MakeServer,
) -> None:
    server = make_server()
    assert server.url is not None
    responder = await nats.connect(server.url)
    client = await nats.connect(server.url)
    queue: asyncio.Queue[Msg] = asyncio.Queue()

    async def answer() -> None:
        while True:
            msg = await queue.get()
            await asyncio.sleep(REPLY_EVERY)  # a server storing one message at a time
            await msg.respond(msg.data)

    async def take(msg: Msg) -> None:
        await queue.put(msg)

    answering = asyncio.create_task(answer())
    try:
        await responder.subscribe("slow.echo", cb=take)
        await responder.flush()
        requests = Requester(client, timeout=TIMEOUT)
        started = time.monotonic()
        replies = await requests.request_many(
            [("slow.echo", str(i).encode(), None) for i in range(COUNT)]
        )
        took = time.monotonic() - started
        assert took > 2 * TIMEOUT  # longer than one timeout in all: the tail counts
        errors = [r for r in replies if isinstance(r, nats.errors.Error)]
        assert not errors, f"{len(errors)} of {COUNT} failed after {took:.2f}s: {errors[0]!r}"
        assert [r.data for r in replies if isinstance(r, Msg)] == [
            str(i).encode() for i in range(COUNT)
        ]
    finally:
        answering.cancel()
        await client.close()
        await responder.close()


async def test_a_batch_nobody_answers_ends_within_its_timeout(make_server: MakeServer) -> None:
    server = make_server()
    assert server.url is not None
    silent = await nats.connect(server.url)
    client = await nats.connect(server.url)
    try:

        async def ignore(msg: Msg) -> None:
            del msg

        await silent.subscribe("silent.echo", cb=ignore)
        await silent.flush()
        started = time.monotonic()
        replies = await Requester(client, timeout=TIMEOUT).request_many(
            [("silent.echo", b"x", None)] * COUNT
        )
        took = time.monotonic() - started
        assert all(isinstance(r, nats.errors.TimeoutError) for r in replies), replies
        assert took < TIMEOUT + 0.5, took
    finally:
        await client.close()
        await silent.close()

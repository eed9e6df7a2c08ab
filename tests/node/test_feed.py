"""The node's pull feed: messages arrive while requests expire, and after a restart."""

from __future__ import annotations

import asyncio

import nats
import nats.errors
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig

from eventsrc.store.feed import PullFeed, delivery_count
from tests.conftest import MakeServer
from tests.waiting import until, until_awaited

STREAM = "FEEDTEST"


async def _setup(url: str) -> None:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await js.add_stream(StreamConfig(name=STREAM, subjects=["feed.>"]))
        await js.add_consumer(
            STREAM, ConsumerConfig(durable_name="worker", ack_policy=AckPolicy.EXPLICIT)
        )
    finally:
        await nc.close()


async def test_messages_arrive_across_expired_requests_and_a_server_restart(
    make_server: MakeServer,
) -> None:
    server = make_server()
    assert server.url is not None and server.port is not None
    await _setup(server.url)
    got: list[bytes] = []
    counts: list[int] = []

    async def handle(msg: Msg) -> None:
        got.append(msg.data)
        counts.append(delivery_count(msg))
        await msg.ack()

    nc = await nats.connect(server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    publisher = await nats.connect(server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    feed = PullFeed(
        nc,
        stream=STREAM,
        consumer="worker",
        on_message=handle,
        batch=4,
        expires_s=0.6,
        idle_heartbeat_s=0.2,
    )
    try:
        await feed.start()
        js = publisher.jetstream()
        for index in range(10):  # more than one batch
            await js.publish("feed.a", f"m{index}".encode())
        await until(lambda: len(got) == 10, "the first ten messages", timeout=10)
        # Time passing is the point here, not a wait for something: with requests that
        # expire after 0.6 s, several expire unanswered in these 2 s.
        await asyncio.sleep(2.0)
        await js.publish("feed.a", b"late")
        await until(lambda: b"late" in got, "a message after expired requests", timeout=10)

        data_dir, port = server.data_dir, server.port
        server.stop()
        restarted = make_server(data_dir, port=port)
        assert restarted.url is not None

        # A publish into the old socket is lost: retry until the new connection acks.
        async def published() -> bool:
            try:
                await publisher.jetstream().publish("feed.a", b"after restart", timeout=0.5)
            except nats.errors.Error:
                return False
            return True

        await until_awaited(published, "a publish acked after the restart", 30, 0.1)
        await until(lambda: b"after restart" in got, "a message after the restart", timeout=15)
    finally:
        await feed.stop()
        await nc.close()
        await publisher.close()
    assert got[:10] == [f"m{index}".encode() for index in range(10)]
    assert set(counts) == {1}

"""How the leader looks at a bounded events stream before it accepts new tasks: once
before its first submission, and close to the limit one look shared by the submissions
that want it at the same time (counted as the stream info requests nats-server gets)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from eventsrc.coordinator.room import FRESH_FOR_S, StoreRoom
from eventsrc.errors import StoreFullError
from eventsrc.events import NodeJoined
from eventsrc.ports import EVENTS_STREAM
from eventsrc.runner import ProjectionRunner
from eventsrc.store import JetStreamEventStore, StreamSettings
from eventsrc.store.connection import jetstream_api
from tests.conftest import MakeServer
from tests.factories import envelope

LIMIT = 64 * 1024
CONCURRENT = 50


@dataclass
class Stream:
    nc: Client
    store: JetStreamEventStore
    runner: ProjectionRunner
    spy: Client
    infos: list[Msg]

    async def looks(self) -> int:
        """Stream info requests on the events stream the server got so far."""
        await self.nc.flush()
        await self.spy.flush()
        return len(self.infos)


async def _joined(store: JetStreamEventStore, count: int, first: int) -> None:
    await store.append_many(
        [
            NodeJoined(**envelope(f"node:n{i}"), node_id=f"n{i}", incarnation="i1", capacity=1)
            for i in range(first, first + count)
        ]
    )


@pytest.fixture
async def stream(make_server: MakeServer, request: pytest.FixtureRequest) -> AsyncIterator[Stream]:
    """A bounded events stream filled to ``request.param`` of its limit, projected."""
    server = make_server()
    assert server.url is not None
    nc = await nats.connect(server.url)
    spy = await nats.connect(server.url)
    infos: list[Msg] = []

    async def seen(msg: Msg) -> None:
        infos.append(msg)

    await spy.subscribe(f"{jetstream_api(nc)}.STREAM.INFO.{EVENTS_STREAM}", cb=seen)
    await spy.flush()
    store = JetStreamEventStore(nc, settings=StreamSettings(events_max_bytes=LIMIT))
    try:
        await store.ensure_streams()
        filled = 0
        while (used := (await store.fill()).used_bytes) < LIMIT * request.param:
            # One event at a time close to the target, so the fill stops short of full.
            step = 10 if used < LIMIT * (request.param - 0.05) else 1
            await _joined(store, step, filled)
            filled += step
        async with ProjectionRunner(store, follow_heartbeats=False) as runner:
            await runner.wait_for(await store.last_seq())
            infos.clear()
            yield Stream(nc, store, runner, spy, infos)
    finally:
        await spy.close()
        await nc.close()


@pytest.mark.parametrize("stream", [0.97], indirect=True)
async def test_a_new_leader_looks_before_its_first_submission(stream: Stream) -> None:
    room = StoreRoom(stream.store, stream.runner)  # never looked: a leader just elected
    with pytest.raises(StoreFullError, match="no room for a new task"):
        await room.check()
    assert await stream.looks() == 1


@pytest.mark.parametrize("stream", [0.2], indirect=True)
async def test_a_first_submission_with_room_is_accepted_after_one_look(stream: Stream) -> None:
    room = StoreRoom(stream.store, stream.runner)
    await room.check()
    await room.check()  # far from the limit: the first look serves
    assert await stream.looks() == 1


@pytest.mark.parametrize("stream", [0.97], indirect=True)
async def test_submissions_close_to_the_limit_share_one_look(stream: Stream) -> None:
    room = StoreRoom(stream.store, stream.runner)
    await room.look()  # the leader's look of the second
    await asyncio.sleep(2 * FRESH_FOR_S)  # stale now: a submission looks again
    before = await stream.looks()

    refused = await asyncio.gather(
        *(room.check() for _ in range(CONCURRENT)), return_exceptions=True
    )
    assert all(isinstance(r, StoreFullError) for r in refused), refused
    assert await stream.looks() - before == 1  # not one per submission

    # One after another: a look is fresh for FRESH_FOR_S, so at most one per that.
    before = await stream.looks()
    started = time.monotonic()
    for _ in range(100):
        with pytest.raises(StoreFullError):
            await room.check()
        await asyncio.sleep(FRESH_FOR_S / 10)
    took = time.monotonic() - started
    looked = await stream.looks() - before
    assert 1 <= looked <= took / FRESH_FOR_S + 1, (looked, took)
    assert looked < 50, (looked, took)
    print(f"{CONCURRENT} at once: 1 look; 100 in a row over {took:.2f}s: {looked} looks")


@pytest.mark.parametrize("stream", [0.6], indirect=True)
async def test_a_caller_that_gives_up_does_not_cancel_the_others_look(stream: Stream) -> None:
    room = StoreRoom(stream.store, stream.runner)
    await room.look()
    await asyncio.sleep(2 * FRESH_FOR_S)
    first = asyncio.create_task(room.check())
    second = asyncio.create_task(room.check())
    await asyncio.sleep(0)  # both wait on the one look now
    first.cancel()
    await second  # accepted: 60% used, the look went on
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await stream.looks() == 2


@pytest.mark.parametrize("stream", [0.91], indirect=True)
async def test_a_batch_refused_for_its_size_leaves_single_tasks_accepted(stream: Stream) -> None:
    # One task fits, within 2% of the limit: where a stream that refused one task
    # would go on refusing (it takes tasks again only 2% below its limit).
    room = StoreRoom(stream.store, stream.runner)
    await room.check()
    with pytest.raises(StoreFullError, match="no room for 1,000 new tasks"):
        await room.check(1_000)
    await room.check()  # the stream is no fuller: one task still fits, and is taken

"""The JetStream event store against a real nats-server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import nats
import pytest
from nats.aio.client import Client

from eventsrc.errors import (
    ConcurrencyError,
    DuplicateEventError,
    PayloadTooLargeError,
    ServerUnavailableError,
    StoreFullError,
    UndecodableEventError,
)
from eventsrc.events import Event, Heartbeat, TaskSpec, TaskStarted, TaskSubmitted, new_event_id
from eventsrc.store import (
    EVENTS_STREAM,
    HEARTBEATS_STREAM,
    OUTPUT_STREAM,
    JetStreamEventStore,
    NatsOptions,
    StoredEvent,
    StreamSettings,
    connect_nats,
)
from tests.conftest import MakeServer
from tests.factories import T0, envelope, one_of_each


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[Client]:
    client = await nats.connect(nats_url)
    yield client
    await client.close()


@pytest.fixture
async def store(nc: Client) -> JetStreamEventStore:
    store = JetStreamEventStore(nc)
    await store.ensure_streams()
    return store


def submitted(task_id: str) -> TaskSubmitted:
    return TaskSubmitted(
        **envelope("coordinator", epoch=1),
        task_id=task_id,
        spec=TaskSpec(skills=("python",)),
        queue_deadline=T0,
    )


def started(task_id: str, node_id: str = "n1") -> TaskStarted:
    return TaskStarted(**envelope(f"node:{node_id}"), task_id=task_id, node_id=node_id, attempt=1)


async def collect(iterator: AsyncIterator[object]) -> list[object]:
    return [item async for item in iterator]


async def test_every_event_type_round_trips_through_the_stream(
    store: JetStreamEventStore,
) -> None:
    events = one_of_each(task_id="roundtrip", node_id="rt-node", skill="rt-skill")
    first = await store.last_seq(EVENTS_STREAM) + 1
    hb_first = await store.last_seq(HEARTBEATS_STREAM) + 1
    out_first = await store.last_seq(OUTPUT_STREAM) + 1
    for event in events:
        await store.append(event)
    stored = await collect(store.read(from_seq=first))
    stored += await collect(store.read(stream=HEARTBEATS_STREAM, from_seq=hb_first))
    stored += await collect(store.read(stream=OUTPUT_STREAM, from_seq=out_first))
    assert all(isinstance(item, StoredEvent) for item in stored)
    by_id = {item.event.event_id: item for item in stored if isinstance(item, StoredEvent)}
    for event in events:
        assert by_id[event.event_id].event == event
        assert by_id[event.event_id].subject == event.subject


async def test_streams_are_created_idempotently(nc: Client) -> None:
    await JetStreamEventStore(nc).ensure_streams()
    await JetStreamEventStore(nc).ensure_streams()
    names = {info.config.name for info in await nc.jetstream().streams_info()}
    assert {EVENTS_STREAM, HEARTBEATS_STREAM} <= names


async def test_changed_limits_update_the_stream(nc: Client) -> None:
    settings = StreamSettings(heartbeats_max_per_node=7)
    await JetStreamEventStore(nc, settings=settings).ensure_streams()
    info = await nc.jetstream().stream_info(HEARTBEATS_STREAM)
    assert info.config.max_msgs_per_subject == 7
    await JetStreamEventStore(nc).ensure_streams()


async def test_a_retried_publish_is_stored_once(store: JetStreamEventStore) -> None:
    event = submitted("dedup-1")
    seq = await store.append(event)
    with pytest.raises(DuplicateEventError) as caught:
        await store.append(event)
    assert caught.value.seq == seq
    items = await collect(store.read(subjects="evt.task.dedup-1.>"))
    assert len(items) == 1


async def test_append_many_is_idempotent_too(store: JetStreamEventStore) -> None:
    events = [submitted(f"many-{i}") for i in range(50)]
    seqs = await store.append_many(events)
    assert seqs == sorted(seqs) and len(set(seqs)) == 50
    assert await store.append_many(events) == seqs


async def test_racing_writers_one_wins_one_conflicts(store: JetStreamEventStore) -> None:
    first = await store.append(submitted("race-1"), expected_seq=0)
    contenders = [started("race-1", "n1"), started("race-1", "n2")]
    results = await asyncio.gather(
        *(store.append(event, expected_seq=first) for event in contenders),
        return_exceptions=True,
    )
    winners = [r for r in results if isinstance(r, int)]
    losers = [r for r in results if isinstance(r, ConcurrencyError)]
    assert len(winners) == 1 and len(losers) == 1
    assert "evt.task.race-1.>" in str(losers[0])


async def test_a_new_aggregate_expects_sequence_zero(store: JetStreamEventStore) -> None:
    await store.append(submitted("new-1"), expected_seq=0)
    with pytest.raises(ConcurrencyError):
        await store.append(submitted("new-1"), expected_seq=0)


async def test_foreign_bytes_are_reported_and_reading_goes_on(
    store: JetStreamEventStore, nc: Client
) -> None:
    before = submitted("poison-a")
    after = submitted("poison-b")
    first = await store.append(before)
    await nc.jetstream().publish("evt.task.poison.lifecycle", b"\x00not json")
    await store.append(after)
    items = await collect(store.read(from_seq=first))
    assert [type(item) for item in items] == [StoredEvent, UndecodableEventError, StoredEvent]
    poison = items[1]
    assert isinstance(poison, UndecodableEventError)
    assert poison.seq == first + 1 and poison.raw == b"\x00not json"
    assert isinstance(items[2], StoredEvent) and items[2].event == after


async def test_read_ranges_by_sequence_subject_and_time(store: JetStreamEventStore) -> None:
    seqs = [await store.append(submitted(f"range-{i}")) for i in range(5)]
    middle = await collect(store.read(from_seq=seqs[1], until_seq=seqs[3]))
    assert [item.seq for item in middle] == seqs[1:4]  # type: ignore[attr-defined]
    one = await collect(store.read(subjects=["evt.task.range-2.>", "evt.task.range-4.>"]))
    assert [item.seq for item in one] == [seqs[2], seqs[4]]  # type: ignore[attr-defined]
    assert await collect(store.read(subjects="evt.task.no-such-task.>")) == []
    assert await collect(store.read(from_seq=seqs[-1] + 100)) == []
    stamps = [item.time for item in middle]  # type: ignore[attr-defined]
    until = await collect(store.read(from_seq=seqs[0], until_time=stamps[0]))
    assert until and all(item.time <= stamps[0] for item in until)  # type: ignore[attr-defined]
    since = await collect(store.read(from_time=stamps[-1] + timedelta(microseconds=1)))
    assert all(item.seq > seqs[3] for item in since)  # type: ignore[attr-defined]


async def test_subscribe_follows_new_events(store: JetStreamEventStore) -> None:
    start = await store.last_seq() + 1
    seen: list[str] = []

    async def follow() -> None:
        filters = [f"evt.task.follow-{i}.>" for i in range(3)]
        async for item in store.subscribe(from_seq=start, subjects=filters):
            assert isinstance(item, StoredEvent)
            seen.append(item.event.task_id)  # type: ignore[union-attr]
            if len(seen) == 3:
                return

    follower = asyncio.create_task(follow())
    for i in range(3):
        await store.append(submitted(f"follow-{i}"))
    await asyncio.wait_for(follower, timeout=10)
    assert seen == ["follow-0", "follow-1", "follow-2"]


async def test_heartbeats_go_to_their_own_bounded_stream(store: JetStreamEventStore) -> None:
    hb = Heartbeat(**envelope("node:hb-n"), node_id="hb-n")
    seq = await store.append(hb)
    items = await collect(store.read(stream=HEARTBEATS_STREAM, subjects="hb.hb-n"))
    assert [item.seq for item in items] == [seq]  # type: ignore[attr-defined]


async def test_oversized_event_is_refused_clearly(store: JetStreamEventStore) -> None:
    big = TaskSubmitted(
        **envelope("coordinator"),
        task_id="big-1",
        queue_deadline=T0,
        spec=TaskSpec(skills=("python",), payload="x" * 2_000_000),
    )
    with pytest.raises(PayloadTooLargeError, match="max payload"):
        await store.append(big)


async def test_a_full_store_refuses_and_keeps_what_it_has(
    small_store: JetStreamEventStore,
) -> None:
    kept: list[int] = []
    with pytest.raises(StoreFullError, match="full"):
        for i in range(200):
            kept.append(await small_store.append(submitted(f"full-{i}")))
    assert kept, "the stream accepted nothing at all"
    stored = await collect(small_store.read())
    assert [item.seq for item in stored] == kept  # type: ignore[attr-defined]


async def test_pipelined_appends_to_a_full_store_end_with_its_error(
    small_store: JetStreamEventStore,
) -> None:
    """Each refused ack resolves its append: nats-py 2.16's ``publish_async`` would leave
    them pending forever (its reply callback raises the JetStream error)."""
    async with asyncio.timeout(10):
        with pytest.raises(StoreFullError, match="full"):
            await small_store.append_many([submitted(f"many-{i}") for i in range(100)])
    stored = await collect(small_store.read())
    assert 0 < len(stored) < 100


async def test_events_survive_a_server_restart(make_server: MakeServer) -> None:
    server = make_server()
    assert server.url is not None
    client = await nats.connect(server.url)
    store = JetStreamEventStore(client)
    await store.ensure_streams()
    events = [submitted(f"durable-{i}") for i in range(10)]
    await store.append_many(events)
    await client.close()
    server.restart()
    assert server.url is not None
    client = await nats.connect(server.url)
    try:
        items = await collect(JetStreamEventStore(client).read())
        assert [item.event for item in items] == events  # type: ignore[attr-defined]
    finally:
        await client.close()


async def test_a_dead_server_is_a_one_line_error(make_server: MakeServer) -> None:
    server = make_server()
    url = server.url
    assert url is not None
    server.stop()
    with pytest.raises(ServerUnavailableError) as caught:
        await connect_nats(NatsOptions(servers=(url,)), long_running=False, connect_timeout=1)
    assert url in str(caught.value) and "\n" not in str(caught.value)


async def test_reading_fresh_ids_means_unique_event_ids() -> None:
    assert len({new_event_id() for _ in range(10_000)}) == 10_000


async def test_position_parsing_matches_nats_py(store: JetStreamEventStore, nc: Client) -> None:
    from eventsrc.store.feed import ack_reply

    seq = await store.append(submitted("position-1"))
    sub = await nc.jetstream().pull_subscribe("evt.task.position-1.>", stream=EVENTS_STREAM)
    try:
        (msg,) = await sub.fetch(1, timeout=5)
    finally:
        await sub.unsubscribe()
    meta = msg.metadata
    ack = ack_reply(msg)
    stamp = datetime.fromtimestamp(ack.timestamp_ns / 1e9, UTC)
    assert (ack.stream_seq, ack.pending, stamp) == (seq, meta.num_pending, meta.timestamp)
    assert (ack.delivered, ack.consumer_seq) == (meta.num_delivered, meta.sequence.consumer)
    assert meta.sequence.stream == seq


async def test_a_follower_takes_its_own_stores_appends_without_decoding_them(
    store: JetStreamEventStore, nc: Client
) -> None:
    start = await store.last_seq(EVENTS_STREAM) + 1
    follower = aiter(store.subscribe(from_seq=start))
    first = asyncio.ensure_future(anext(follower))
    await asyncio.sleep(0.2)  # the follower's consumer exists before anything is appended
    mine: list[Event] = [submitted("own-1"), started("own-1")]
    seq = await store.append(mine[0], expected_seq=0)
    others = JetStreamEventStore(nc)
    theirs = started("own-2")
    await others.append(theirs)
    guarded = await store.append_guarded([mine[1], submitted("own-1")], [seq, 0])
    assert isinstance(guarded[1], ConcurrencyError)  # refused: never delivered
    got = [await first, await anext(follower), await anext(follower)]
    await follower.aclose()  # type: ignore[attr-defined]
    events = [r.event for r in got if isinstance(r, StoredEvent)]
    # The very objects appended by this store; another store's event decoded; both equal
    # what a fresh read decodes from the stored bytes.
    assert events[0] is mine[0] and events[2] is mine[1]
    assert events[1] is not theirs and events[1] == theirs
    read = [
        r.event for r in await collect(store.read(from_seq=start)) if isinstance(r, StoredEvent)
    ]
    assert read == events
    assert store._appending == {}  # delivered or refused: nothing kept

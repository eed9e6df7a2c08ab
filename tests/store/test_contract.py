"""One contract for every event store: the in-memory one, the JetStream one, and the
consumer-less JetStream reader of restricted roles (each against a real nats-server).

Every test gets empty streams, so sequences are exact: 1, 2, 3, ...
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

import nats
import nats.js.errors
import pytest

from eventsrc.errors import (
    ConcurrencyError,
    DuplicateEventError,
    PayloadTooLargeError,
    UndecodableEventError,
)
from eventsrc.events import Event, Heartbeat, TaskOutput, TaskSpec, TaskStarted, TaskSubmitted
from eventsrc.events.subjects import subject_matches
from eventsrc.ports import (
    EVENTS_STREAM,
    HEARTBEATS_STREAM,
    OUTPUT_STREAM,
    EventStore,
    Record,
    StoredEvent,
)
from eventsrc.store import JetStreamEventStore
from eventsrc.store.getreads import ConsumerlessEventStore
from tests.factories import T0, envelope, one_of_each
from tests.memory_store import MemoryEventStore

STORES = ["memory", "jetstream", "consumerless"]


@dataclass
class Backend:
    name: str
    store: EventStore
    put_raw: Callable[[str, bytes], Awaitable[int]]


@pytest.fixture(params=STORES)
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    if request.param == "memory":
        memory = MemoryEventStore()

        async def put_memory(subject: str, data: bytes) -> int:
            return memory.put_raw(subject, data)

        yield Backend("memory", memory, put_memory)
        return
    nc = await nats.connect(request.getfixturevalue("nats_url"))
    try:
        js = nc.jetstream()
        for stream in (EVENTS_STREAM, HEARTBEATS_STREAM, OUTPUT_STREAM):
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await js.delete_stream(stream)
        await JetStreamEventStore(nc).ensure_streams()
        kind = JetStreamEventStore if request.param == "jetstream" else ConsumerlessEventStore

        async def put_nats(subject: str, data: bytes) -> int:
            return (await js.publish(subject, data)).seq

        yield Backend(request.param, kind(nc), put_nats)
    finally:
        await nc.close()


def submitted(task_id: str) -> TaskSubmitted:
    return TaskSubmitted(
        **envelope("coordinator", epoch=1),
        task_id=task_id,
        spec=TaskSpec(skills=("python",)),
        queue_deadline=T0,
    )


def started(task_id: str, node_id: str = "n1") -> TaskStarted:
    return TaskStarted(**envelope(f"node:{node_id}"), task_id=task_id, node_id=node_id, attempt=1)


def heartbeat(node_id: str, cpu: float = 0.0) -> Heartbeat:
    return Heartbeat(**envelope(f"node:{node_id}"), node_id=node_id, cpu_percent=cpu)


async def collect(records: AsyncIterator[Record]) -> list[Record]:
    return [record async for record in records]


def seqs(records: list[Record]) -> list[int]:
    return [record.seq for record in records]


def events(records: list[Record]) -> list[Event]:
    assert all(isinstance(r, StoredEvent) for r in records), records
    return [r.event for r in records if isinstance(r, StoredEvent)]


async def take(records: AsyncIterator[Record], count: int) -> list[Record]:
    """The first ``count`` records of a subscription, which is then closed."""
    taken: list[Record] = []
    try:
        async with asyncio.timeout(10):
            async for record in records:
                taken.append(record)
                if len(taken) == count:
                    break
    finally:
        await records.aclose()  # type: ignore[attr-defined]
    return taken


async def test_sequences_count_from_one_per_stream(backend: Backend) -> None:
    store = backend.store
    assert (await store.last_seq(), await store.last_seq(HEARTBEATS_STREAM)) == (0, 0)
    assert [await store.append(submitted(f"t{i}")) for i in range(3)] == [1, 2, 3]
    assert await store.append(heartbeat("n1")) == 1
    assert (await store.last_seq(), await store.last_seq(HEARTBEATS_STREAM)) == (3, 1)


async def test_every_event_type_round_trips_to_its_stream(backend: Backend) -> None:
    sent = one_of_each()
    for event in sent:
        await backend.store.append(event)
    stored = await collect(backend.store.read())
    beats = await collect(backend.store.read(stream=HEARTBEATS_STREAM))
    output = await collect(backend.store.read(stream=OUTPUT_STREAM))
    soft = (Heartbeat, TaskOutput)
    assert events(stored) == [e for e in sent if not isinstance(e, soft)]
    assert events(beats) == [e for e in sent if isinstance(e, Heartbeat)]
    assert events(output) == [e for e in sent if isinstance(e, TaskOutput)]
    assert [r.subject for r in stored if isinstance(r, StoredEvent)] == [
        e.subject for e in sent if not isinstance(e, soft)
    ]
    times = [r.time for r in stored if isinstance(r, StoredEvent)]
    assert times == sorted(times)


async def test_a_new_aggregate_expects_sequence_zero_once(backend: Backend) -> None:
    assert await backend.store.append(submitted("a"), expected_seq=0) == 1
    with pytest.raises(ConcurrencyError) as caught:
        await backend.store.append(started("a"), expected_seq=0)
    assert (caught.value.subject, caught.value.expected_seq) == ("evt.task.a.>", 0)


async def test_the_expected_sequence_is_that_of_the_aggregate_not_the_stream(
    backend: Backend,
) -> None:
    store = backend.store
    first = await store.append(submitted("a"), expected_seq=0)
    await store.append(submitted("b"), expected_seq=0)
    # A node's subject (.from.n1) belongs to the task's aggregate (evt.task.a.>).
    assert await store.append(started("a"), expected_seq=first) == 3
    with pytest.raises(ConcurrencyError, match=r"^conflict on evt\.task\.a\.>: expected"):
        await store.append(started("a", "n2"), expected_seq=first)
    assert await store.append(started("b"), expected_seq=2) == 4


async def test_one_of_two_racing_writers_wins(backend: Backend) -> None:
    first = await backend.store.append(submitted("race"), expected_seq=0)
    results = await asyncio.gather(
        *(backend.store.append(started("race", n), expected_seq=first) for n in ("n1", "n2")),
        return_exceptions=True,
    )
    assert sorted(type(r).__name__ for r in results) == ["ConcurrencyError", "int"]


async def test_an_event_id_is_stored_once(backend: Backend) -> None:
    event = submitted("dup")
    assert await backend.store.append(event) == 1
    with pytest.raises(DuplicateEventError) as caught:
        await backend.store.append(event)
    assert (caught.value.event_id, caught.value.seq) == (event.event_id, 1)
    assert seqs(await collect(backend.store.read())) == [1]


async def test_a_retried_conditional_append_conflicts_before_it_deduplicates(
    backend: Backend,
) -> None:
    event = submitted("retry")
    await backend.store.append(event, expected_seq=0)
    with pytest.raises(ConcurrencyError):
        await backend.store.append(event, expected_seq=0)
    with pytest.raises(DuplicateEventError):
        await backend.store.append(event, expected_seq=1)


async def test_append_many_keeps_order_and_is_idempotent(backend: Backend) -> None:
    batch = [submitted(f"m{i}") for i in range(20)]
    assert await backend.store.append_many(batch) == list(range(1, 21))
    assert await backend.store.append_many(batch) == list(range(1, 21))
    assert await backend.store.last_seq() == 20


async def test_append_batch_stores_all_or_nothing_guards_against_the_stream_before_it(
    backend: Backend,
) -> None:
    store = backend.store
    batch: list[Event] = [submitted("b1"), started("b1"), submitted("b2")]
    assert await store.append_batch(batch, [0, None, 0]) == 3
    # b3 is new, b1 is not at 0: nothing of the batch is stored.
    late: list[Event] = [submitted("b3"), started("b1", "n2")]
    with pytest.raises(ConcurrencyError):
        await store.append_batch(late, [0, 0])
    # A retried batch (its ids stored) is refused as a conflict too.
    with pytest.raises(ConcurrencyError):
        await store.append_batch(batch[2:], [None])
    assert await store.last_seq() == 3
    assert await store.append_batch(late, [0, 2]) == 5


async def test_append_guarded_checks_each_event_in_one_pipelined_call(backend: Backend) -> None:
    store = backend.store
    first, second = submitted("g1"), submitted("g2")
    assert await store.append_guarded([first, second], [0, 0]) == [1, 2]
    third, late, again = submitted("g3"), started("g1"), submitted("g4")
    outcomes = await store.append_guarded([third, late, first, again], [0, 0, 0, None])
    assert outcomes[0] == 3 and outcomes[3] == 4
    assert isinstance(outcomes[1], ConcurrencyError)  # g1 is at 1, not 0
    assert isinstance(outcomes[2], ConcurrencyError | DuplicateEventError)
    assert await store.append_guarded([late], [1]) == [5]
    assert await store.last_seq() == 5


async def test_reads_by_sequence_range_and_subjects(backend: Backend) -> None:
    store = backend.store
    for i in range(5):
        await store.append(submitted(f"r{i}"))
    await store.append(started("r2"))
    assert seqs(await collect(store.read(from_seq=2, until_seq=4))) == [2, 3, 4]
    assert seqs(await collect(store.read(subjects="evt.task.r2.>"))) == [3, 6]
    assert seqs(await collect(store.read(subjects=["evt.task.r4.>", "evt.task.r0.>"]))) == [1, 5]
    assert seqs(await collect(store.read(subjects="evt.task.*.from.*"))) == [6]
    assert seqs(await collect(store.read(subjects="evt.task.none.>"))) == []
    assert seqs(await collect(store.read(from_seq=7))) == []
    assert seqs(await collect(store.read(until_seq=0))) == []


async def test_reads_by_time(backend: Backend) -> None:
    store = backend.store
    for i in range(3):
        await store.append(submitted(f"w{i}"))
    times = [r.time for r in await collect(store.read()) if isinstance(r, StoredEvent)]
    # Stored times never decrease; two events may share one.
    assert len(times) == 3 and times == sorted(times)
    # A read from a stored event's time includes that event.
    assert seqs(await collect(store.read(from_time=times[2])))[-1:] == [3]
    assert seqs(await collect(store.read(from_time=times[0]))) == [1, 2, 3]
    assert seqs(await collect(store.read(until_time=times[0])))[:1] == [1]
    assert 3 not in seqs(await collect(store.read(until_time=times[2] - timedelta(microseconds=1))))
    assert await collect(store.read(from_time=times[2] + timedelta(seconds=1))) == []


async def test_foreign_bytes_are_reported_and_reading_goes_on(backend: Backend) -> None:
    await backend.store.append(submitted("p1"))
    await backend.put_raw("evt.task.p.lifecycle", b"\x00not json")
    await backend.store.append(submitted("p2"))
    records = await collect(backend.store.read())
    assert [type(r) for r in records] == [StoredEvent, UndecodableEventError, StoredEvent]
    poison = records[1]
    assert isinstance(poison, UndecodableEventError)
    assert (poison.seq, poison.subject, poison.raw) == (2, "evt.task.p.lifecycle", b"\x00not json")
    assert poison.time is not None


async def test_the_last_record_of_a_read_has_nothing_pending(backend: Backend) -> None:
    for i in range(3):
        await backend.store.append(submitted(f"q{i}"))
    records = await collect(backend.store.read())
    assert records[-1].pending == 0  # type: ignore[union-attr]


async def test_a_subscription_replays_then_follows(backend: Backend) -> None:
    store = backend.store
    await store.append(submitted("f0"))
    await store.append(submitted("other"))
    subscription = store.subscribe(subjects=["evt.task.f0.>", "evt.task.f1.>"], from_seq=1)
    follower = asyncio.create_task(take(subscription, 3))
    await store.append(submitted("f1"))
    await store.append(started("f0"))
    records = await follower
    assert seqs(records) == [1, 3, 4]
    assert [type(e).__name__ for e in events(records)] == [
        "TaskSubmitted",
        "TaskSubmitted",
        "TaskStarted",
    ]


async def test_a_subscription_from_a_later_sequence_skips_the_earlier_ones(
    backend: Backend,
) -> None:
    store = backend.store
    for i in range(3):
        await store.append(submitted(f"s{i}"))
    follower = asyncio.create_task(take(store.subscribe(from_seq=3), 2))
    await store.append(submitted("s3"))
    assert seqs(await follower) == [3, 4]


async def test_last_per_subject_starts_with_the_newest_of_each_subject(backend: Backend) -> None:
    store = backend.store
    for cpu in (1.0, 2.0, 3.0):
        await store.append(heartbeat("n1", cpu))
    for cpu in (10.0, 20.0):
        await store.append(heartbeat("n2", cpu))
    await store.append(heartbeat("n1", 4.0))
    subscription = store.subscribe(stream=HEARTBEATS_STREAM, last_per_subject=True)
    try:
        async with asyncio.timeout(10):
            start = [await anext(subscription), await anext(subscription)]
            later = await store.append(heartbeat("n3", 9.0))
            followed = await anext(subscription)
    finally:
        await subscription.aclose()  # type: ignore[attr-defined]
    assert seqs([*start, followed]) == [5, 6, later]
    beats = [e for e in events([*start, followed]) if isinstance(e, Heartbeat)]
    assert [beat.cpu_percent for beat in beats] == [20.0, 4.0, 9.0]


def test_subject_matching_follows_nats_wildcards() -> None:
    cases = {
        ("evt.>", "evt.task.a.lifecycle"): True,
        ("evt.>", "evt"): False,
        ("evt.task.*.>", "evt.task.a.to.n1"): True,
        ("evt.task.*.lifecycle", "evt.task.a.lifecycle"): True,
        ("evt.task.*.lifecycle", "evt.task.a.to.n1"): False,
        ("evt.task.a.>", "evt.task.ab.lifecycle"): False,
        ("hb.n1", "hb.n1"): True,
        ("hb.n1", "hb.n1.x"): False,
        ("hb.*", "hb"): False,
    }
    assert {case: subject_matches(*case) for case in cases} == cases


async def test_an_oversized_event_is_refused_clearly(backend: Backend) -> None:
    big = TaskSubmitted(
        **envelope("coordinator"),
        task_id="big",
        queue_deadline=T0,
        spec=TaskSpec(skills=("python",), payload="x" * 2_000_000),
    )
    with pytest.raises(PayloadTooLargeError, match="max payload"):
        await backend.store.append(big)
    assert await backend.store.last_seq() == 0


async def test_a_read_ends_at_the_last_event_stored_when_it_began(backend: Backend) -> None:
    store = backend.store
    for i in range(3):
        await store.append(submitted(f"e{i}"))
    reading = store.read()
    first = await anext(reading)
    await store.append(submitted("late"))
    rest = [record async for record in reading]
    assert seqs([first, *rest]) == [1, 2, 3]
    assert seqs(await collect(store.read())) == [1, 2, 3, 4]


@pytest.mark.parametrize("backend", ["memory", "jetstream"], indirect=True)
async def test_pending_counts_the_matching_records_behind(backend: Backend) -> None:
    # The consumer-less reader (one message get per record) cannot count what is
    # behind without reading it: it says 0, or 1 while several filters have records
    # ready, so a follower batches less but never waits for records that do not come.
    store = backend.store
    for i in range(3):
        await store.append(submitted(f"c{i}"))
        await store.append(submitted(f"other{i}"))
    filters = ["evt.task.c0.>", "evt.task.c1.>", "evt.task.c2.>"]
    records = await collect(store.read(subjects=filters))
    assert [r.pending for r in records if isinstance(r, StoredEvent)] == [2, 1, 0]
    followed = await take(store.subscribe(subjects=filters), 3)
    assert [r.pending for r in followed if isinstance(r, StoredEvent)] == [2, 1, 0]

"""Atomic batches against a real nats-server: a batch is stored whole or not at all, its
guards are honoured, a retried batch stores nothing twice, and a stream that refuses
batches (made with ``persist_mode: async``) falls back to appends one by one."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import nats
import pytest
from nats.aio.client import Client
from nats.js.api import PersistMode

from eventsrc.commands.base import Origin, Stamp
from eventsrc.commands.tasks import SubmitTask
from eventsrc.errors import (
    BatchRefusedError,
    ConcurrencyError,
    EventsrcError,
    NotLeaderError,
    StoreError,
)
from eventsrc.events import Event, TaskAssigned, TaskSpec, TaskSubmitted
from eventsrc.ports import MAX_ATOMIC_BATCH
from eventsrc.projections.state import ClusterState
from eventsrc.runner import ProjectionRunner
from eventsrc.store import EVENTS_STREAM, JetStreamEventStore, StoredEvent, StreamSettings
from eventsrc.store.streams import events_config
from eventsrc.writer import ATOMIC_MIN_EVENTS, EventWriter, Reservations
from tests.conftest import MakeServer
from tests.factories import T0, envelope


@pytest.fixture
async def nc(make_server: MakeServer) -> AsyncIterator[Client]:
    server = make_server()
    assert server.url is not None
    client = await nats.connect(server.url)
    yield client
    await client.close()


@pytest.fixture
async def store(nc: Client) -> JetStreamEventStore:
    """The events stream as eventsrc makes it (atomic batches on)."""
    store = JetStreamEventStore(nc)
    await store.ensure_streams()
    return store


@contextlib.asynccontextmanager
async def writing(
    store: JetStreamEventStore, holds_lease: Callable[[], bool] | None = None
) -> AsyncIterator[EventWriter]:
    """A writer of coordinator ``c1`` over a runner following ``store``."""
    async with ProjectionRunner(store, follow_heartbeats=False) as runner:
        yield EventWriter(store, runner, origin=Origin("c1"), holds_lease=holds_lease)


def placed(task_id: str, node_id: str = "n1") -> tuple[Event, Event]:
    """A submission and its first placement: one decision, two events, one aggregate."""
    return (
        TaskSubmitted(
            **envelope("coordinator", epoch=1),
            task_id=task_id,
            spec=TaskSpec(skills=("python",)),
            queue_deadline=T0,
        ),
        TaskAssigned(
            **envelope("coordinator", epoch=1),
            task_id=task_id,
            node_id=node_id,
            attempt=1,
            skills=("python",),
            run_timeout_s=60,
            run_deadline=T0 + timedelta(minutes=1),
        ),
    )


async def stored(store: JetStreamEventStore) -> list[tuple[int, str, str]]:
    """Every stored event as (sequence, subject, event id)."""
    return [
        (record.seq, record.subject, record.event.event_id)
        async for record in store.read()
        if isinstance(record, StoredEvent)
    ]


async def test_a_batch_is_stored_whole_in_order_with_its_ids_and_one_commit(
    store: JetStreamEventStore,
) -> None:
    assert store.atomic_batches
    assert (await store.js.stream_info(EVENTS_STREAM)).config.allow_atomic is True
    events = [*placed("a"), *placed("b")]
    last = await store.append_batch(events, [0, None, 0, None])
    assert last == 4
    assert await stored(store) == [(n + 1, e.subject, e.event_id) for n, e in enumerate(events)]
    # One batch: every message carries the same batch id, the last one commits it.
    msgs = [await store.js.get_msg(EVENTS_STREAM, seq) for seq in range(1, 5)]
    assert all(m.headers is not None for m in msgs)
    assert len({m.headers["Nats-Batch-Id"] for m in msgs if m.headers}) == 1
    assert [m.headers.get("Nats-Batch-Commit") for m in msgs if m.headers] == [None] * 3 + ["1"]
    # The dedup ids are kept: the same event appended alone is a duplicate.
    assert [m.headers.get("Nats-Msg-Id") for m in msgs if m.headers] == [e.event_id for e in events]


async def test_one_failed_guard_refuses_the_whole_batch_and_nothing_is_stored(
    store: JetStreamEventStore,
) -> None:
    first = placed("a")
    await store.append_batch(first, [0, None])
    # Task b is new (0 is right), task a is not (its aggregate is at 2, not 0).
    with pytest.raises(ConcurrencyError):
        await store.append_batch([*placed("b"), *placed("a")], [0, None, 0, None])
    assert [seq for seq, _, _ in await stored(store)] == [1, 2]
    assert await store.last_seq() == 2
    # The same batch with the right expectations goes through.
    assert await store.append_batch([*placed("b"), *placed("a", "n2")], [0, None, 2, None]) == 6


async def test_a_retried_batch_stores_nothing_twice(store: JetStreamEventStore) -> None:
    events = placed("a")
    await store.append_batch(events, [0, None])
    with pytest.raises(ConcurrencyError):  # the guard fails first
        await store.append_batch(events, [0, None])
    with pytest.raises(ConcurrencyError):  # unguarded: the ids are stored already
        await store.append_batch(events, [None, None])
    assert [event_id for _, _, event_id in await stored(store)] == [e.event_id for e in events]


async def test_an_existing_stream_without_atomic_batches_is_given_them_on_start(
    nc: Client,
) -> None:
    js = nc.jetstream()
    await js.add_stream(dataclasses.replace(events_config(StreamSettings()), allow_atomic=None))
    assert (await js.stream_info(EVENTS_STREAM)).config.allow_atomic is not True
    store = JetStreamEventStore(nc)
    await store.ensure_streams()
    assert store.atomic_batches
    assert (await js.stream_info(EVENTS_STREAM)).config.allow_atomic is True


async def _writer_appends_chains(
    store: JetStreamEventStore, tasks: int
) -> list[int | EventsrcError]:
    async with writing(store) as writer:
        chains = [placed(f"t{n}") for n in range(tasks)]
        return list(await writer.append_chains(chains, [{} for _ in chains]))


async def test_a_stream_that_refuses_batches_keeps_chained_appends_with_one_log_line(
    nc: Client, caplog: pytest.LogCaptureFixture
) -> None:
    # An operator's stream with persist_mode async: JetStream cannot give it atomic
    # batches (nor change its persist mode).
    js = nc.jetstream()
    config = dataclasses.replace(
        events_config(StreamSettings()), allow_atomic=None, persist_mode=PersistMode.ASYNC
    )
    await js.add_stream(config)
    store = JetStreamEventStore(nc)
    with caplog.at_level(logging.WARNING, logger="eventsrc.store.streams"):
        await store.ensure_streams()
    assert not store.atomic_batches
    lines = [r.getMessage() for r in caplog.records if "atomic batches" in r.getMessage()]
    assert len(lines) == 1, lines
    assert "does not take atomic batches" in lines[0] and "persist" in lines[0]
    info = await js.stream_info(EVENTS_STREAM)
    assert info.config.persist_mode == PersistMode.ASYNC and not info.config.allow_atomic
    # Many decisions are still stored, pipelined: every first event, then every second.
    tasks = ATOMIC_MIN_EVENTS
    outcomes = await _writer_appends_chains(store, tasks)
    assert outcomes == [tasks + n + 1 for n in range(tasks)]
    assert len(await stored(store)) == 2 * tasks
    last = await js.get_msg(EVENTS_STREAM, 2 * tasks)
    assert last.headers is not None and "Nats-Batch-Id" not in last.headers


async def test_batches_turned_off_under_a_running_store_fall_back_at_once(
    store: JetStreamEventStore, caplog: pytest.LogCaptureFixture
) -> None:
    assert store.atomic_batches
    # An operator turns atomic batches off while the coordinator runs.
    await store.js.update_stream(
        dataclasses.replace(events_config(StreamSettings()), allow_atomic=False)
    )
    with pytest.raises(StoreError), caplog.at_level(logging.WARNING):
        await store.append_batch(placed("x"), [0, None])
    assert not store.atomic_batches
    assert any("refused an atomic batch" in r.getMessage() for r in caplog.records)
    assert await stored(store) == []
    outcomes = await _writer_appends_chains(store, ATOMIC_MIN_EVENTS)
    assert outcomes == [ATOMIC_MIN_EVENTS + n + 1 for n in range(ATOMIC_MIN_EVENTS)]
    assert len(await stored(store)) == 2 * ATOMIC_MIN_EVENTS


async def test_the_writer_stores_many_decisions_in_batches_of_at_most_the_server_limit(
    store: JetStreamEventStore,
) -> None:
    tasks = MAX_ATOMIC_BATCH // 2 + 10  # two batches: 500 decisions, then 10
    outcomes = await _writer_appends_chains(store, tasks)
    assert outcomes == [2 * (n + 1) for n in range(tasks)]
    batches = set()
    for seq in (1, MAX_ATOMIC_BATCH, MAX_ATOMIC_BATCH + 1, 2 * tasks):
        msg = await store.js.get_msg(EVENTS_STREAM, seq)
        assert msg.headers is not None
        batches.add(msg.headers["Nats-Batch-Id"])
    assert len(batches) == 2


async def test_a_decision_that_lost_its_race_is_refused_and_the_others_of_its_batch_stored(
    store: JetStreamEventStore,
) -> None:
    await store.append_batch(placed("t3"), [0, None])  # someone else placed t3 meanwhile
    outcomes = await _writer_appends_chains(store, ATOMIC_MIN_EVENTS)
    assert isinstance(outcomes[3], ConcurrencyError)
    assert all(isinstance(o, int) for n, o in enumerate(outcomes) if n != 3)
    subjects = [subject for _, subject, _ in await stored(store)]
    assert len(subjects) == 2 + 2 * (ATOMIC_MIN_EVENTS - 1)
    assert subjects.count("evt.task.t3.lifecycle") == 1


def _decide_placed(
    state: ClusterState, command: SubmitTask, /, *, stamp: Stamp
) -> tuple[Event, ...]:
    """Submission and placement of a new task; none for a task the state knows."""
    return () if command.task_id in state.tasks else placed(command.task_id)


async def test_concurrent_decisions_are_stored_together_a_lone_one_at_once(
    store: JetStreamEventStore,
) -> None:
    async with writing(store) as writer:
        spec = TaskSpec(skills=("python",))
        await writer.execute(_decide_placed, SubmitTask(task_id="lone", spec=spec))
        commands = [SubmitTask(task_id=f"c{n}", spec=spec) for n in range(40)]
        results = await asyncio.gather(*(writer.execute(_decide_placed, c) for c in commands))
        assert all(len(events) == 2 for events in results)
        # Each decided again: known now, nothing more is stored.
        again = await asyncio.gather(*(writer.execute(_decide_placed, c) for c in commands))
        assert all(events == () for events in again)
    records = await stored(store)
    assert len(records) == 2 + 2 * 40
    subjects = [subject for _, subject, _ in records]
    for n in range(40):  # each task's submission before its placement, each once
        first = subjects.index(f"evt.task.c{n}.lifecycle")
        assert subjects[first + 1 :].count(f"evt.task.c{n}.to.n1") == 1
        assert subjects.count(f"evt.task.c{n}.lifecycle") == 1
    lone = await store.js.get_msg(EVENTS_STREAM, 2)
    assert lone.headers is not None and "Nats-Batch-Id" not in lone.headers
    # The 39 queued behind the first went as one group: an atomic batch.
    batched = [await store.js.get_msg(EVENTS_STREAM, seq) for seq in range(3, 83)]
    assert sum("Nats-Batch-Id" in (m.headers or {}) for m in batched) >= ATOMIC_MIN_EVENTS


def _lease_for(checks: int) -> Callable[[], bool]:
    """A lease held for the first ``checks`` checks, lost from then on."""
    calls = iter(range(checks))
    return lambda: next(calls, None) is not None


async def test_chains_stored_before_the_lease_is_lost_are_told_stored_the_rest_not_leader(
    store: JetStreamEventStore,
) -> None:
    async with writing(store, _lease_for(1)) as writer:
        # Pipelined (too few events for a batch): the lease is lost after position 0.
        chains: list[tuple[Event, ...]] = [placed("a"), placed("b")[:1], placed("c")]
        outcomes = await writer.append_chains(chains, [{} for _ in chains])
    assert isinstance(outcomes[0], NotLeaderError) and isinstance(outcomes[2], NotLeaderError)
    assert outcomes[1] == 2  # stored completely at position 0
    assert [event_id for _, _, event_id in await stored(store)][1] == chains[1][0].event_id


async def test_chains_of_a_committed_batch_are_told_stored_when_the_rest_is_refused(
    store: JetStreamEventStore,
) -> None:
    async with writing(store, _lease_for(1)) as writer:
        # One check for the batch, then the lease is lost before the rest is appended.
        chains: list[tuple[Event, ...]] = [placed(f"t{n}") for n in range(ATOMIC_MIN_EVENTS)]
        chains.append(placed("t0", "n2")[1:])  # t0 again: appended after the batch
        outcomes = await writer.append_chains(chains, [{} for _ in chains])
    assert outcomes[:-1] == [2 * (n + 1) for n in range(ATOMIC_MIN_EVENTS)]
    assert isinstance(outcomes[-1], NotLeaderError)


async def test_a_batch_refused_by_the_lease_leaves_the_results_of_the_others(
    store: JetStreamEventStore,
) -> None:
    async with writing(store, _lease_for(1)) as writer:
        tasks = MAX_ATOMIC_BATCH // 2 + 10  # two batches; the second checks a lost lease
        chains = [placed(f"t{n}") for n in range(tasks)]
        outcomes = await writer.append_chains(chains, [{} for _ in chains])
    first = MAX_ATOMIC_BATCH // 2
    assert outcomes[:first] == [2 * (n + 1) for n in range(first)]
    assert all(isinstance(o, NotLeaderError) for o in outcomes[first:])
    assert len(await stored(store)) == MAX_ATOMIC_BATCH


async def test_an_unexpected_store_failure_tells_each_decision_retry_and_is_logged_once(
    store: JetStreamEventStore, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def failing(events: object, seqs: object) -> list[int | EventsrcError]:
        raise RuntimeError("the disk is on fire")

    monkeypatch.setattr(store, "append_guarded", failing)
    async with writing(store) as writer:
        chains = [placed("a"), placed("b")]  # too few events for a batch: pipelined
        with caplog.at_level(logging.ERROR, logger="eventsrc.writer"):
            outcomes = await writer.append_chains(chains, [{} for _ in chains])
    assert all(isinstance(o, StoreError) and "retry" in str(o) for o in outcomes)
    assert "the disk is on fire" in str(outcomes[0])
    logged = [r for r in caplog.records if r.name == "eventsrc.writer"]
    assert len(logged) == 1 and logged[0].exc_info is not None
    assert await stored(store) == []


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(10_000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the writer never got there")


async def test_a_cancelled_queued_decision_is_never_stored(store: JetStreamEventStore) -> None:
    spec = TaskSpec(skills=("python",))
    async with writing(store) as writer:
        reservations = Reservations()

        def run(task_id: str) -> asyncio.Task[tuple[Event, ...]]:
            command = SubmitTask(task_id=task_id, spec=spec)
            return asyncio.create_task(
                writer.execute(_decide_placed, command, reservations=reservations)
            )

        lone, first = run("lone"), run("first")  # the second queued, its flusher busy
        await _until(lambda: writer._flusher is not None and not writer._queued)
        later = run("later")
        await _until(lambda: len(writer._queued) == 1)
        later.cancel()
        with pytest.raises(asyncio.CancelledError):
            await later
        await asyncio.gather(lone, first)
        await _until(lambda: writer._flusher is None)
        await writer.runner.wait_for(await store.last_seq())
        assert "later" not in writer.runner.state.tasks and "first" in writer.runner.state.tasks
        assert not reservations.counts
    assert len(await stored(store)) == 4


async def test_a_cancelled_decision_being_stored_returns_once_applied(
    store: JetStreamEventStore,
) -> None:
    spec = TaskSpec(skills=("python",))
    async with writing(store) as writer:
        reservations = Reservations()
        tasks = [
            asyncio.create_task(
                writer.execute(
                    _decide_placed, SubmitTask(task_id=name, spec=spec), reservations=reservations
                )
            )
            for name in ("lone", "queued")
        ]
        await _until(lambda: writer._flusher is not None and not writer._queued)
        tasks[1].cancel()
        with pytest.raises(asyncio.CancelledError):
            await tasks[1]
        # Its reservations were released only now: its events are applied.
        assert "queued" in writer.runner.state.tasks
        await tasks[0]


async def test_queued_decisions_hear_of_a_stopped_flusher(store: JetStreamEventStore) -> None:
    spec = TaskSpec(skills=("python",))
    async with writing(store) as writer:
        lone, queued = (
            asyncio.create_task(writer.execute(_decide_placed, SubmitTask(task_id=n, spec=spec)))
            for n in ("lone", "queued")
        )
        await _until(lambda: writer._flusher is not None and not writer._queued)
        assert writer._flusher is not None
        writer._flusher.cancel()
        with pytest.raises(StoreError, match="writer stopped"):
            await asyncio.wait_for(queued, 10)
        await lone


BIG_BATCH = 200
"""Events of a batch big enough that batches sent at once overlap on the wire."""


def _big_batch(number: int, size: int = BIG_BATCH) -> tuple[list[Event], list[int | None]]:
    events = [e for n in range(size // 2) for e in placed(f"b{number}t{n}")]
    return events, [0, None] * (size // 2)


async def test_more_batches_at_once_than_the_server_holds_are_all_stored(
    store: JetStreamEventStore,
) -> None:
    batches = 60  # the server holds 50 of a stream in flight
    size = MAX_ATOMIC_BATCH  # big enough to overlap on the wire of one connection
    lasts = await asyncio.gather(
        *(store.append_batch(*_big_batch(n, size)) for n in range(batches))
    )
    assert sorted(lasts) == [size * (n + 1) for n in range(batches)]


CLIENTS = 60
"""Connections sending a batch each at once: more than the server holds for a stream
(no store's own bound prevents it), so it turns some away."""


@pytest.fixture
async def clients(make_server: MakeServer) -> AsyncIterator[list[Client]]:
    server = make_server()
    assert server.url is not None
    connected = [await nats.connect(server.url) for _ in range(CLIENTS)]
    yield connected
    for client in connected:
        await client.close()


async def test_batches_the_server_turns_away_are_refusals_that_store_nothing(
    clients: list[Client],
) -> None:
    stores = [JetStreamEventStore(client) for client in clients]
    for store in stores:
        await store.ensure_streams()
    outcomes = await asyncio.gather(
        *(store.append_batch(*_big_batch(n)) for n, store in enumerate(stores)),
        return_exceptions=True,
    )
    refused = [o for o in outcomes if isinstance(o, BaseException)]
    assert all(isinstance(o, BatchRefusedError) for o in refused), refused
    assert len(await stored(stores[0])) == BIG_BATCH * (len(outcomes) - len(refused))


async def test_writers_append_the_batches_turned_away_one_by_one(clients: list[Client]) -> None:
    stores = [JetStreamEventStore(client) for client in clients]
    for store in stores:
        await store.ensure_streams()
    async with ProjectionRunner(stores[0], follow_heartbeats=False) as runner:
        writers = [EventWriter(store, runner, origin=Origin("c1")) for store in stores]
        chains = [[placed(f"w{w}t{n}") for n in range(BIG_BATCH // 2)] for w in range(len(writers))]
        outcomes = await asyncio.gather(
            *(
                writer.append_chains(mine, [{} for _ in mine])
                for writer, mine in zip(writers, chains, strict=True)
            )
        )
    assert all(isinstance(o, int) for mine in outcomes for o in mine)
    assert len(await stored(stores[0])) == BIG_BATCH * len(writers)

"""Atomic batches against a real nats-server: a batch is stored whole or not at all, its
guards are honoured, a retried batch stores nothing twice, and a stream that refuses
batches (made with ``persist_mode: async``) falls back to appends one by one."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator
from datetime import timedelta

import nats
import pytest
from nats.aio.client import Client
from nats.js.api import PersistMode

from eventsrc.commands.base import Origin, Stamp
from eventsrc.commands.tasks import SubmitTask
from eventsrc.errors import ConcurrencyError, EventsrcError, StoreError
from eventsrc.events import Event, TaskAssigned, TaskSpec, TaskSubmitted
from eventsrc.ports import MAX_ATOMIC_BATCH
from eventsrc.projections.state import ClusterState
from eventsrc.runner import ProjectionRunner
from eventsrc.store import EVENTS_STREAM, JetStreamEventStore, StoredEvent, StreamSettings
from eventsrc.store.streams import events_config
from eventsrc.writer import ATOMIC_MIN_EVENTS, EventWriter
from tests.conftest import MakeServer
from tests.factories import T0, envelope


@pytest.fixture
async def nc(make_server: MakeServer) -> AsyncIterator[Client]:
    server = make_server()
    assert server.url is not None
    client = await nats.connect(server.url)
    yield client
    await client.close()


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


async def test_a_batch_is_stored_whole_in_order_with_its_ids_and_one_commit(nc: Client) -> None:
    store = JetStreamEventStore(nc)
    await store.ensure_streams()
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
    nc: Client,
) -> None:
    store = JetStreamEventStore(nc)
    await store.ensure_streams()
    first = placed("a")
    await store.append_batch(first, [0, None])
    # Task b is new (0 is right), task a is not (its aggregate is at 2, not 0).
    with pytest.raises(ConcurrencyError):
        await store.append_batch([*placed("b"), *placed("a")], [0, None, 0, None])
    assert [seq for seq, _, _ in await stored(store)] == [1, 2]
    assert await store.last_seq() == 2
    # The same batch with the right expectations goes through.
    assert await store.append_batch([*placed("b"), *placed("a", "n2")], [0, None, 2, None]) == 6


async def test_a_retried_batch_stores_nothing_twice(nc: Client) -> None:
    store = JetStreamEventStore(nc)
    await store.ensure_streams()
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
    async with ProjectionRunner(store, follow_heartbeats=False) as runner:
        writer = EventWriter(store, runner, origin=Origin("c1"))
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
    nc: Client, caplog: pytest.LogCaptureFixture
) -> None:
    store = JetStreamEventStore(nc)
    await store.ensure_streams()
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
    nc: Client,
) -> None:
    store = JetStreamEventStore(nc)
    await store.ensure_streams()
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
    nc: Client,
) -> None:
    store = JetStreamEventStore(nc)
    await store.ensure_streams()
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


async def test_concurrent_decisions_are_stored_together_a_lone_one_at_once(nc: Client) -> None:
    store = JetStreamEventStore(nc)
    await store.ensure_streams()
    async with ProjectionRunner(store, follow_heartbeats=False) as runner:
        writer = EventWriter(store, runner, origin=Origin("c1"))
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

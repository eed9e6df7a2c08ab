"""The ProjectionRunner against a real nats-server: poison messages, snapshots, waiting."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import nats
import orjson
import pytest
from nats.aio.client import Client

from eventsrc.errors import NotCaughtUpError
from eventsrc.events import Event, encode
from eventsrc.ports import EVENTS_STREAM, Record
from eventsrc.projections.canonical import state_hash
from eventsrc.projections.snapshot import encode_snapshot, snapshot_document
from eventsrc.projections.state import STATE_SCHEMA_VERSION, Retention
from eventsrc.runner import ProjectionRunner
from eventsrc.store import JetStreamEventStore
from eventsrc.store.snapshots import SnapshotStore
from tests.conftest import MakeServer
from tests.projections.builders import (
    assigned,
    failed,
    instance,
    joined,
    leader,
    lifecycle,
    node_expired,
    requeued,
    retried,
    skill_registered,
    started,
    submitted,
    succeeded,
)


class WatchedStore(JetStreamEventStore):
    """The real store, noting where each events subscription starts."""

    def __init__(self, nc: Client) -> None:
        super().__init__(nc)
        self.subscribed_from: list[int] = []

    def subscribe(self, **options: Any) -> AsyncIterator[Record]:
        if options.get("stream", EVENTS_STREAM) == EVENTS_STREAM:
            self.subscribed_from.append(options.get("from_seq", 1))
        return super().subscribe(**options)


@pytest.fixture
async def store(make_server: MakeServer) -> AsyncIterator[WatchedStore]:
    """A store on a fresh server, so the streams start empty."""
    server = make_server()
    assert server.url is not None
    nc = await nats.connect(server.url)
    try:
        store = WatchedStore(nc)
        await store.ensure_streams()
        yield store
    finally:
        await nc.close()


def runner_for(store: JetStreamEventStore, **options: Any) -> ProjectionRunner:
    return ProjectionRunner(store, follow_heartbeats=False, **options)


def history() -> list[Event]:
    """Some cluster life: a leader, a catalog, two nodes, finished and waiting tasks."""
    return [
        leader(1),
        skill_registered("python"),
        joined("n1"),
        joined("n2"),
        instance("python", "n1"),
        instance("python", "n2"),
        *lifecycle("t1", "n1"),
        *lifecycle("t2", "n2"),
        submitted("t3", max_attempts=2),
        assigned("t3", "n1"),
        started("t3", "n1"),
        failed("t3", "n1", retryable=True),
        submitted("t4"),
        assigned("t4", "n2"),
    ]


def tail() -> list[Event]:
    """What happens after the snapshot, touching tasks and nodes from before it."""
    return [
        retried("t3", failed_attempt=1),
        assigned("t3", "n2", attempt=2),
        succeeded("t3", "n2", attempt=2),
        node_expired("n2"),
        requeued("t4", "n2", attempt=1),
        *lifecycle("t5", "n1"),
        succeeded("t4", "n2", attempt=1),  # late: that attempt was requeued
    ]


async def publish_poison(store: JetStreamEventStore) -> None:
    """Two stored messages that are not events, written past our codec."""
    await store.js.publish("evt.task.poison.lifecycle", b"\x00\xff{not json", stream=EVENTS_STREAM)
    unknown = {
        "type": "NodeTeleported",
        "event_id": "x1",
        "time": "2026-01-01T00:00:00Z",
        "producer": "newer-code",
        "node_id": "x",
    }
    await store.js.publish("evt.node.x", orjson.dumps(unknown), stream=EVENTS_STREAM)


async def test_poison_messages_in_history_are_counted_and_skipped(store: WatchedStore) -> None:
    await store.append_many(history())
    await publish_poison(store)
    await store.append_many([*lifecycle("after", "n1"), submitted("waiting")])
    last = await store.last_seq()

    async with runner_for(store) as runner, runner.reading() as state:
        assert state.last_seq == last
        assert state.problems.undecodable == 2
        assert (state.problems.illegal, state.problems.late, state.problems.fenced) == (0, 0, 0)
        assert state.tasks["after"].state == "succeeded"
        assert state.tasks["waiting"].state == "queued"
        assert state.tasks["t1"].state == "succeeded"
        assert any("NodeTeleported" in text for text in state.problems.recent)


async def test_poison_messages_while_following_are_counted_and_skipped(
    store: WatchedStore,
) -> None:
    async with runner_for(store) as runner:
        await store.append_many(history())
        await publish_poison(store)
        # A well-formed event under another node's subject is a forgery, not an event.
        forged = succeeded("t4", "n2")
        await store.js.publish("evt.task.t4.from.n1", encode(forged), stream=EVENTS_STREAM)
        await store.append_many(lifecycle("after", "n1"))
        last = await store.last_seq()

        await runner.wait_for(last, timeout=10)
        async with runner.reading() as state:
            assert state.last_seq == last
            assert state.problems.undecodable == 3
            assert state.tasks["t4"].state == "assigned"
            assert state.tasks["after"].state == "succeeded"

        # Still following after the poison.
        seq = await store.append(submitted("later"))
        await runner.wait_for(seq, timeout=10)
        assert runner.state.tasks["later"].state == "queued"


@pytest.mark.parametrize(
    "retention",
    [
        pytest.param(None, id="default-retention"),
        pytest.param(Retention(max_finished=2), id="keep-2"),
    ],
)
async def test_restart_from_a_snapshot_equals_a_full_replay(
    store: WatchedStore, retention: Retention | None
) -> None:
    snapshots = SnapshotStore(store.js)
    await store.append_many(history())
    async with runner_for(store, snapshots=snapshots, retention=retention) as first:
        covered = await first.snapshot()
    assert covered == await store.last_seq()

    await store.append_many(tail())
    last = await store.last_seq()
    store.subscribed_from.clear()
    async with runner_for(store, snapshots=snapshots, retention=retention) as restarted:
        assert restarted.restored_from_snapshot and restarted.snapshot_refused == ""
        assert store.subscribed_from == [covered + 1]  # only the tail was replayed
        async with runner_for(store, retention=retention) as replayed:
            assert not replayed.restored_from_snapshot
            assert restarted.state.last_seq == replayed.state.last_seq == last
            assert state_hash(restarted.state) == state_hash(replayed.state)
            assert restarted.state.tasks["t3"].state == "succeeded"
            assert restarted.state.problems.late == 1


def tamper_hash(document: dict[str, Any]) -> None:
    document["hash"] = "0" * 64


def tamper_content(document: dict[str, Any]) -> None:
    document["state"]["tasks"]["t4"]["state"] = "succeeded"


def tamper_schema(document: dict[str, Any]) -> None:
    document["state_schema"] = STATE_SCHEMA_VERSION + 1


def tamper_seq(document: dict[str, Any]) -> None:
    document["seq"] += 3


@pytest.mark.parametrize(
    ("tamper", "why"),
    [
        (tamper_hash, "hash does not match"),
        (tamper_content, "hash does not match"),
        (tamper_schema, f"state schema {STATE_SCHEMA_VERSION + 1} differs"),
        (tamper_seq, "sequence does not match"),
        (None, "not JSON"),
    ],
)
async def test_a_bad_snapshot_is_refused_and_the_stream_replayed(
    store: WatchedStore, tamper: Any, why: str
) -> None:
    snapshots = SnapshotStore(store.js)
    await store.append_many(history())
    async with runner_for(store) as source, source.reading() as state:
        document = snapshot_document(state)
    if tamper is None:
        raw = b"\x00 definitely not a snapshot"
    else:
        tamper(document)
        raw = encode_snapshot(document)
    await snapshots.save(raw)
    await store.append_many(tail())

    store.subscribed_from.clear()
    async with runner_for(store, snapshots=snapshots) as runner:
        assert not runner.restored_from_snapshot
        assert why in runner.snapshot_refused
        assert store.subscribed_from == [1]
        async with runner_for(store) as replayed:
            assert state_hash(runner.state) == state_hash(replayed.state)
            assert runner.state.last_seq == await store.last_seq()


async def test_wait_for_reads_your_own_write(store: WatchedStore) -> None:
    runner = runner_for(store)
    async with runner:
        assert runner.state.last_seq == 0
        await runner.wait_for(0)  # already there: returns at once

        seq = await store.append(submitted("t1"))
        await runner.wait_for(seq, timeout=10)
        async with runner.reading() as state:
            assert state.last_seq == seq and state.tasks["t1"].state == "queued"

        # Waiters for several future sequences are all released, each once reached.
        waiters = [asyncio.create_task(runner.wait_for(seq + n, timeout=10)) for n in (3, 1, 2)]
        await store.append_many([assigned("t1", "n1"), started("t1", "n1"), succeeded("t1", "n1")])
        await asyncio.gather(*waiters)
        assert runner.state.tasks["t1"].state == "succeeded"

    await runner.close()  # idempotent


async def test_wait_for_a_sequence_that_never_comes_times_out(store: WatchedStore) -> None:
    async with runner_for(store) as runner:
        seq = await store.append(submitted("t1"))
        loop = asyncio.get_running_loop()
        began = loop.time()
        with pytest.raises(NotCaughtUpError, match=f"did not reach event {seq + 1} within 0.5 s"):
            await runner.wait_for(seq + 1, timeout=0.5)
        assert 0.4 < loop.time() - began < 5
        # The projection is unharmed and keeps following.
        seq = await store.append(submitted("t2"))
        await runner.wait_for(seq, timeout=10)
        assert set(runner.state.tasks) == {"t1", "t2"}


async def stray_node_event(store: JetStreamEventStore) -> None:
    await store.append(started("ghost", "n1"))  # a node's event for a task never submitted


async def deposed_leaders_submission(store: JetStreamEventStore) -> None:
    await store.append(submitted("ghost", epoch=1))  # fenced: the old leader lost


async def garbage_on_the_subject(store: JetStreamEventStore) -> None:
    await store.js.publish("evt.task.ghost.lifecycle", b"{oops", stream=EVENTS_STREAM)


@pytest.mark.parametrize(
    "stray", [stray_node_event, deposed_leaders_submission, garbage_on_the_subject]
)
async def test_stored_events_of_an_unsubmitted_task_do_not_block_its_submission(
    store: WatchedStore, stray: Any
) -> None:
    await store.append(leader(2, "new"))
    await stray(store)
    async with runner_for(store) as runner, runner.reading() as state:
        expected = state.aggregate_seq.get("evt.task.ghost.>", 0)
    # What the coordinator's EventWriter does when it decides to submit "ghost".
    await store.append(submitted("ghost", epoch=2), expected_seq=expected)


async def test_until_returns_once_an_applied_batch_meets_the_condition() -> None:
    from tests.memory_store import MemoryEventStore

    store = MemoryEventStore()
    await store.append(leader(1))
    runner = ProjectionRunner(store, follow_heartbeats=False)
    async with runner:
        await runner.until(lambda state: state.epoch == 1)  # already true: at once
        watchers = [
            asyncio.create_task(runner.until(lambda state: state.epoch > 1)) for _ in range(2)
        ]
        cancelled = asyncio.create_task(runner.until(lambda state: state.epoch > 1))
        await asyncio.sleep(0)  # one turn of the loop: every watcher reaches its await
        cancelled.cancel()  # one watcher gone must not end the others
        await store.append(leader(2, "c2"))
        async with asyncio.timeout(5):
            await asyncio.gather(*watchers)
        assert runner.state.epoch == 2
        assert cancelled.cancelled()

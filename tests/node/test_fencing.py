"""A node does not run what a deposed leader stored: the epoch of every event on its
assignment subject is checked against the elections stored before it."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import nats
from nats.aio.client import Client

import eventsrc
from eventsrc.errors import UndecodableEventError
from eventsrc.events import LeaderElected, TaskAssigned, encode, new_event_id
from eventsrc.events.subjects import CLUSTER_SUBJECT
from eventsrc.node.agent import NodeAgent
from eventsrc.node.builtins import builtin_skill
from eventsrc.node.fencing import LeaderFence
from eventsrc.ports import EVENTS_STREAM, StoredEvent
from eventsrc.store import JetStreamEventStore
from eventsrc.store.assignments import (
    AssignmentFeed,
    Delivery,
    assignment_consumer,
    assignment_consumer_name,
    carries_elections,
)
from tests.waiting import until, until_awaited


def assignment(task_id: str, node_id: str, epoch: int | None) -> TaskAssigned:
    now = datetime.now(UTC)
    return TaskAssigned(
        event_id=new_event_id(),
        time=now,
        producer="coordinator:zombie",
        epoch=epoch,
        task_id=task_id,
        node_id=node_id,
        attempt=1,
        skills=("search",),
        task_type="count",
        run_timeout_s=30,
        run_deadline=now + timedelta(seconds=30),
    )


def _election(epoch: int) -> LeaderElected:
    return LeaderElected(
        event_id=new_event_id(),
        time=datetime.now(UTC),
        producer="coordinator:other",
        epoch=epoch,
        coordinator_id="other",
    )


async def store_raw(nc: Client, event: TaskAssigned | LeaderElected) -> int:
    """Publish straight to the stream, as a zombie leader or an attacker would: no
    command API, no projection, no concurrency check."""
    ack = await nc.jetstream().publish(event.subject, encode(event), stream=EVENTS_STREAM)
    return int(ack.seq)


async def leader_epoch(store: JetStreamEventStore) -> int:
    epochs = [
        record.event.epoch or 0
        async for record in store.read(subjects=CLUSTER_SUBJECT)
        if isinstance(record, StoredEvent) and isinstance(record.event, LeaderElected)
    ]
    assert epochs, "the coordinator elected itself"
    return max(epochs)


def _agent(nc: Client, node_id: str, runs: list[str]) -> NodeAgent:
    async def count(task: dict[str, Any]) -> str:
        runs.append(task["task_id"])
        return "ran"

    agent = NodeAgent(
        nc,
        JetStreamEventStore(nc),
        node_id=node_id,
        skills={"search": builtin_skill("search")},
        executors={},
        heartbeat_interval=0.5,
    )
    agent.handlers["count"] = count
    return agent


async def _joined(url: str, node_id: str) -> None:
    async with eventsrc.connect(url, project=False) as cluster:

        async def joined() -> bool:
            nodes = (await cluster.api.call("nodes"))["nodes"]
            return any(n["node_id"] == node_id and n["state"] == "alive" for n in nodes)

        await until_awaited(joined, f"node {node_id} to join", 10, 0.05)


async def _nothing_unacked(nc: Client, node_id: str) -> bool:
    info = await nc.jetstream().consumer_info(EVENTS_STREAM, assignment_consumer_name(node_id))
    return bool(info.num_ack_pending == 0 and info.num_pending == 0)


async def test_an_old_epoch_assignment_is_never_run_and_a_current_one_is(
    coordinator_url: str,
) -> None:
    nc = await nats.connect(coordinator_url)
    store = JetStreamEventStore(nc)
    runs: list[str] = []
    agent = _agent(nc, "fenced-1", runs)
    try:
        await agent.start()
        await _joined(coordinator_url, "fenced-1")
        epoch = await leader_epoch(store)
        assert epoch >= 1
        await store_raw(nc, assignment("zombie-old", "fenced-1", epoch - 1))
        await store_raw(nc, assignment("zombie-none", "fenced-1", None))
        await store_raw(nc, assignment("current", "fenced-1", epoch))
        # Deliveries are handled in stream order: once the current one ran, the two
        # before it were decided on.
        await until(lambda: "current" in runs, "the current-epoch assignment to run", 10)
        await until_awaited(
            lambda: _nothing_unacked(nc, "fenced-1"), "every assignment acked", 10, 0.05
        )
        assert runs == ["current"]
        # The audit trail shows the zombie's assignment, judged fenced, and nothing after.
        command = [sys.executable, "-m", "replay_tools", "audit", "task", "zombie-old"]
        audit = await asyncio.to_thread(
            subprocess.run,
            [*command, "--nats-url", coordinator_url],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert audit.returncode == 0, audit.stderr
        rows = [line for line in audit.stdout.splitlines() if "TaskAssigned" in line]
        assert len(rows) == 1 and "fenced" in rows[0], audit.stdout
        assert "TaskSucceeded" not in audit.stdout and "TaskStarted" not in audit.stdout
        print(f"leader epoch {epoch}: ran {runs}, fenced zombie-old and zombie-none")
    finally:
        await agent.close(leave=True)
        await nc.close()


async def test_a_node_starting_with_stale_work_waiting_does_not_run_it(
    coordinator_url: str,
) -> None:
    """The start-up race: assignments wait in the node's durable consumer while it is
    away; the returning node knows the leader epoch before it takes any of them."""
    nc = await nats.connect(coordinator_url)
    store = JetStreamEventStore(nc)
    runs: list[str] = []
    first = _agent(nc, "fenced-2", runs)
    await first.start()
    await _joined(coordinator_url, "fenced-2")
    await first.close(leave=True)
    epoch = await leader_epoch(store)
    await store_raw(nc, assignment("waiting-stale", "fenced-2", epoch - 1))
    await store_raw(nc, assignment("waiting-current", "fenced-2", epoch))
    again = _agent(nc, "fenced-2", runs)
    try:
        await again.start()
        await until(lambda: "waiting-current" in runs, "the waiting current assignment", 10)
        await until_awaited(
            lambda: _nothing_unacked(nc, "fenced-2"), "every assignment acked", 10, 0.05
        )
        assert runs == ["waiting-current"]
    finally:
        await again.close(leave=True)
        await nc.close()


async def test_the_fence_follows_stream_order(nats_url: str) -> None:
    """An assignment stored before a newer election is still valid; one stored after it
    with the old epoch is fenced, also when the election came after the fence started."""
    nc = await nats.connect(nats_url)
    store = JetStreamEventStore(nc)
    await store.ensure_streams()
    fence = LeaderFence(store, node_id="order")
    try:
        await store_raw(nc, _election(1))
        before = assignment("before", "order", 1)
        before_seq = await store_raw(nc, before)
        await store_raw(nc, _election(2))
        after = assignment("after", "order", 1)
        after_seq = await store_raw(nc, after)
        newer = assignment("newer", "order", 2)
        newer_seq = await store_raw(nc, newer)
        await fence.start()
        assert fence.epoch == 2
        assert await fence.admits(before, before_seq)
        assert not await fence.admits(after, after_seq)
        assert await fence.admits(newer, newer_seq)

        # An election the follower learns of while running, and at once a zombie's
        # assignment right behind it: fenced, never let through by the race.
        await store_raw(nc, _election(3))
        late = assignment("late", "order", 2)
        late_seq = await store_raw(nc, late)
        assert not await fence.admits(late, late_seq)
        # The follower may lag (admits then read the elections itself): it catches up.
        await until(lambda: fence.epoch == 3, "the follower to learn of epoch 3", 10)
        # An election that is not newer (a second leader claiming epoch 3) changes nothing.
        await store_raw(nc, _election(3))
        current = assignment("current", "order", 3)
        assert await fence.admits(current, await store_raw(nc, current))

        # Without its follower (not started, or lagging) the fence reads the elections
        # before the assignment from the stream: the same answers.
        cold = LeaderFence(store, node_id="order")
        assert await cold.admits(before, before_seq)
        assert not await cold.admits(after, after_seq)
        assert not await cold.admits(late, late_seq)
    finally:
        await fence.close()
        await nc.close()


async def test_in_band_the_fence_learns_elections_from_the_work_consumer(nats_url: str) -> None:
    """The work consumer carries the elections in stream order: a fence fed its deliveries
    (as the node does) fences a zombie's assignment stored after a newer election, lets
    through one stored before it, and reads the stream when a delivery went missing."""
    nc = await nats.connect(nats_url)
    store = JetStreamEventStore(nc)
    await store.ensure_streams()
    await nc.jetstream().add_consumer(EVENTS_STREAM, assignment_consumer("inband"))
    # Epochs above any this module's server holds already.
    known = [
        r.event.epoch or 0
        async for r in store.read(subjects=CLUSTER_SUBJECT)
        if isinstance(r, StoredEvent)
    ]
    e = max(known, default=0)
    await store_raw(nc, _election(e + 1))
    fence = LeaderFence(store, node_id="inband")
    await fence.start(in_band=True)
    admitted: dict[str, bool] = {}
    seen: list[tuple[int, Delivery]] = []

    async def deliver(delivery: Delivery) -> None:
        event = delivery.event
        assert not isinstance(event, UndecodableEventError)
        fence.observe(
            event,
            seq=delivery.seq,
            consumer_seq=delivery.consumer_seq,
            delivered=delivery.delivered,
        )
        seen.append((delivery.seq, delivery))
        if isinstance(event, TaskAssigned):
            admitted[event.task_id] = await fence.admits(event, delivery.seq)
        await delivery.ack()

    feed = AssignmentFeed(
        nc, consumer=assignment_consumer_name("inband"), on_delivery=deliver, batch=16
    )
    await feed.start()
    try:
        await store_raw(nc, assignment("before", "inband", e + 1))
        await store_raw(nc, _election(e + 2))
        await store_raw(nc, assignment("zombie", "inband", e + 1))
        await store_raw(nc, assignment("current", "inband", e + 2))
        await until(lambda: len(admitted) == 3, "three assignments decided", 10)
        assert admitted == {"before": True, "zombie": False, "current": True}
        assert fence.epoch == e + 2
        # The elections came on the work consumer, in stream order with the assignments.
        kinds = [type(d.event).__name__ for _, d in seen]
        assert kinds == ["LeaderElected", "TaskAssigned", "LeaderElected", *["TaskAssigned"] * 2]
    finally:
        await feed.stop()

    # A delivery that never arrived (consumer sequence 2 skipped): here an election. The
    # fence cannot vouch for what follows, so it reads the stream and still fences.
    gap = LeaderFence(store, node_id="inband")
    await gap.start(in_band=True)
    assert gap.epoch == e + 2
    first = assignment("first", "inband", e + 2)
    first_seq = await store_raw(nc, first)
    missed_seq = await store_raw(nc, _election(e + 3))
    late = assignment("late", "inband", e + 2)
    late_seq = await store_raw(nc, late)
    gap.observe(first, seq=first_seq, consumer_seq=1, delivered=1)
    assert await gap.admits(first, first_seq)
    gap.observe(late, seq=late_seq, consumer_seq=3, delivered=1)
    assert not await gap.admits(late, late_seq)
    assert gap.epoch == e + 3 and missed_seq < late_seq
    # Read past the gap, the fence moves with the deliveries again.
    newer = assignment("newer", "inband", e + 3)
    newer_seq = await store_raw(nc, newer)
    gap.observe(newer, seq=newer_seq, consumer_seq=4, delivered=1)
    assert await gap.admits(newer, newer_seq)
    await gap.close()
    await fence.close()
    await nc.close()


async def test_the_coordinator_gives_a_node_a_consumer_that_carries_elections(
    coordinator_url: str,
) -> None:
    nc = await nats.connect(coordinator_url)
    runs: list[str] = []
    agent = _agent(nc, "fenced-3", runs)
    try:
        await agent.start()
        name = assignment_consumer_name("fenced-3")
        info = await nc.jetstream().consumer_info(EVENTS_STREAM, name)
        assert carries_elections(info.config)
    finally:
        await agent.close(leave=True)
        await nc.close()

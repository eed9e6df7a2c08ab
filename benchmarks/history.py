"""Rebuild and restart figures on a realistic history, next to raw nats-py replay.

The history is one stream of N events on a nats-server of its own (the main stream is
purged before every benchmark; this one must outlive a benchmark): a leader, a skill,
a few nodes joining and registering it, then task lifecycles (submitted, assigned,
started, succeeded) spread over the nodes. It is built and stored once per run, with
``store.append_many`` in chunks, and shared by ``rebuild.rate`` and ``restart.*``.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy

from benchmarks.harness import (
    SETUP_SYNC,
    Benchmark,
    Context,
    Figure,
    figure,
    interleave,
    rate,
    start_clock,
)
from eventsrc.events import (
    Event,
    LeaderElected,
    NodeJoined,
    SkillInstanceRegistered,
    SkillRegistered,
    TaskAssigned,
    TaskSpec,
    TaskStarted,
    TaskSubmitted,
    TaskSucceeded,
    new_event_id,
)
from eventsrc.events.subjects import EVENTS_FILTER
from eventsrc.node.builtins import BUILTIN_SKILLS
from eventsrc.projections.snapshot import encode_snapshot, snapshot_document
from eventsrc.runner import ProjectionRunner
from eventsrc.store import EVENTS_STREAM, JetStreamEventStore, NatsOptions, connect_nats
from eventsrc.store.server import EmbeddedServer
from eventsrc.store.snapshots import SnapshotStore

log = logging.getLogger("benchmarks")

T0: Final = datetime(2026, 1, 1, tzinfo=UTC)
NODES: Final = 4
CHUNK_TASKS: Final = 2_500
TAIL_EVENTS: Final = 1_000
FULL_ROUNDS: Final = 3
"""Rounds per side of ``rebuild.rate`` in full mode: one round of ours is ~40 s at 1M."""

_SKILL: Final = "python"
_SPEC: Final = TaskSpec(skills=(_SKILL,), payload={"code": "print(1)"})
_REPLAY_TIMEOUT_S: Final = 900.0


def prelude() -> list[Event]:
    """What precedes the work: a leader, the skill, the nodes joining and registering it."""
    coordinator = {"time": T0, "producer": "coordinator", "epoch": 1}
    events: list[Event] = [
        LeaderElected(event_id=new_event_id(), **coordinator, coordinator_id="c1"),
        SkillRegistered(event_id=new_event_id(), **coordinator, metadata=BUILTIN_SKILLS[_SKILL]),
    ]
    for index in range(NODES):
        node = f"n{index}"
        envelope = {"time": T0, "producer": f"node:{node}", "node_id": node}
        events.append(
            NodeJoined(
                event_id=new_event_id(), **envelope, incarnation="i1", capacity=16, cpu_count=2
            )
        )
        events.append(
            SkillInstanceRegistered(
                event_id=new_event_id(), **envelope, skill=_SKILL, incarnation="i1"
            )
        )
    return events


def task_lifecycles(first: int, count: int, *, epoch: int = 1) -> list[Event]:
    """``count`` tasks from number ``first`` on, 4 events each, round-robin over the nodes;
    the coordinator's events carry leader ``epoch`` (a later leader fences older ones)."""
    later = T0 + timedelta(minutes=10)
    events: list[Event] = []
    for number in range(first, first + count):
        task_id, node = f"t{number}", f"n{number % NODES}"
        coordinator = {"time": T0, "producer": "coordinator", "epoch": epoch, "task_id": task_id}
        worker = {"time": T0, "producer": f"node:{node}", "task_id": task_id, "node_id": node}
        events += [
            TaskSubmitted(event_id=new_event_id(), **coordinator, spec=_SPEC, queue_deadline=later),
            TaskAssigned(
                event_id=new_event_id(),
                **coordinator,
                node_id=node,
                attempt=1,
                skills=_SPEC.skills,
                payload=_SPEC.payload,
                run_timeout_s=600,
                run_deadline=later,
            ),
            TaskStarted(event_id=new_event_id(), **worker, attempt=1),
            TaskSucceeded(
                event_id=new_event_id(),
                **worker,
                attempt=1,
                result={"stdout": "1\n"},
                duration_ms=3.5,
            ),
        ]
    return events


def history_chunks(n: int) -> Iterator[list[Event]]:
    """The history of ``n`` events (``n >= len(prelude())``) in chunks of ~10k events.

    Tasks are numbered from 0; ``tasks_in(n)`` is the first number not used.
    """
    tasks, queued = divmod(n - len(prelude()), 4)
    yield prelude()
    for start in range(0, tasks, CHUNK_TASKS):
        yield task_lifecycles(start, min(CHUNK_TASKS, tasks - start))
    # What does not fill a lifecycle: submissions of tasks that are still queued.
    yield task_lifecycles(tasks, queued)[::4]


def tasks_in(n: int) -> int:
    """How many task numbers the history of ``n`` events uses."""
    lifecycles, queued = divmod(n - len(prelude()), 4)
    return lifecycles + queued


@dataclass(slots=True)
class History:
    """The stored history: raw nats-py's connection to its private server, the store on
    ours, its size and what the benchmarks learnt of it (the snapshot, the cold full
    replays in ms per round)."""

    nc: Client
    store: JetStreamEventStore
    events: int
    tasks: int
    snapshot_seq: int = 0
    full_replay_ms: tuple[list[float], list[float]] | None = None


@asynccontextmanager
async def stored_history(n: int) -> AsyncIterator[History]:
    """Start a server on a temporary dir, store ``n`` events, yield it; stop it at the end."""
    with tempfile.TemporaryDirectory(prefix="eventsrc-bench-history-") as tmp:
        async with EmbeddedServer(tmp, port=0, sync=SETUP_SYNC) as server:
            assert server.url is not None
            nc = await nats.connect(server.url, name="eventsrc-bench-history")
            # Ours reads as every eventsrc program does, over eventsrc's own connection
            # (its header parser among others); raw over nats-py's plain client.
            options = NatsOptions(servers=(server.url,), name="eventsrc-bench-history-ours")
            ours = await connect_nats(options, long_running=True)
            try:
                store = JetStreamEventStore(ours)
                await store.ensure_streams()
                started = time.perf_counter()
                for chunk in history_chunks(n):
                    await store.append_many(chunk)
                stored = await store.last_seq()
                if stored != n:
                    raise RuntimeError(f"history: stored {stored} events, expected {n}")
                log.info("  stored a history of %d events in %.0f s", n, _since(started))
                yield History(nc, store, events=n, tasks=tasks_in(n))
            finally:
                await ours.close()
                await nc.close()


async def _history(ctx: Context) -> History:
    n = ctx.size(quick=20_000, full=1_000_000)
    return await ctx.shared.get(f"history-{n}", lambda: stored_history(n))


async def raw_replay(nc: Client, *, from_seq: int = 1) -> int:
    """Raw nats-py's fastest replay of ``evt.>`` from ``from_seq``: an ordered consumer
    with a callback (``sub.messages`` costs a task per message); returns the count."""
    count = 0
    done = asyncio.Event()

    async def on_message(msg: Msg) -> None:
        nonlocal count
        count += 1
        if msg.metadata.num_pending == 0:
            done.set()

    from_start = from_seq <= 1
    sub = await nc.jetstream().subscribe(
        EVENTS_FILTER,
        ordered_consumer=True,
        stream=EVENTS_STREAM,
        cb=on_message,
        deliver_policy=DeliverPolicy.ALL if from_start else DeliverPolicy.BY_START_SEQUENCE,
        config=None if from_start else ConsumerConfig(opt_start_seq=from_seq),
        # The same generous client buffers as our store, so neither side is cut short.
        pending_msgs_limit=1_000_000,
        pending_bytes_limit=1024 * 1024 * 1024,
    )
    try:
        await asyncio.wait_for(done.wait(), _REPLAY_TIMEOUT_S)
    finally:
        await sub.unsubscribe()
    return count


async def _cold_start(history: History, *, snapshot: bool) -> float:
    """A ProjectionRunner from nothing to caught up on the whole stream, in ms; with
    ``snapshot`` it then writes the snapshot ``restart.snapshot`` starts from."""
    start = start_clock()
    # As the coordinator runs it (tune_gc: fewer collections while catching up).
    runner = ProjectionRunner(history.store, follow_heartbeats=False, tune_gc=True)
    await runner.start(timeout=_REPLAY_TIMEOUT_S)
    elapsed = time.perf_counter() - start
    await runner.close()
    _check(runner, history.events)
    if snapshot:
        # What runner.snapshot() does, for a runner made as the figure prescribes
        # (without a snapshot store, so its start cannot find an old snapshot).
        await SnapshotStore(history.store.js).save(encode_snapshot(snapshot_document(runner.state)))
        history.snapshot_seq = runner.state.last_seq
    return elapsed * 1000


async def _raw_full_replay(history: History) -> float:
    start = start_clock()
    count = await raw_replay(history.nc)
    elapsed = time.perf_counter() - start
    _check_count("full replay (raw)", count, history.events)
    return elapsed * 1000


async def rebuild_rate(ctx: Context) -> list[Figure]:
    """A ProjectionRunner catching up on N events from nothing vs a raw replay of them.

    The last round's state becomes the snapshot ``restart.snapshot`` starts from.
    """
    history = await _history(ctx)
    n = history.events
    # Full mode: fewer rounds and no warm-up, the replay is long enough to be steady.
    rounds = ctx.rounds if ctx.quick else min(ctx.rounds, FULL_ROUNDS)
    warmup = ctx.warmup if ctx.quick else 0
    last = warmup + rounds - 1

    async def ours(round_: int) -> float:
        return await _cold_start(history, snapshot=round_ == last and not history.snapshot_seq)

    async def raw(_round: int) -> float:
        return await _raw_full_replay(history)

    got_ours, got_raw = await interleave(ours, raw, rounds=rounds, warmup=warmup)
    if n == history.events:
        history.full_replay_ms = (got_ours, got_raw)
    return [
        figure(
            "rebuild.rate",
            "events/s",
            [rate(n, ms / 1000) for ms in got_ours],
            [rate(n, ms / 1000) for ms in got_raw],
            n=n,
            higher_is_better=True,
        )
    ]


async def restart_snapshot(ctx: Context) -> list[Figure]:
    """Start-up from a snapshot + the last ~1k events vs a raw read of those events.

    Also ``restart.full``: a start with no snapshot vs a raw replay of the whole stream,
    the rounds of ``rebuild.rate`` when it ran before in this run, else one each.
    """
    history = await _history(ctx)
    if not history.snapshot_seq:
        cold = await _cold_start(history, snapshot=True)
        history.full_replay_ms = ([cold], [await _raw_full_replay(history)])
    full_n = history.events
    if history.events == history.snapshot_seq:
        await history.store.append_many(task_lifecycles(history.tasks, TAIL_EVENTS // 4))
        history.tasks += TAIL_EVENTS // 4
        history.events = await history.store.last_seq()
    tail = history.events - history.snapshot_seq

    async def ours(_round: int) -> float:
        start = start_clock()
        runner = ProjectionRunner(
            history.store, snapshots=SnapshotStore(history.store.js), tune_gc=True
        )
        await runner.start(timeout=_REPLAY_TIMEOUT_S)
        elapsed = time.perf_counter() - start
        await runner.close()
        if not runner.restored_from_snapshot:
            raise RuntimeError(f"restart.snapshot: no snapshot used ({runner.snapshot_refused})")
        _check(runner, history.events)
        return elapsed * 1000

    async def raw(_round: int) -> float:
        start = start_clock()
        count = await raw_replay(history.nc, from_seq=history.snapshot_seq + 1)
        elapsed = time.perf_counter() - start
        _check_count("restart.snapshot (raw)", count, tail)
        return elapsed * 1000

    got_ours, got_raw = await interleave(ours, raw, rounds=ctx.rounds, warmup=ctx.warmup)
    assert history.full_replay_ms is not None
    full_ours, full_raw = history.full_replay_ms
    return [
        figure("restart.snapshot", "ms", got_ours, got_raw, n=tail, higher_is_better=False),
        figure("restart.full", "ms", full_ours, full_raw, n=full_n, higher_is_better=False),
    ]


def _check(runner: ProjectionRunner, n: int) -> None:
    # A figure over a partial or broken replay would be silently wrong.
    state = runner.state
    problems = state.problems
    if state.last_seq != n or problems.illegal or problems.late or problems.undecodable:
        raise RuntimeError(
            f"replay reached {state.last_seq} of {n} events with problems {problems.recent[:3]}"
        )


def _check_count(what: str, got: int, expected: int) -> None:
    if got != expected:
        raise RuntimeError(f"{what}: handled {got} messages, expected {expected}")


def _since(started: float) -> float:
    return time.perf_counter() - started


BENCHMARKS: Final = (
    Benchmark(
        "rebuild.rate",
        "a ProjectionRunner rebuilding N stored events vs a raw ordered-consumer replay",
        rebuild_rate,
    ),
    Benchmark(
        "restart",
        "runner start from a snapshot + the last 1k events vs a raw read of those 1k",
        restart_snapshot,
    ),
)

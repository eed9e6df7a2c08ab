"""Event-store figures: appends one by one and pipelined, and replay, next to raw nats-py.

Both sides write to the ``EVENTSRC_EVENTS`` stream that ``ensure_streams()`` creates.
Ours stores task events under ``evt.task.<id>...``; raw publishes the same encoded
bytes (so the same sizes) under ``evt.bench.raw.<id>...``, with a ``Nats-Msg-Id`` each.
Every round uses fresh task ids and event ids, so dedup never kicks in.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from nats.aio.msg import Msg
from nats.js import JetStreamContext

from benchmarks.harness import (
    Benchmark,
    Context,
    Figure,
    figure,
    interleave,
    percentile,
    rate,
    start_clock,
)
from eventsrc.errors import UndecodableEventError
from eventsrc.events import (
    Event,
    TaskAssigned,
    TaskSpec,
    TaskStarted,
    TaskSubmitted,
    TaskSucceeded,
    encode,
    new_event_id,
)
from eventsrc.events.subjects import bench_raw_subject, task_filter
from eventsrc.store import EVENTS_STREAM, JetStreamEventStore

T0: Final = datetime(2026, 1, 1, tzinfo=UTC)
NODE: Final = "n1"
SETUP_CHUNK: Final = 5_000
_SPEC: Final = TaskSpec(skills=("python",))


@dataclass(frozen=True, slots=True)
class RawMsg:
    """What raw nats-py publishes: the subject, the payload bytes and the message id."""

    subject: str
    payload: bytes
    msg_id: str


def submitted(task_id: str) -> TaskSubmitted:
    """The most common append: a task submission."""
    return TaskSubmitted(
        event_id=new_event_id(),
        time=T0,
        producer="coordinator",
        epoch=1,
        task_id=task_id,
        spec=_SPEC,
        queue_deadline=T0 + timedelta(hours=1),
    )


def lifecycle(task_id: str, count: int) -> list[Event]:
    """``count`` events of one task, cycling submitted, assigned, started, succeeded."""
    later = T0 + timedelta(minutes=10)
    events: list[Event] = []
    for i in range(count):
        common = {"event_id": new_event_id(), "time": T0, "task_id": task_id}
        match i % 4:
            case 0:
                events.append(
                    TaskSubmitted(
                        **common, producer="coordinator", epoch=1, spec=_SPEC, queue_deadline=later
                    )
                )
            case 1:
                events.append(
                    TaskAssigned(
                        **common,
                        producer="coordinator",
                        epoch=1,
                        node_id=NODE,
                        attempt=1,
                        skills=("python",),
                        run_timeout_s=600,
                        run_deadline=later,
                    )
                )
            case 2:
                events.append(
                    TaskStarted(**common, producer=f"node:{NODE}", node_id=NODE, attempt=1)
                )
            case _:
                events.append(
                    TaskSucceeded(
                        **common,
                        producer=f"node:{NODE}",
                        node_id=NODE,
                        attempt=1,
                        result={"stdout": "ok\n"},
                        duration_ms=12.5,
                    )
                )
    return events


def raw_subject(subject: str) -> str:
    """Where raw nats-py stores the counterpart of one of our subjects."""
    return bench_raw_subject(subject)


def as_raw(events: Sequence[Event]) -> list[RawMsg]:
    """Our events as raw messages: same bytes, raw subjects, ids unused by ours."""
    return [RawMsg(raw_subject(e.subject), encode(e), e.event_id) for e in events]


async def publish_raw_pipelined(js: JetStreamContext, msgs: Sequence[RawMsg]) -> None:
    """Raw nats-py's pipelined publish: publish_async them all, then await every ack."""
    futures = [
        await js.publish_async(m.subject, m.payload, headers={"Nats-Msg-Id": m.msg_id})
        for m in msgs
    ]
    for future in futures:
        await future


@dataclass(frozen=True, slots=True)
class _Sequential:
    rate: float
    p50_us: float
    p99_us: float


async def append_single(ctx: Context) -> list[Figure]:
    """Sequential appends, each awaited before the next: throughput and latency."""
    n = ctx.size(quick=500, full=5_000)
    store = JetStreamEventStore(ctx.nc)
    js = ctx.nc.jetstream()

    def events(side: str, round_: int) -> list[TaskSubmitted]:
        return [submitted(f"{ctx.run_id}-s{side}{round_}-{i}") for i in range(n)]

    async def ours(round_: int) -> _Sequential:
        batch = events("o", round_)
        latencies: list[float] = []
        start = start_clock()
        for event in batch:
            sent = time.perf_counter_ns()
            await store.append(event)
            latencies.append((time.perf_counter_ns() - sent) / 1000)
        return _sequential(n, time.perf_counter() - start, latencies)

    async def raw(round_: int) -> _Sequential:
        msgs = as_raw(events("r", round_))
        latencies: list[float] = []
        start = start_clock()
        for m in msgs:
            sent = time.perf_counter_ns()
            await js.publish(m.subject, m.payload, headers={"Nats-Msg-Id": m.msg_id})
            latencies.append((time.perf_counter_ns() - sent) / 1000)
        return _sequential(n, time.perf_counter() - start, latencies)

    got_ours, got_raw = await interleave(ours, raw, rounds=ctx.rounds, warmup=ctx.warmup)
    name = "append.single"
    return [
        figure(
            name,
            "msg/s",
            [r.rate for r in got_ours],
            [r.rate for r in got_raw],
            n=n,
            higher_is_better=True,
        ),
        figure(
            f"{name}.p50",
            "µs",
            [r.p50_us for r in got_ours],
            [r.p50_us for r in got_raw],
            n=n,
            higher_is_better=False,
        ),
        figure(
            f"{name}.p99",
            "µs",
            [r.p99_us for r in got_ours],
            [r.p99_us for r in got_raw],
            n=n,
            higher_is_better=False,
        ),
    ]


def _sequential(n: int, seconds: float, latencies_us: Sequence[float]) -> _Sequential:
    return _Sequential(rate(n, seconds), percentile(latencies_us, 50), percentile(latencies_us, 99))


async def append_pipelined(ctx: Context) -> list[Figure]:
    """Many appends in flight at once, all acks awaited at the end: throughput."""
    n = ctx.size(quick=5_000, full=100_000)
    store = JetStreamEventStore(ctx.nc)
    js = ctx.nc.jetstream()

    def events(side: str, round_: int) -> list[TaskSubmitted]:
        return [submitted(f"{ctx.run_id}-p{side}{round_}-{i}") for i in range(n)]

    async def ours(round_: int) -> float:
        batch = events("o", round_)
        start = start_clock()
        seqs = await store.append_many(batch)
        elapsed = time.perf_counter() - start
        _check_count("append.pipelined (ours)", len(seqs), n)
        return rate(n, elapsed)

    async def raw(round_: int) -> float:
        msgs = as_raw(events("r", round_))
        start = start_clock()
        await publish_raw_pipelined(js, msgs)
        return rate(n, time.perf_counter() - start)

    got_ours, got_raw = await interleave(ours, raw, rounds=ctx.rounds, warmup=ctx.warmup)
    return [figure("append.pipelined", "msg/s", got_ours, got_raw, n=n, higher_is_better=True)]


async def read_replay(ctx: Context) -> list[Figure]:
    """Replaying N stored events of one task, decoded, vs raw ordered-consumer delivery."""
    n = ctx.size(quick=10_000, full=200_000)
    store = JetStreamEventStore(ctx.nc)
    js = ctx.nc.jetstream()
    ours_task, raw_task = f"{ctx.run_id}-ro", f"{ctx.run_id}-rr"
    ours_filter = task_filter(ours_task)
    raw_filter = raw_subject(task_filter(raw_task))
    # Interleaved chunks, so both filters skip the same amount of the other's data.
    for offset in range(0, n, SETUP_CHUNK):
        count = min(SETUP_CHUNK, n - offset)
        await store.append_many(lifecycle(ours_task, count))
        await publish_raw_pipelined(js, as_raw(lifecycle(raw_task, count)))

    async def ours(_round: int) -> float:
        count = 0
        start = start_clock()
        async for record in store.read(subjects=ours_filter):
            if isinstance(record, UndecodableEventError):
                raise RuntimeError(f"read.replay: stored an undecodable event: {record}")
            count += 1
        elapsed = time.perf_counter() - start
        _check_count("read.replay (ours)", count, n)
        return rate(n, elapsed)

    async def raw(_round: int) -> float:
        count = 0
        done = asyncio.Event()

        # The fastest nats-py way: a callback (sub.messages costs a task per message).
        async def on_message(msg: Msg) -> None:
            nonlocal count
            count += 1
            if msg.metadata.num_pending == 0:
                done.set()

        start = start_clock()
        sub = await js.subscribe(
            raw_filter, ordered_consumer=True, stream=EVENTS_STREAM, cb=on_message
        )
        await done.wait()
        elapsed = time.perf_counter() - start
        await sub.unsubscribe()
        _check_count("read.replay (raw)", count, n)
        return rate(n, elapsed)

    got_ours, got_raw = await interleave(ours, raw, rounds=ctx.rounds, warmup=ctx.warmup)
    return [figure("read.replay", "msg/s", got_ours, got_raw, n=n, higher_is_better=True)]


def _check_count(what: str, got: int, expected: int) -> None:
    # A figure over the wrong number of messages would be silently wrong.
    if got != expected:
        raise RuntimeError(f"{what}: handled {got} messages, expected {expected}")


BENCHMARKS: Final = (
    Benchmark(
        "append.single",
        "store.append(event) awaited one by one vs js.publish with a Nats-Msg-Id",
        append_single,
    ),
    Benchmark(
        "append.pipelined",
        "store.append_many(events) vs js.publish_async for all, then every ack awaited",
        append_pipelined,
    ),
    Benchmark(
        "read.replay",
        "store.read() of N events, decoded, vs a raw ordered consumer over N messages",
        read_replay,
    ),
)

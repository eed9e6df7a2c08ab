"""Task figures: submit→result latency and saturated throughput of no-op tasks.

A real cluster of separate processes on a nats-server of its own: the coordinator
(``python -m eventsrc.coordinator --nats-url ... --no-local-node``) and worker nodes
(``python -m benchmarks.worker node``: a ``NodeAgent`` whose ``noop`` handler returns at
once), so client, coordinator and nodes never share an event loop. Raw nats-py does
request/reply with as many responder processes (``benchmarks.worker responder``, one
queue group) on the same server, with the same number of requests and concurrency.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import nats
from nats.aio.client import Client

import eventsrc
from benchmarks.children import Child, spawn
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
from benchmarks.history import history_chunks, prelude
from benchmarks.store import as_raw, lifecycle, publish_raw_pipelined
from benchmarks.worker import READY, RESPONDER_SUBJECT, SKILL, TASK_TYPE
from eventsrc.client import Cluster
from eventsrc.commands import api
from eventsrc.projections.state import Retention, TaskState
from eventsrc.store import JetStreamEventStore
from eventsrc.store.durability import SYNC_ALWAYS
from eventsrc.store.server import EmbeddedServer

log = logging.getLogger("benchmarks")

ROOT: Final = Path(__file__).resolve().parent.parent
CAPACITY: Final = 16
CONCURRENCY: Final = 200
WORKER_COUNTS: Final = (1, 2, 4)
FULL_THROUGHPUT_ROUNDS: Final = 3
FULL_BATCHES: Final = 5
"""Batches of ``api.MAX_BATCH`` tasks per round of task.batch in a full run."""
_WAIT_S: Final = 10.0
_REQUEST_TIMEOUT_S: Final = 30.0
_BATCH_RUNS: Final = itertools.count()
"""Numbers each task.batch call, so its task ids are fresh on a cluster a figure of the
same run already submitted to (the durability figures share the default one)."""


@dataclass(slots=True)
class TaskCluster:
    """The cluster's server and coordinator, a client on it, a raw connection, and the
    worker processes: ``workers[i]`` is node ``i`` and responder ``i``."""

    url: str
    log_dir: Path
    client: Cluster
    raw: Client
    workers: list[tuple[Child, Child]] = field(default_factory=list)

    async def scale(self, count: int) -> None:
        """Run exactly ``count`` nodes and ``count`` responders, all ready to take work.

        Growing keeps the running ones (1, 2, 4 start 4 of each in all, not 7); the
        first task after growing waits until the coordinator has seen the new nodes.
        """
        while len(self.workers) > count:
            await asyncio.gather(*(c.stop() for c in self.workers.pop()))
        added: list[Child] = []
        for index in range(len(self.workers), count):
            node_args = ["node", "--node-id", f"bench-{index}", "--capacity", str(CAPACITY)]
            pair = []
            for kind, args in (("node", node_args), ("responder", ["responder"])):
                pair.append(
                    await spawn(
                        ["-m", "benchmarks.worker", *args, "--nats-url", self.url],
                        name=f"{kind}-{index}",
                        log_dir=self.log_dir,
                        cwd=ROOT,
                    )
                )
            self.workers.append((pair[0], pair[1]))
            added += pair
        if added:
            await asyncio.gather(*(c.wait_for_line(READY) for c in added))
            await _submit_and_wait(self.client)

    async def stop_workers(self) -> None:
        """Stop every worker process; idempotent."""
        await self.scale(0)


@asynccontextmanager
async def task_cluster(
    *, finished_tasks: int = 0, sync: str = SYNC_ALWAYS
) -> AsyncIterator[TaskCluster]:
    """A server on a temporary dir (flushing to disk as ``sync`` says) and a coordinator
    process; stopped at the end.

    The stream first gets a history of ``finished_tasks`` finished tasks, so that the
    coordinator holds as many finished tasks as it retains in a long-running cluster
    (its per-task work grows with them) for every figure, not more for later ones.
    """
    with tempfile.TemporaryDirectory(prefix="eventsrc-bench-cluster-") as tmp:
        log_dir = Path(tmp)
        async with AsyncExitStack() as stack:
            server = await stack.enter_async_context(
                EmbeddedServer(log_dir / "nats", port=0, sync=sync)
            )
            assert server.url is not None
            url = server.url
            await _store_finished_tasks(url, finished_tasks)
            coordinator = await spawn(
                ["-m", "eventsrc.coordinator", "--nats-url", url, "--no-local-node"],
                name="coordinator",
                log_dir=log_dir,
                cwd=ROOT,
                env={"EVENTSRC_LOG_LEVEL": "WARNING"},
            )
            stack.push_async_callback(coordinator.stop)
            await coordinator.wait_for_line("coordinator ready")
            client = await stack.enter_async_context(eventsrc.connect(url, project=False))
            raw = await nats.connect(url, name="eventsrc-bench-raw")
            stack.push_async_callback(raw.close)
            cluster = TaskCluster(url, log_dir, client, raw)
            # Nodes stop (drain and leave) before the coordinator and the server.
            stack.push_async_callback(cluster.stop_workers)
            yield cluster


async def _store_finished_tasks(url: str, count: int) -> None:
    if count <= 0:
        return
    nc = await nats.connect(url, name="eventsrc-bench-prefill")
    try:
        store = JetStreamEventStore(nc)
        await store.ensure_streams()
        for chunk in history_chunks(len(prelude()) + 4 * count):
            await store.append_many(chunk)
    finally:
        await nc.close()


async def _cluster(ctx: Context, *, sync: str = SYNC_ALWAYS) -> TaskCluster:
    """The run's task cluster for ``sync`` (made on first use, then shared)."""
    retained = Retention().max_finished
    finished = ctx.size(quick=retained // 10, full=retained)
    key = "task-cluster" if sync == SYNC_ALWAYS else f"task-cluster-sync-{sync}"
    return await ctx.shared.get(key, lambda: task_cluster(finished_tasks=finished, sync=sync))


async def _submit_and_wait(client: Cluster) -> None:
    # cluster.run: submit and follow the result in one call (what `submit --wait` uses).
    done = await client.run([SKILL], None, timeout=_WAIT_S, task_type=TASK_TYPE)
    if done.state != TaskState.SUCCEEDED:
        raise RuntimeError(f"task {done.task_id} ended {done.state}: {done.error or done.reason}")


@dataclass(frozen=True, slots=True)
class _Latencies:
    p50_us: float
    p99_us: float


async def task_latency(ctx: Context, *, sync: str = SYNC_ALWAYS) -> list[Figure]:
    """One no-op task at a time, submit to result, vs one request/reply at a time; on a
    server that flushes as ``sync`` says."""
    n = ctx.size(quick=30, full=300)
    cluster = await _cluster(ctx, sync=sync)

    async def ours(_round: int) -> _Latencies:
        samples: list[float] = []
        start_clock()
        for _ in range(n):
            sent = time.perf_counter_ns()
            await _submit_and_wait(cluster.client)
            samples.append((time.perf_counter_ns() - sent) / 1000)
        return _latencies(samples)

    async def raw(_round: int) -> _Latencies:
        samples: list[float] = []
        start_clock()
        for _ in range(n):
            sent = time.perf_counter_ns()
            await cluster.raw.request(RESPONDER_SUBJECT, b"", timeout=_WAIT_S)
            samples.append((time.perf_counter_ns() - sent) / 1000)
        return _latencies(samples)

    await cluster.scale(1)
    got_ours, got_raw = await interleave(ours, raw, rounds=ctx.rounds, warmup=ctx.warmup)
    return [
        figure(
            f"task.latency.{name}",
            "µs",
            [getattr(r, attr) for r in got_ours],
            [getattr(r, attr) for r in got_raw],
            n=n,
            higher_is_better=False,
        )
        for name, attr in (("p50", "p50_us"), ("p99", "p99_us"))
    ]


def _latencies(samples: Sequence[float]) -> _Latencies:
    return _Latencies(percentile(samples, 50), percentile(samples, 99))


async def task_throughput(
    ctx: Context, *, sync: str = SYNC_ALWAYS, worker_counts: Sequence[int] = WORKER_COUNTS
) -> list[Figure]:
    """Many no-op tasks in flight with each of ``worker_counts`` workers vs raw
    request/reply; on a server that flushes as ``sync`` says."""
    n = ctx.size(quick=100, full=2_000)
    cluster = await _cluster(ctx, sync=sync)
    # Quick mode is a smoke run: one round per side. Full mode: three, each ~8 s of ours.
    rounds = 1 if ctx.quick else min(ctx.rounds, FULL_THROUGHPUT_ROUNDS)
    figures: list[Figure] = []

    async def ours(_round: int) -> float:
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one() -> str:
            async with gate:
                # cluster.run: one request, answered by the coordinator at the end.
                done = await cluster.client.run(
                    [SKILL], None, timeout=_REQUEST_TIMEOUT_S, task_type=TASK_TYPE
                )
                return done.state

        start = start_clock()
        states = await asyncio.gather(*(one() for _ in range(n)))
        elapsed = time.perf_counter() - start
        failed = [state for state in states if state != TaskState.SUCCEEDED]
        if failed:
            raise RuntimeError(f"task.throughput: {len(failed)} tasks ended {failed[0]}")
        return rate(n, elapsed)

    async def raw(_round: int) -> float:
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one() -> None:
            async with gate:
                await cluster.raw.request(RESPONDER_SUBJECT, b"", timeout=_REQUEST_TIMEOUT_S)

        start = start_clock()
        await asyncio.gather(*(one() for _ in range(n)))
        return rate(n, time.perf_counter() - start)

    for count in worker_counts:
        await cluster.scale(count)
        got_ours, got_raw = await interleave(ours, raw, rounds=rounds, warmup=ctx.warmup)
        figures.append(
            figure(
                f"task.throughput.w{count}",
                "tasks/s",
                got_ours,
                got_raw,
                n=n,
                higher_is_better=True,
            )
        )
    return figures


async def task_batch(
    ctx: Context,
    *,
    sync: str = SYNC_ALWAYS,
    rounds: int | None = None,
    batches: int = FULL_BATCHES,
) -> list[Figure]:
    """Tasks accepted per second through ``submit_many`` (batches of ``MAX_BATCH``, one
    at a time: decided, stored, applied, answered), vs raw nats-py publishing the same
    number of like events (one submission per task: ours are that, or, for the few that
    find a free slot, an assignment carrying the submission) pipelined; on a
    server that flushes as ``sync`` says, for ``rounds`` (default: the run's) of
    ``batches`` batches each (one in quick mode)."""
    n = ctx.size(quick=api.MAX_BATCH, full=batches * api.MAX_BATCH)
    cluster = await _cluster(ctx, sync=sync)
    run_id = f"{ctx.run_id}-batch{next(_BATCH_RUNS)}"
    # The node's slots take the first tasks, placed at once; the rest wait. Either way
    # one event per task is stored by the call.
    await cluster.scale(max(1, len(cluster.workers)))
    js = cluster.raw.jetstream()

    async def ours(round_: int) -> float:
        ids = [f"{run_id}-{round_}-{k}" for k in range(n)]
        batches = [
            [{"skills": SKILL, "task_id": i, "task_type": TASK_TYPE} for i in chunk]
            for chunk in (ids[k : k + api.MAX_BATCH] for k in range(0, n, api.MAX_BATCH))
        ]
        start = start_clock()
        accepted = [t for batch in batches for t in await cluster.client.submit_many(batch)]
        elapsed = time.perf_counter() - start
        refused = [t for t in accepted if t.state == TaskState.REJECTED]
        if len(accepted) != n or refused:
            raise RuntimeError(f"task.batch: {len(refused)} of {n} tasks rejected")
        # Let the node finish them off the clock, so rounds do not overlap.
        gate = asyncio.Semaphore(CONCURRENCY)

        async def finished(task_id: str) -> None:
            async with gate:
                await cluster.client.wait(task_id, timeout=_REQUEST_TIMEOUT_S)

        await asyncio.gather(*(finished(i) for i in ids))
        return rate(n, elapsed)

    async def raw(round_: int) -> float:
        msgs = as_raw(
            [e for k in range(n) for e in lifecycle(f"{run_id}-raw-{round_}-{k}", count=1)]
        )
        start = start_clock()
        await publish_raw_pipelined(js, msgs)
        return rate(n, time.perf_counter() - start)

    got_ours, got_raw = await interleave(ours, raw, rounds=rounds or ctx.rounds, warmup=ctx.warmup)
    return [figure("task.batch", "tasks/s", got_ours, got_raw, n=n, higher_is_better=True)]


BENCHMARKS: Final = (
    Benchmark(
        "task.latency",
        "one no-op task at a time, submit→result via coordinator and node processes, "
        "vs one nats-py request/reply at a time",
        task_latency,
    ),
    Benchmark(
        "task.throughput",
        f"no-op tasks, {CONCURRENCY} in flight, with 1/2/4 node processes (capacity "
        f"{CAPACITY}) vs request/reply to 1/2/4 responders",
        task_throughput,
    ),
    Benchmark(
        "task.batch",
        f"no-op tasks accepted through submit_many in batches of {api.MAX_BATCH} (one node "
        "takes them) vs js.publish_async of as many submissions and assignments, pipelined",
        task_batch,
    ),
)

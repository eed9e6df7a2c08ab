"""Durability figures: what flushing every write before its acknowledgement costs.

The same append and task figures (latency, throughput with four workers, batch
submission) on two servers of their own in one run: one that
flushes before acknowledging (``sync_interval: always``, eventsrc's default) and one
that flushes every two minutes (nats-server's own default, what ``--sync-interval 2m``
gives). Each side is next to raw nats-py on the same server config, so a ratio says
what eventsrc adds and the two modes side by side say what the disk adds. The modes
run one after the other, not interleaved: compare them on the same run only.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Final

import nats

from benchmarks import store, tasks
from benchmarks.harness import SETUP_SYNC, Benchmark, Context, Figure
from eventsrc.store import JetStreamEventStore
from eventsrc.store.durability import SYNC_ALWAYS
from eventsrc.store.server import EmbeddedServer

MODES: Final = (("always", SYNC_ALWAYS), ("interval", SETUP_SYNC))
"""Each figure's label and the server's sync_interval."""
THROUGHPUT_WORKERS: Final = (4,)
"""The worker counts of the throughput figure here (the widest of ``task.throughput``)."""
BATCH_ROUNDS: Final = tasks.FULL_THROUGHPUT_ROUNDS
BATCHES: Final = 2
"""Rounds and batches per round of the batch figure here (full runs): each round waits
for its tasks to finish off the clock, seconds under ``always``, so fewer than
``task.batch`` has."""


async def durability(ctx: Context) -> list[Figure]:
    """Appends one by one and pipelined, task latency, throughput and batch submission,
    for each flush policy."""
    figures: list[Figure] = []
    for label, sync in MODES:
        found = await _appends(ctx, sync)
        found += await tasks.task_latency(ctx, sync=sync)
        found += await tasks.task_throughput(ctx, sync=sync, worker_counts=THROUGHPUT_WORKERS)
        found += await tasks.task_batch(
            ctx, sync=sync, rounds=min(ctx.rounds, BATCH_ROUNDS), batches=BATCHES
        )
        figures += [replace(f, figure=f"durability.{label}.{f.figure}") for f in found]
    return figures


async def _appends(ctx: Context, sync: str) -> list[Figure]:
    with tempfile.TemporaryDirectory(prefix="eventsrc-bench-sync-") as tmp:
        async with EmbeddedServer(Path(tmp), port=0, sync=sync) as server:
            assert server.url is not None
            nc = await nats.connect(server.url, name="eventsrc-bench-sync", allow_reconnect=False)
            try:
                await JetStreamEventStore(nc).ensure_streams()
                own = Context(
                    nc, quick=ctx.quick, rounds=ctx.rounds, warmup=ctx.warmup, run_id=ctx.run_id
                )
                return [*await store.append_single(own), *await store.append_pipelined(own)]
            finally:
                await nc.close()


BENCHMARKS: Final = (
    Benchmark(
        "durability",
        "append.single, append.pipelined, task.latency, task.throughput.w4 and task.batch "
        "on a server flushing before every ack (always) and on one flushing every 2 min "
        "(interval), each vs raw nats-py on that server",
        durability,
    ),
)

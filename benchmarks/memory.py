"""Memory: the coordinator's resident size after 200k and after 1M completed tasks.

A long-running coordinator must not grow with history: finished tasks leave memory
after the retention (10,000 by default) and their events stay in the stream. The
figure stores the history of N finished tasks (the lifecycles of ``benchmarks.history``:
submitted, assigned, started, succeeded), starts ``python -m eventsrc.coordinator`` on
it, and reads the process's RSS once it has caught up and says it is ready; then it
stores more tasks, up to M, and does the same again. Both measured starts restore the
snapshot the previous clean stop wrote (a first, unmeasured start makes one), as a
restarted coordinator does. Raw nats-py is a process that replays the same stream with
an ordered consumer and idles (``benchmarks.worker replay``): the floor of a Python
process that has read the history.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import nats
import psutil

from benchmarks.children import Child, spawn
from benchmarks.harness import SETUP_SYNC, Benchmark, Context, Figure, figure
from benchmarks.history import CHUNK_TASKS, prelude, task_lifecycles
from eventsrc.events import Event, LeaderElected
from eventsrc.events.subjects import CLUSTER_SUBJECT
from eventsrc.ports import StoredEvent
from eventsrc.store import JetStreamEventStore
from eventsrc.store.server import EmbeddedServer

log = logging.getLogger("benchmarks")

ROOT: Final = Path(__file__).resolve().parent.parent
_MB: Final = 1024 * 1024
_READY_TIMEOUT_S: Final = 900.0


def _tasks(first: int, count: int, epoch: int) -> Iterator[list[Event]]:
    for start in range(first, first + count, CHUNK_TASKS):
        yield task_lifecycles(start, min(CHUNK_TASKS, first + count - start), epoch=epoch)


async def _leader_epoch(store: JetStreamEventStore) -> int:
    """The epoch of the newest leader: each coordinator start elects the next one, and
    the tasks stored after it must carry it (older epochs are fenced, as they should)."""
    epoch = 1
    async for record in store.read(subjects=CLUSTER_SUBJECT):
        if isinstance(record, StoredEvent) and isinstance(record.event, LeaderElected):
            epoch = max(epoch, record.event.epoch or 1)
    return epoch


async def _rss_of(args: list[str], *, ready: str, name: str, log_dir: Path) -> float:
    """Start a child, wait until it says ``ready``, read its RSS in MB, stop it."""
    child: Child = await spawn(args, name=name, log_dir=log_dir, cwd=ROOT)
    try:
        await child.wait_for_line(ready, timeout=_READY_TIMEOUT_S)
        return float(psutil.Process(child.proc.pid).memory_info().rss) / _MB
    finally:
        await child.stop()


async def coordinator_memory(ctx: Context) -> list[Figure]:
    """Coordinator RSS after a small and a large history of finished tasks, and growth."""
    small = ctx.size(quick=12_000, full=200_000)
    large = ctx.size(quick=24_000, full=1_000_000)
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="eventsrc-bench-memory-") as tmp:
        log_dir = Path(tmp) / "logs"
        log_dir.mkdir()
        async with EmbeddedServer(Path(tmp) / "nats", port=0, sync=SETUP_SYNC) as server:
            assert server.url is not None
            url = server.url
            nc = await nats.connect(url, name="eventsrc-bench-memory")
            try:
                store = JetStreamEventStore(nc)
                await store.ensure_streams()
                await store.append_many(prelude())
                stored = 0
                measured: dict[int, tuple[float, float]] = {}
                for target in (small, large):
                    started = time.perf_counter()
                    epoch = await _leader_epoch(store)
                    for chunk in _tasks(stored, target - stored, epoch):
                        await store.append_many(chunk)
                    log.info(
                        "  stored %d finished tasks (%d more in %.0f s)",
                        target,
                        target - stored,
                        time.perf_counter() - started,
                    )
                    coordinator = ["-m", "eventsrc.coordinator", "--nats-url", url]
                    coordinator.append("--no-local-node")
                    if not stored:
                        # A first start with no snapshot leaves one (on its clean stop),
                        # so both measured starts restore a snapshot and replay the rest:
                        # a restore holds the state twice for a moment, whatever the
                        # history, and that must not pass for growth.
                        await _rss_of(
                            coordinator, ready="coordinator ready", name="first", log_dir=log_dir
                        )
                    stored = target
                    ours = await _rss_of(
                        coordinator,
                        ready="coordinator ready",
                        name=f"coordinator-{target}",
                        log_dir=log_dir,
                    )
                    raw = await _rss_of(
                        ["-m", "benchmarks.worker", "replay", "--nats-url", url],
                        ready="ready",
                        name=f"replay-{target}",
                        log_dir=log_dir,
                    )
                    measured[target] = (ours, raw)
                    figures.append(
                        figure(
                            f"memory.rss.{_label(target)}",
                            "MB",
                            [ours],
                            [raw],
                            n=target,
                            higher_is_better=False,
                        )
                    )
            finally:
                await nc.close()
    (ours_small, raw_small), (ours_large, raw_large) = measured[small], measured[large]
    figures.append(
        figure(
            "memory.growth",
            "x",
            [ours_large / ours_small],
            [raw_large / raw_small],
            n=large,
            higher_is_better=False,
        )
    )
    return figures


def _label(tasks: int) -> str:
    return f"{tasks // 1_000_000}m" if tasks % 1_000_000 == 0 else f"{tasks // 1000}k"


BENCHMARKS: Final = (
    Benchmark(
        "memory",
        "RSS of a coordinator process started on the history of 200k and 1M finished tasks "
        "(ready = caught up), vs a nats-py process that replayed the same stream",
        coordinator_memory,
    ),
)

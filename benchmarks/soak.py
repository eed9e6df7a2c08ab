"""``python -m benchmarks.soak [--minutes 10] [--rate 200] [--workers 2]``: a bounded soak.

A real cluster (the task figures' one: a nats-server, a coordinator process, worker
node processes) runs no-op tasks at a steady rate for the given time, each submitted
and awaited with ``cluster.run``. Every report interval it prints one line: tasks done
and failed in the interval, submit→result p50/p99, and the resident memory of the
coordinator, the nats-server and the nodes. At the end, a summary compares the
memory of the first and the last report (a leak shows as steady growth) and exits 1
if any task failed or got lost.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import psutil

from benchmarks.harness import percentile
from benchmarks.tasks import TaskCluster, task_cluster
from benchmarks.worker import SKILL, TASK_TYPE
from eventsrc.config import ENV_PREFIX
from eventsrc.projections.state import TaskState

log = logging.getLogger("benchmarks.soak")

_MB = 1024 * 1024
_TASK_TIMEOUT_S = 60.0


@dataclass
class _Interval:
    done: int = 0
    failed: int = 0
    latencies_ms: list[float] = field(default_factory=list)


@dataclass
class Report:
    """One line of the soak's output."""

    elapsed_s: float
    done: int
    failed: int
    p50_ms: float
    p99_ms: float
    rss_mb: dict[str, float]

    def line(self) -> str:
        memory = "  ".join(f"{name} {mb:6.1f} MB" for name, mb in sorted(self.rss_mb.items()))
        return (
            f"{self.elapsed_s:7.0f} s  done {self.done:6d}  failed {self.failed:3d}  "
            f"p50 {self.p50_ms:6.2f} ms  p99 {self.p99_ms:6.2f} ms  {memory}"
        )


def _memory() -> dict[str, float]:
    """RSS of our child processes by role (nodes summed)."""
    found: dict[str, float] = {}
    for child in psutil.Process().children(recursive=True):
        try:
            command = " ".join(child.cmdline())
            rss = child.memory_info().rss / _MB
        except psutil.Error:
            continue
        if "eventsrc.coordinator" in command:
            role = "coordinator"
        elif "nats-server" in command:
            role = "nats-server"
        elif "benchmarks.worker node" in command:
            role = "nodes"
        else:
            continue
        found[role] = found.get(role, 0.0) + rss
    return found


async def soak(minutes: float, rate: float, workers: int, every_s: float) -> list[Report]:
    """Run the load; return the reports (also printed as they come)."""
    reports: list[Report] = []
    async with task_cluster() as cluster:
        await cluster.scale(workers)
        reports = await _load(cluster, minutes * 60, rate, every_s)
    return reports


async def _load(cluster: TaskCluster, seconds: float, rate: float, every_s: float) -> list[Report]:
    loop = asyncio.get_running_loop()
    start = loop.time()
    interval = _Interval()
    reports: list[Report] = []
    running: set[asyncio.Task[None]] = set()

    async def one() -> None:
        began = time.perf_counter()
        try:
            done = await cluster.client.run(
                [SKILL], None, timeout=_TASK_TIMEOUT_S, task_type=TASK_TYPE
            )
            ok = done.state == TaskState.SUCCEEDED
        except Exception as err:  # counted and reported, the soak goes on
            log.warning("task failed: %s", err)
            ok = False
        if ok:
            interval.done += 1
            interval.latencies_ms.append((time.perf_counter() - began) * 1000)
        else:
            interval.failed += 1

    next_report = start + every_s
    sent = 0
    while loop.time() - start < seconds:
        # Steady arrivals: as many as the rate says by now (catches up after a stall).
        due = int((loop.time() - start) * rate)
        while sent < due:
            task = asyncio.create_task(one())
            running.add(task)
            task.add_done_callback(running.discard)
            sent += 1
        if loop.time() >= next_report:
            reports.append(_report(loop.time() - start, interval))
            print(reports[-1].line(), flush=True)
            interval = _Interval()
            next_report += every_s
        await asyncio.sleep(0.005)
    if running:
        await asyncio.wait(running, timeout=_TASK_TIMEOUT_S)
    reports.append(_report(loop.time() - start, interval))
    print(reports[-1].line(), flush=True)
    return reports


def _report(elapsed: float, interval: _Interval) -> Report:
    lat = interval.latencies_ms
    return Report(
        elapsed_s=elapsed,
        done=interval.done,
        failed=interval.failed,
        p50_ms=percentile(lat, 50) if lat else 0.0,
        p99_ms=percentile(lat, 99) if lat else 0.0,
        rss_mb=_memory(),
    )


FLAT = 0.10
"""How much memory and median latency may move from the start to the end: 10%."""

WINDOW = 3
"""Reports compared at each end (medians): one noisy interval on a shared 2-core machine
is not a trend."""


def _ends(values: Sequence[float]) -> tuple[float, float]:
    """The medians of the first and the last ``WINDOW`` values."""
    return percentile(values[:WINDOW], 50), percentile(values[-WINDOW:], 50)


def _change(first: float, last: float) -> str:
    if not first:
        return f"{first:.1f} → {last:.1f} (no start figure to compare)"
    moved = (last - first) / first
    verdict = "flat" if abs(moved) <= FLAT else "moved"
    return f"{first:.1f} → {last:.1f} ({moved:+.0%}, {verdict})"


def summary(reports: Sequence[Report]) -> tuple[str, bool]:
    """The closing lines, and whether the soak passed (no failed task).

    Memory and latency are compared between the medians of the first and the last
    ``WINDOW`` full intervals, after the first one (the warm-up: the coordinator fills
    its window of finished tasks, the server its caches); "flat" is within ``FLAT``.
    The closing partial interval is left out. The nats-server's memory also grows with
    the distinct subjects the events stream keeps (about 1 KB per task), unless
    ``--events-max-age`` bounds the stream: that growth is the stream's, not a leak.
    The verdicts are reported, not enforced: on a shared machine latency follows the
    machine's load; only a failed or lost task fails the soak.
    """
    done = sum(r.done for r in reports)
    failed = sum(r.failed for r in reports)
    steady = list(reports[1:-1])
    lines = [f"tasks: {done} succeeded, {failed} failed or lost"]
    if len(steady) < 2 * WINDOW:
        # The two ends would overlap: any figure would look flat.
        lines.append(
            f"too short to compare: {len(steady)} full intervals after the warm-up, "
            f"{2 * WINDOW} needed (longer --minutes or shorter --every)"
        )
        return "\n".join(lines), failed == 0 and done > 0
    for role in sorted(steady[0].rss_mb):
        first, last = _ends([r.rss_mb.get(role, 0.0) for r in steady])
        lines.append(f"memory of the {role}, MB: {_change(first, last)}")
    for name, values in (
        ("p50", [r.p50_ms for r in steady]),
        ("p99", [r.p99_ms for r in steady]),
    ):
        first, last = _ends(values)
        lines.append(f"submit→result {name}, ms: {_change(first, last)}")
    return "\n".join(lines), failed == 0 and done > 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=200.0, help="tasks per second")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--every", type=float, default=30.0, help="seconds between reports")
    parser.add_argument(
        "--events-max-age",
        type=float,
        default=0.0,
        help="seconds the events stream keeps (the coordinator's events_max_age; "
        "default 0, everything, as shipped)",
    )
    args = parser.parse_args(argv)
    if args.events_max_age:
        # The coordinator process reads it from its environment when it makes the stream.
        os.environ[f"{ENV_PREFIX}EVENTS_MAX_AGE"] = f"{args.events_max_age:g}"
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    print(
        f"soak: {args.minutes:g} min of no-op tasks at {args.rate:g}/s on {args.workers} "
        f"worker processes; a line every {args.every:g} s"
        + (f"; events kept {args.events_max_age:g} s" if args.events_max_age else ""),
        flush=True,
    )
    reports = asyncio.run(soak(args.minutes, args.rate, args.workers, args.every))
    text, passed = summary(reports)
    print(text)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())

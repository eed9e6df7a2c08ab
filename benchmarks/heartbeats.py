"""Heartbeat ingestion: the coordinator's CPU share at 1,000 and 10,000 nodes, and how fast
it declares a silent node dead, next to raw nats-py consuming the same heartbeats.

Ours: a real coordinator process (``python -m eventsrc.coordinator``) and a fleet process
(``benchmarks.hb_sim publish``) that joins N nodes and appends one ``Heartbeat`` per node
every interval, spread evenly over it. The coordinator's CPU time is sampled with psutil
over windows of steady state. Then a few nodes, spread over the heartbeat phase, stop
beating; detection is the server time of their ``NodeExpired`` minus the server time of
their last stored heartbeat.

Raw: the same fleet publishing the same encoded heartbeats with ``js.publish_async``, and
a process with one plain nats-py ordered consumer over ``hb.>`` that only counts
(``benchmarks.hb_sim consume``); its CPU share is the floor for ingesting heartbeats.

Each side of each size runs on a nats-server of its own, so the thousands of heartbeat
subjects stay out of the run's shared server and the other side's consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

import nats
import psutil

from benchmarks import hb_sim
from benchmarks.harness import Benchmark, Context, Figure, figure
from eventsrc.events import NodeExpired
from eventsrc.events.subjects import ALL_NODES_FILTER, heartbeat_subject
from eventsrc.ports import HEARTBEATS_STREAM, StoredEvent
from eventsrc.store import JetStreamEventStore
from eventsrc.store.server import EmbeddedServer

log = logging.getLogger(__name__)

DETECT_SLACK_S: Final = 10.0
"""How long past ``stale_after + sweep_interval`` to wait for a ``NodeExpired``."""
SAME_TIME_S: Final = 0.001
RATE_TOLERANCE: Final = 0.95
"""A fleet storing fewer heartbeats per second than this share of its target is reported."""


@dataclass(frozen=True, slots=True)
class Plan:
    """Sizes and timings of one mode.

    ``interval_s`` is each node's heartbeat period; the coordinator runs with
    ``stale_after_s`` and ``sweep_interval_s``. CPU is sampled over ``windows`` windows of
    ``window_s`` after one interval plus ``settle_s`` of warm-up; ``dead`` nodes then stop.
    """

    sizes: tuple[int, ...]
    interval_s: float
    stale_after_s: float
    sweep_interval_s: float
    window_s: float
    windows: int
    settle_s: float
    dead: int


FULL: Final = Plan(
    sizes=(1_000, 10_000),
    interval_s=5.0,
    stale_after_s=15.0,
    sweep_interval_s=5.0,
    window_s=5.0,
    windows=4,
    settle_s=2.0,
    dead=10,
)
# Detection takes stale_after, so quick mode shortens it, and the interval with it (a
# 5 s interval with a 2 s staleness would expire every node).
QUICK: Final = Plan(
    sizes=(200,),
    interval_s=0.5,
    stale_after_s=2.0,
    sweep_interval_s=0.5,
    window_s=1.0,
    windows=3,
    settle_s=0.5,
    dead=10,
)


@dataclass(frozen=True, slots=True)
class _Ours:
    cpu: list[float]
    detect_s: list[float]


def label(nodes: int) -> str:
    """A node count as it appears in figure names: 200, 1k, 10k."""
    return f"{nodes // 1000}k" if nodes >= 1000 and nodes % 1000 == 0 else str(nodes)


async def heartbeat_ingestion(ctx: Context) -> list[Figure]:
    """CPU share per size, ours vs raw, and detection times (floor: ``stale_after``)."""
    plan = QUICK if ctx.quick else FULL
    figures: list[Figure] = []
    for nodes in plan.sizes:
        with tempfile.TemporaryDirectory(prefix="eventsrc-bench-hb-") as tmp:
            ours = await _measure_ours(Path(tmp), nodes, plan, prefix=f"{ctx.run_id}-o")
            raw = await _measure_raw(Path(tmp), nodes, plan, prefix=f"{ctx.run_id}-r")
        name = f"heartbeats.{label(nodes)}"
        floor = [plan.stale_after_s]
        figures += [
            figure(f"{name}.cpu", "% core", ours.cpu, raw, n=nodes, higher_is_better=False),
            figure(
                f"{name}.detect.p50", "s", ours.detect_s, floor, n=nodes, higher_is_better=False
            ),
            figure(
                f"{name}.detect.max",
                "s",
                [max(ours.detect_s)],
                floor,
                n=nodes,
                higher_is_better=False,
            ),
        ]
    return figures


async def _measure_ours(tmp: Path, nodes: int, plan: Plan, *, prefix: str) -> _Ours:
    async with contextlib.AsyncExitStack() as stack:
        server = await stack.enter_async_context(EmbeddedServer(tmp / "ours", port=0))
        assert server.url is not None
        coordinator_args = [
            *("-m", "eventsrc.coordinator", "--nats-url", server.url, "--no-local-node"),
            *("--data-dir", str(tmp / "coordinator")),
            *("--stale-after", f"{plan.stale_after_s:g}"),
            *("--sweep-interval", f"{plan.sweep_interval_s:g}"),
        ]
        # SIGTERM, not end of input, stops a coordinator (it drains first).
        coordinator = await stack.enter_async_context(
            hb_sim.child("coordinator", coordinator_args, tmp, eof_stops=False)
        )
        await coordinator.expect("eventsrc coordinator ready")
        nc = await nats.connect(server.url, name="eventsrc-bench-hb", allow_reconnect=False)
        stack.push_async_callback(nc.close)
        store = JetStreamEventStore(nc)
        fleet_args = _fleet_args(server.url, nodes, plan, prefix)
        fleet = await stack.enter_async_context(hb_sim.child("fleet", fleet_args, tmp))
        await fleet.expect("ready")
        # The joins are stored by now: watch what comes after them.
        async with _ExpiryWatch(store, from_seq=await store.last_seq() + 1) as watch:
            await asyncio.sleep(plan.interval_s + plan.settle_s)
            cpu = await _steady("ours", coordinator.pid, store, nodes, plan)
            detect = await _detect(store, fleet, watch, plan)
    return _Ours(cpu, detect)


async def _measure_raw(tmp: Path, nodes: int, plan: Plan, *, prefix: str) -> list[float]:
    async with contextlib.AsyncExitStack() as stack:
        server = await stack.enter_async_context(EmbeddedServer(tmp / "raw", port=0))
        assert server.url is not None
        nc = await nats.connect(server.url, name="eventsrc-bench-hb", allow_reconnect=False)
        stack.push_async_callback(nc.close)
        store = JetStreamEventStore(nc)
        await store.ensure_streams()
        consume = ["-m", "benchmarks.hb_sim", "consume", "--nats-url", server.url]
        consumer = await stack.enter_async_context(hb_sim.child("raw-consumer", consume, tmp))
        await consumer.expect("ready")
        fleet_args = [*_fleet_args(server.url, nodes, plan, prefix), "--raw"]
        async with hb_sim.child("raw-fleet", fleet_args, tmp) as fleet:
            await fleet.expect("ready")
            await asyncio.sleep(plan.interval_s + plan.settle_s)
            cpu = await _steady("raw", consumer.pid, store, nodes, plan)
            published = _count(await fleet.finish(expect="published"))
        await asyncio.sleep(0.5)  # the last acknowledged beats are still on their way
        received = _count(await consumer.finish(expect="received"))
    if received < published:
        log.warning("raw consumer got %d of %d heartbeats", received, published)
    return cpu


def _fleet_args(url: str, nodes: int, plan: Plan, prefix: str) -> list[str]:
    return [
        *("-m", "benchmarks.hb_sim", "publish", "--nats-url", url, "--prefix", prefix),
        *("--nodes", str(nodes), "--interval", f"{plan.interval_s:g}"),
    ]


async def _steady(
    side: str, pid: int, store: JetStreamEventStore, nodes: int, plan: Plan
) -> list[float]:
    """CPU shares of ``pid`` in steady state; warns when the fleet missed its rate."""
    first, start = await store.last_seq(HEARTBEATS_STREAM), time.perf_counter()
    cpu = await cpu_shares(pid, plan)
    stored = (await store.last_seq(HEARTBEATS_STREAM) - first) / (time.perf_counter() - start)
    log.info(
        "  %s, %s nodes, %.0f heartbeats/s stored: %s %s%% of a core",
        side,
        nodes,
        stored,
        "coordinator" if side == "ours" else "consumer",
        _fmt(cpu),
    )
    offered = nodes / plan.interval_s
    if stored < RATE_TOLERANCE * offered:
        log.warning("the fleet stored %.0f heartbeats/s, not %.0f", stored, offered)
    return cpu


async def cpu_shares(pid: int, plan: Plan) -> list[float]:
    """The process's CPU time per wall time in each window, in % of one core."""
    process = psutil.Process(pid)
    shares: list[float] = []
    for _ in range(plan.windows):
        before, start = _cpu_seconds(process), time.perf_counter()
        await asyncio.sleep(plan.window_s)
        used = _cpu_seconds(process) - before
        shares.append(100 * used / (time.perf_counter() - start))
    return shares


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


async def _detect(
    store: JetStreamEventStore, fleet: hb_sim.Child, watch: _ExpiryWatch, plan: Plan
) -> list[float]:
    """Stop ``plan.dead`` nodes; seconds from each one's last heartbeat to its expiry."""
    ids = (await fleet.command(f"stop {plan.dead}", expect="stopped")).split()[1:]
    last: dict[str, datetime] = {}
    for node_id in ids:
        msg = await store.js.get_last_msg(HEARTBEATS_STREAM, heartbeat_subject(node_id))
        assert msg.time is not None
        last[node_id] = msg.time
    bound = plan.stale_after_s + plan.sweep_interval_s
    expired = await watch.wait_for(ids, timeout=bound + DETECT_SLACK_S)
    missing = sorted(set(ids) - set(expired))
    if missing:
        raise RuntimeError(
            f"heartbeats: no NodeExpired within {bound + DETECT_SLACK_S:g} s for "
            f"{len(missing)} of {len(ids)} silent nodes ({', '.join(missing[:3])}...)"
        )
    detect: list[float] = []
    for node_id in ids:
        at, event = expired[node_id]
        detect.append((at - last[node_id]).total_seconds())
        seen = event.last_heartbeat_at
        # Two readings of one server time may differ in the last microsecond.
        if seen is None or abs((seen - last[node_id]).total_seconds()) > SAME_TIME_S:
            log.warning(
                "%s expired on a heartbeat at %s, its last one was at %s (coordinator behind)",
                node_id,
                seen,
                last[node_id],
            )
    others = sorted(set(watch.expired) - set(ids))
    if others:
        log.warning("%d live nodes expired too (coordinator or fleet behind)", len(others))
    if max(detect) > bound + 1:
        log.warning(
            "slowest detection %.1f s, beyond stale_after + sweep = %g s", max(detect), bound
        )
    log.info("  ours: detection %s s (bound %g s)", _fmt(detect), bound)
    return detect


class _ExpiryWatch:
    """Collects ``NodeExpired`` events from ``evt.node.*``: node id -> (server time, event)."""

    def __init__(self, store: JetStreamEventStore, *, from_seq: int) -> None:
        self._store = store
        self._from_seq = from_seq
        self.expired: dict[str, tuple[datetime, NodeExpired]] = {}
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> _ExpiryWatch:
        self._task = asyncio.create_task(self._follow(), name="expiry-watch")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task], timeout=hb_sim.STOP_TIMEOUT_S)

    async def _follow(self) -> None:
        async for record in self._store.subscribe(
            subjects=ALL_NODES_FILTER, from_seq=self._from_seq
        ):
            if isinstance(record, StoredEvent) and isinstance(record.event, NodeExpired):
                self.expired[record.event.node_id] = (record.time, record.event)
                self._changed.set()

    async def wait_for(
        self, ids: Sequence[str], *, timeout: float
    ) -> dict[str, tuple[datetime, NodeExpired]]:
        """The expiries of ``ids`` seen within ``timeout`` (all of them, unless it ran out)."""
        deadline = time.monotonic() + timeout
        while not all(i in self.expired for i in ids):
            if self._task is not None and self._task.done():
                self._task.result()  # the subscription failed: say why
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), max(deadline - time.monotonic(), 0))
            if time.monotonic() >= deadline:
                break
        return {i: self.expired[i] for i in ids if i in self.expired}


def _count(line: str) -> int:
    return int(line.split()[1])


def _fmt(values: Sequence[float]) -> str:
    return f"median {statistics.median(values):.1f} (" + ", ".join(f"{v:.1f}" for v in values) + ")"


BENCHMARKS: Final = (
    Benchmark(
        "heartbeats",
        "coordinator CPU while N nodes heartbeat every interval, and dead-node detection, "
        "vs a raw ordered consumer of the same heartbeats",
        heartbeat_ingestion,
    ),
)

"""The benchmark's registry and timing helpers: interleaved rounds, medians, percentiles.

Every benchmark measures our code and raw nats-py doing the same NATS work in the same
run, round by round (ours, raw, ours, raw...), so drift on a noisy machine hits both
sides alike. A figure is the median round of each side and their ratio, oriented so
that 1.0 means "as fast as raw nats-py" and lower means slower (see ``Figure.ratio``).
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar, cast

from nats.aio.client import Client

T = TypeVar("T")

Measure = Callable[[int], Awaitable[T]]
"""One measurement of one side; gets the round index (for fresh subjects and ids)."""

SETUP_SYNC: Final = "2m"
"""The flush policy (``sync_interval``) of servers that hold a set-up for read figures
(a stored history): how fast it was written is not measured there, and flushing each of
a million writes before its ack would take most of the run. Servers whose writes are
measured keep eventsrc's default (flushed before every ack)."""

RATIO_CONVENTION = (
    "ratio = ours/raw for throughput, raw/ours for latency: "
    "1.00 = as fast as raw nats-py, below 1 = slower"
)


@dataclass(frozen=True, slots=True)
class Figure:
    """One line of the report: our median round next to raw nats-py's.

    ``rounds_ours``/``rounds_raw`` are the per-round values the medians come from;
    ``n`` is how many messages each round handled.
    """

    figure: str
    unit: str
    ours: float
    raw: float
    higher_is_better: bool
    n: int
    rounds_ours: tuple[float, ...]
    rounds_raw: tuple[float, ...]

    @property
    def ratio(self) -> float:
        """Ours relative to raw, > 1 only if ours beat raw (which would need explaining)."""
        num, den = (self.ours, self.raw) if self.higher_is_better else (self.raw, self.ours)
        return num / den if den > 0 else math.inf

    def to_json(self) -> dict[str, Any]:
        """The figure as the ``--json`` output carries it."""
        return {
            "figure": self.figure,
            "unit": self.unit,
            "ours": self.ours,
            "raw": self.raw,
            "ratio": self.ratio,
            "samples": {
                "n": self.n,
                "rounds": len(self.rounds_ours),
                "ours": list(self.rounds_ours),
                "raw": list(self.rounds_raw),
            },
        }


def figure(
    name: str,
    unit: str,
    ours: Sequence[float],
    raw: Sequence[float],
    *,
    n: int,
    higher_is_better: bool,
) -> Figure:
    """A figure from per-round values: the median round of each side."""
    if not ours or not raw:
        raise ValueError(f"{name}: no rounds measured")
    return Figure(
        figure=name,
        unit=unit,
        ours=statistics.median(ours),
        raw=statistics.median(raw),
        higher_is_better=higher_is_better,
        n=n,
        rounds_ours=tuple(ours),
        rounds_raw=tuple(raw),
    )


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of ``values``, linearly interpolated."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"q must be within 0..100, got {q}")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def rate(count: int, seconds: float) -> float:
    """Messages per second."""
    return count / seconds if seconds > 0 else math.inf


def start_clock() -> float:
    """Collect garbage, then return ``time.perf_counter()``: call it as the clock starts.

    Whatever a measurement built beforehand (events, payloads) and the other side's
    garbage are then settled in the oldest generation, so the collections that happen
    while the clock runs are the measured code's own.
    """
    gc.collect()
    return time.perf_counter()


async def interleave(
    ours: Measure[T], raw: Measure[T], *, rounds: int, warmup: int = 0
) -> tuple[list[T], list[T]]:
    """Run ours, raw, ours, raw... for ``warmup + rounds`` rounds; keep the last ``rounds``."""
    kept_ours: list[T] = []
    kept_raw: list[T] = []
    for index in range(warmup + rounds):
        for measure, kept in ((ours, kept_ours), (raw, kept_raw)):
            result = await measure(index)
            if index >= warmup:
                kept.append(result)
    return kept_ours, kept_raw


class Shared:
    """Costly set-ups that several benchmarks of one run use (a 1M-event stream, a cluster).

    The first ``get`` of a key enters the context manager the factory returns; later
    calls return the same object; ``aclose`` leaves them all, newest first, at the end
    of the run. Shared set-ups live on servers of their own, so the purge of the main
    stream before each benchmark does not touch them.
    """

    def __init__(self) -> None:
        self._stack = AsyncExitStack()
        self._made: dict[str, object] = {}

    async def get(self, key: str, factory: Callable[[], AbstractAsyncContextManager[T]]) -> T:
        """The set-up under ``key``, made by entering ``factory()`` on first use."""
        if key not in self._made:
            self._made[key] = await self._stack.enter_async_context(factory())
        return cast(T, self._made[key])

    async def aclose(self) -> None:
        """Leave every set-up made; idempotent."""
        self._made.clear()
        await self._stack.aclose()


@dataclass(frozen=True, slots=True)
class Context:
    """What a benchmark gets: one connection shared by both sides and the run's mode.

    The eventsrc streams exist and are empty when a benchmark starts. ``run_id`` is a
    subject token unique to this run, for fresh subjects and ids. ``shared`` holds the
    set-ups benchmarks of this run share (see ``Shared``).
    """

    nc: Client
    quick: bool
    rounds: int
    warmup: int
    run_id: str
    shared: Shared = field(default_factory=Shared)

    def size(self, *, quick: int, full: int) -> int:
        """How many messages a round handles in the current mode."""
        return quick if self.quick else full


@dataclass(frozen=True, slots=True)
class Benchmark:
    """A named benchmark; ``run`` returns its figures (each named ``<name>`` or ``<name>.*``)."""

    name: str
    summary: str
    run: Callable[[Context], Awaitable[list[Figure]]]


def select(benchmarks: Sequence[Benchmark], only: str | None) -> list[Benchmark]:
    """The benchmarks that can produce a figure whose name contains ``only`` (None: all).

    That is those whose name contains ``only``, or is a prefix of it (``append.single``
    for ``append.single.p50``); filter their figures with ``keep``.
    """
    if only is None:
        return list(benchmarks)
    return [b for b in benchmarks if only in b.name or only.startswith(b.name)]


def keep(figures: Sequence[Figure], only: str | None) -> list[Figure]:
    """The figures whose name contains ``only`` (all when None)."""
    return [f for f in figures if only is None or only in f.figure]

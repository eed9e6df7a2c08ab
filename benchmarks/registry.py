"""SkillRegistry read latency on a large state, next to an aiorwlock read + dict lookup.

The state is built in memory by folding events with ``apply`` into a runner's state
(no stream: the figure is about reads): a catalog of ``SKILLS`` skills and N nodes,
each joined and holding ``SKILLS_PER_NODE`` of them, so every skill has
``N * SKILLS_PER_NODE / SKILLS`` holders. Raw is the floor of a
read: take an ``aiorwlock`` reader lock, look one key up in a dict, release.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import aiorwlock

from benchmarks.harness import (
    Benchmark,
    Context,
    Figure,
    figure,
    interleave,
    percentile,
    start_clock,
)
from eventsrc.events import (
    Event,
    NodeJoined,
    SkillCategory,
    SkillInstanceRegistered,
    SkillMetadata,
    SkillRegistered,
    new_event_id,
)
from eventsrc.projections.apply import apply
from eventsrc.registry import SkillRegistry
from eventsrc.runner import ProjectionRunner
from eventsrc.store import JetStreamEventStore
from eventsrc.writer import C, Decide

T0: Final = datetime(2026, 1, 1, tzinfo=UTC)
SKILLS: Final = 100
SKILLS_PER_NODE: Final = 20
_SEED: Final = 8


class _NoWrites:
    """The registry's writer; the figure only reads."""

    async def execute(self, decide: Decide[C], command: C) -> tuple[Event, ...]:
        raise RuntimeError("registry.query only reads")


def registry_events(nodes: int) -> list[Event]:
    """The catalog, then every node joining and registering its skills."""
    coordinator: dict[str, Any] = {"time": T0, "producer": "coordinator", "epoch": 1}
    events: list[Event] = [
        SkillRegistered(
            event_id=new_event_id(),
            **coordinator,
            metadata=SkillMetadata(
                name=f"skill-{number}", category=SkillCategory.CUSTOM, tags=("bench",)
            ),
        )
        for number in range(SKILLS)
    ]
    for index in range(nodes):
        node = f"node-{index}"
        envelope = {"time": T0, "producer": f"node:{node}", "node_id": node}
        events.append(NodeJoined(event_id=new_event_id(), **envelope, incarnation="i1", capacity=4))
        first = index * SKILLS_PER_NODE
        events += [
            SkillInstanceRegistered(
                event_id=new_event_id(), **envelope, skill=f"skill-{(first + k) % SKILLS}"
            )
            for k in range(SKILLS_PER_NODE)
        ]
    return events


@dataclass(frozen=True, slots=True)
class _Query:
    name: str
    ours: Callable[[str], Awaitable[object]]
    raw_table: dict[str, Any]
    keys: Sequence[str]


async def registry_query(ctx: Context) -> list[Figure]:
    """p50/p99 of each read, one call at a time, vs reader lock + dict lookup."""
    nodes = ctx.size(quick=1_000, full=10_000)
    n = ctx.size(quick=1_000, full=2_000)
    runner = ProjectionRunner(JetStreamEventStore(ctx.nc), follow_heartbeats=False)
    state = runner.state
    for seq, event in enumerate(registry_events(nodes), start=1):
        apply(state, event, seq=seq, time=T0)
    if len(state.nodes) != nodes or len(state.instances) != SKILLS:
        raise RuntimeError("registry.query: the state was not built as planned")
    registry = SkillRegistry(runner, _NoWrites())
    pick = random.Random(_SEED)
    skill_keys = [f"skill-{pick.randrange(SKILLS)}" for _ in range(n)]
    node_keys = [f"node-{pick.randrange(nodes)}" for _ in range(n)]
    queries = (
        _Query("nodes", registry.get_available_nodes_for_skill, state.instances, skill_keys),
        _Query("node_skills", registry.get_node_skills, state.node_skills, node_keys),
        _Query("metadata", registry.get_skill_metadata, state.skills, skill_keys),
    )
    figures: list[Figure] = []
    for query in queries:
        figures += await _measure(ctx, query, n=n)
    return figures


async def _measure(ctx: Context, query: _Query, *, n: int) -> list[Figure]:
    lock = aiorwlock.RWLock(fast=True)  # the same lock mode the runner uses
    table = query.raw_table

    async def ours(_round: int) -> tuple[float, float]:
        samples: list[float] = []
        call = query.ours
        start_clock()
        for key in query.keys:
            sent = time.perf_counter_ns()
            await call(key)
            samples.append((time.perf_counter_ns() - sent) / 1000)
        return percentile(samples, 50), percentile(samples, 99)

    async def raw(_round: int) -> tuple[float, float]:
        samples: list[float] = []
        start_clock()
        for key in query.keys:
            sent = time.perf_counter_ns()
            async with lock.reader:
                table.get(key)
            samples.append((time.perf_counter_ns() - sent) / 1000)
        return percentile(samples, 50), percentile(samples, 99)

    got_ours, got_raw = await interleave(ours, raw, rounds=ctx.rounds, warmup=ctx.warmup)
    return [
        figure(
            f"registry.query.{query.name}.{name}",
            "µs",
            [r[index] for r in got_ours],
            [r[index] for r in got_raw],
            n=n,
            higher_is_better=False,
        )
        for index, name in enumerate(("p50", "p99"))
    ]


BENCHMARKS: Final = (
    Benchmark(
        "registry.query",
        f"SkillRegistry reads on N nodes x {SKILLS_PER_NODE} of {SKILLS} skills vs an "
        "aiorwlock read + dict lookup",
        registry_query,
    ),
)

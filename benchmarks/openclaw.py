"""Node figure: assignment received → OpenClaw agent process started (the node's overhead).

A real cluster on a nats-server of its own: the coordinator, and a node process
(``python -m eventsrc.node``) on a machine with the real ``openclaw`` (installed as the
tests install it, ``eventsrc.openclaw_toolchain``) whose model is the scripted server
on 127.0.0.1 (``benchmarks.model_server``; it answers every turn with a plain reply).
The node offers OpenClaw's skills; a ``healthcheck`` task is one agent turn.

First on the node's PATH is a small bash wrapper named ``openclaw``: for ``openclaw
agent ...`` it appends ``$EPOCHREALTIME`` (no fork) to a file, then execs the real one.
Per task, the figure is that time minus the server's timestamp of the task's
assignment (the first message on ``evt.task.<id>.to.<node>``), one task at a time after
one warm-up turn. Raw: the same wrapper started from an asyncio subprocess (exiting at
once instead of exec'ing), timed from just before the spawn: the floor of starting a
process. The clocks are the same machine's.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from benchmarks.children import Child, spawn
from benchmarks.harness import Benchmark, Context, Figure, figure, percentile
from benchmarks.model_server import provider_config, serve, write_openclaw_config
from benchmarks.tasks import ROOT, task_cluster
from eventsrc.client import Cluster
from eventsrc.events.subjects import task_filter, to_node_subject
from eventsrc.node.agent_turn import remove_state_locks
from eventsrc.openclaw_toolchain import ensure_openclaw
from eventsrc.ports import StoredEvent
from eventsrc.projections.state import TaskState
from eventsrc.store import JetStreamEventStore

NODE_ID: Final = "bench-claw"
SKILL: Final = "healthcheck"
"""An OpenClaw bundled skill that is eligible on any machine (one agent turn)."""
_TURN_TIMEOUT_S: Final = 180.0
_NODE_READY_S: Final = 120.0
_NO_EXEC_ENV: Final = "EVENTSRC_BENCH_NO_EXEC"
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

_WRAPPER: Final = """#!/bin/bash
if [ "$1" = agent ]; then
  echo "$EPOCHREALTIME" >> '{log}'
  if [ -n "${no_exec}" ]; then exit 0; fi
fi
exec '{real}' "$@"
"""


async def openclaw_start(ctx: Context) -> list[Figure]:
    """N agent tasks one at a time: their assignment's stored time to the process start."""
    n = ctx.size(quick=5, full=20)
    toolchain = await asyncio.to_thread(ensure_openclaw)
    model, stop_model = serve()
    try:
        with tempfile.TemporaryDirectory(prefix="eventsrc-bench-openclaw-") as tmp:
            folder = Path(tmp)
            home = folder / "home"
            write_openclaw_config(home, provider_config(model))
            spawns = folder / "spawns.txt"
            wrapper = _write_wrapper(folder / "bin", real=toolchain.openclaw, log=spawns)
            path = os.pathsep.join([str(wrapper.parent), str(toolchain.bin_dir)])
            env = toolchain.env(home, PATH=f"{path}{os.pathsep}{os.environ.get('PATH', '')}")
            try:
                ours = await _node_overhead(env, spawns, n)
                raw = await _spawn_floor(wrapper, spawns, n)
            finally:
                remove_state_locks(home / ".openclaw")
    finally:
        stop_model()
    return [
        figure(
            f"node.openclaw.start.p{q}",
            "ms",
            [percentile(ours, q)],
            [percentile(raw, q)],
            n=n,
            higher_is_better=False,
        )
        for q in (50, 99)
    ]


def _write_wrapper(folder: Path, *, real: Path, log: Path) -> Path:
    folder.mkdir(parents=True)
    wrapper = folder / "openclaw"
    wrapper.write_text(_WRAPPER.format(log=log, real=real, no_exec=_NO_EXEC_ENV))
    wrapper.chmod(0o755)
    return wrapper


async def _node_overhead(env: Mapping[str, str], spawns: Path, n: int) -> list[float]:
    """Per task: ms from the assignment's stored time to the agent process's start."""
    async with task_cluster() as cluster:
        node = await spawn(
            ["-m", "eventsrc.node", "--nats-url", cluster.url, "--node-id", NODE_ID],
            name="openclaw-node",
            log_dir=cluster.log_dir,
            cwd=ROOT,
            env={**env, "EVENTSRC_LOG_LEVEL": "WARNING"},
        )
        try:
            await node.wait_for_line("ready", timeout=_NODE_READY_S)
            await _one_turn(cluster.client, node)  # warm-up: the first start reads from disk
            task_ids = [await _one_turn(cluster.client, node) for _ in range(n)]
        finally:
            await node.stop()
        started = _spawn_times(spawns)
        if len(started) != n + 1:
            raise RuntimeError(
                f"node.openclaw.start: {n + 1} turns ran but {len(started)} agent processes "
                f"were started:\n{node.log_tail()}"
            )
        store = JetStreamEventStore(cluster.raw)
        assigned = [await _assigned_ns(store, task_id) for task_id in task_ids]
    return [(s - a) / 1e6 for s, a in zip(started[1:], assigned, strict=True)]


async def _one_turn(client: Cluster, node: Child) -> str:
    done = await client.run([SKILL], {"check": "disk"}, timeout=_TURN_TIMEOUT_S)
    if done.state != TaskState.SUCCEEDED:
        raise RuntimeError(
            f"node.openclaw.start: task {done.task_id} ended {done.state}: "
            f"{done.error or done.reason}\n{node.log_tail()}"
        )
    return done.task_id


async def _assigned_ns(store: JetStreamEventStore, task_id: str) -> int:
    """The server's timestamp of the task's first assignment to the node, in ns."""
    subject = to_node_subject(task_id, NODE_ID)
    async for record in store.read(subjects=task_filter(task_id)):
        if isinstance(record, StoredEvent) and record.subject == subject:
            return (record.time - _EPOCH) // timedelta(microseconds=1) * 1000
    raise RuntimeError(f"node.openclaw.start: no assignment of task {task_id} is stored")


def _spawn_times(spawns: Path) -> list[int]:
    """The wrapper's ``$EPOCHREALTIME`` lines, in ns."""
    try:
        lines = spawns.read_text().split()
    except FileNotFoundError:
        return []
    return [_epoch_ns(line) for line in lines]


def _epoch_ns(text: str) -> int:
    seconds, _, micros = text.replace(",", ".").partition(".")
    return int(seconds) * 1_000_000_000 + int(micros.ljust(6, "0")[:6]) * 1000


async def _spawn_floor(wrapper: Path, spawns: Path, n: int) -> list[float]:
    """Per spawn: ms from just before an asyncio subprocess start to the wrapper's time."""
    env = {**os.environ, _NO_EXEC_ENV: "1"}
    samples: list[float] = []
    for _ in range(n):
        before = len(_spawn_times(spawns))
        sent = time.time_ns()
        proc = await asyncio.create_subprocess_exec(str(wrapper), "agent", env=env)
        await proc.wait()
        started = _spawn_times(spawns)
        if proc.returncode != 0 or len(started) != before + 1:
            raise RuntimeError(f"node.openclaw.start: the wrapper {wrapper} did not run")
        samples.append((started[-1] - sent) / 1e6)
    return samples


BENCHMARKS: Final = (
    Benchmark(
        "node.openclaw.start",
        "assignment stored → openclaw agent process started on a real node, vs a bare spawn",
        openclaw_start,
    ),
)

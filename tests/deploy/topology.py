"""The docker-compose topology as native processes: coordinators and nodes on a NATS cluster.

Every program gets all three client URLs (``--nats-url a,b,c``), as in the compose file,
so nats-py can fail over to another server by itself. Timings are the e2e ones: nodes
heartbeat every 0.5 s, a node expires after 2 s of silence, sweeps every 0.5 s.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from nats.js.api import StreamInfo

import eventsrc
from eventsrc.events import TaskAssigned, TaskFailed, TaskRequeued, TaskSucceeded
from eventsrc.ports import EVENTS_STREAM, HEARTBEATS_STREAM
from tests.e2e.conftest import (
    CLEAN_ENV,
    DEADLINE_S,
    HEARTBEAT_S,
    STALE_AFTER_S,
    SWEEP_INTERVAL_S,
    CliResult,
    descendants,
    ends_task,
    kill_all,
    poll,
    run_cli,
)
from tests.nats_cluster import REPO, NatsCluster
from tests.processes import Program, program

EXAMPLE_SKILLS = REPO / "examples" / "skills"
RUNNABLE_EXAMPLES = ("json-transform", "local-weather", "sha256", "word-count")
REPLICAS = 3
TaskResult = TaskSucceeded | TaskFailed


class Topology:
    """Coordinators and nodes as child processes on ``cluster``; ``stack`` ends them."""

    def __init__(
        self,
        cluster: NatsCluster,
        workdir: Path,
        stack: ExitStack,
        *,
        launcher: Callable[[str], Sequence[str]] = lambda name: (),
    ) -> None:
        """``launcher(name)`` goes in front of each program's command line (where the
        coordinator or node of that name runs: ``ip netns exec NS`` for a namespace)."""
        self.cluster = cluster
        self.urls = cluster.urls
        self.workdir = workdir
        self._stack = stack
        self._launcher = launcher
        self.coordinators: dict[str, Program] = {}
        self.nodes: dict[str, Program] = {}

    def start_coordinator(self, name: str, *, extra: Sequence[str] = ()) -> Program:
        """``python -m eventsrc.coordinator --nats-url a,b,c --replicas 3``, once ready."""
        child = self.spawn_coordinator(name, extra=extra)
        child.wait_for_line("ready", timeout=DEADLINE_S)
        return child

    def spawn_coordinator(self, name: str, *, extra: Sequence[str] = ()) -> Program:
        """Start a coordinator without waiting for it (it leads or stands by)."""
        args = ["-m", "eventsrc.coordinator", "--nats-url", self.urls]
        args += ["--replicas", str(REPLICAS), "--stale-after", STALE_AFTER_S]
        args += ["--sweep-interval", SWEEP_INTERVAL_S, "--data-dir", str(self.workdir / name)]
        args += list(extra)
        launcher = self._launcher(name)
        child = self._stack.enter_context(
            program(args, cwd=self.workdir, env=CLEAN_ENV, launcher=launcher)
        )
        self.coordinators[name] = child
        return child

    def spawn_node(
        self, node_id: str, *, skills_dir: Path = EXAMPLE_SKILLS, extra: Sequence[str] = ()
    ) -> Program:
        """``python -m eventsrc.node`` with the example skills, without waiting for it."""
        args = ["-m", "eventsrc.node", "--nats-url", self.urls, "--node-id", node_id]
        args += ["--heartbeat-interval", HEARTBEAT_S, "--skills-dir", str(skills_dir)]
        args += list(extra)
        workspace = self.workdir / f"ws-{node_id}"
        workspace.mkdir(exist_ok=True)
        launcher = self._launcher(node_id)
        child = self._stack.enter_context(
            program(args, cwd=workspace, env=CLEAN_ENV, launcher=launcher)
        )
        self._stack.callback(lambda: kill_all(descendants(child)))
        self.nodes[node_id] = child
        return child

    async def start_nodes(
        self,
        node_ids: Sequence[str],
        *,
        skills: Sequence[str] = RUNNABLE_EXAMPLES,
        extra: Sequence[str] = (),
    ) -> None:
        """Start nodes in parallel; return once the leader shows each alive with ``skills``."""
        started = [self.spawn_node(node_id, extra=extra) for node_id in node_ids]
        await asyncio.gather(
            *(asyncio.to_thread(c.wait_for_line, "ready", DEADLINE_S) for c in started)
        )
        for node_id in node_ids:
            await self.wait_node(node_id, "alive", skills=skills)

    async def api(self, endpoint: str, request: dict[str, Any] | None = None) -> Any:
        """One call to the leading coordinator's command API."""
        async with eventsrc.connect(self.urls, project=False) as cluster:
            return await cluster.api.call(endpoint, request)

    async def wait_node(
        self, node_id: str, state: str, *, skills: Sequence[str] = ()
    ) -> dict[str, Any]:
        async def probe() -> dict[str, Any] | None:
            nodes = (await self.api("nodes"))["nodes"]
            node = next((n for n in nodes if n["node_id"] == node_id), None)
            if node is None or node["state"] != state or not set(skills) <= set(node["skills"]):
                return None
            return dict(node)

        found: dict[str, Any] = await poll(probe, f"node {node_id} {state} with {list(skills)}")
        return found

    async def cli(self, *args: str) -> CliResult:
        return await run_cli(args, cwd=self.workdir, url=self.urls)

    async def stream_infos(self) -> dict[str, StreamInfo]:
        """Stream info of both eventsrc streams, as the cluster reports it."""
        async with eventsrc.connect(self.urls, project=False) as cluster:
            js = cluster.store.js
            return {name: await js.stream_info(name) for name in (EVENTS_STREAM, HEARTBEATS_STREAM)}


def check_one_end(task_id: str, attempts: int, events: Sequence[object]) -> int:
    """Assert one terminal event decides the task; return the late results of earlier
    attempts (a requeued attempt that finished anyway: at-least-once, kept for audit)."""
    assigned = Counter(e.attempt for e in events if isinstance(e, TaskAssigned))
    assert set(assigned.values()) == {1}, (task_id, "an attempt assigned twice", assigned)
    late = [e for e in events if isinstance(e, TaskResult) and e.attempt != attempts]
    requeued = {e.attempt for e in events if isinstance(e, TaskRequeued)}
    assert {e.attempt for e in late} <= requeued, (task_id, "a result of a live attempt", late)
    # At least once: an attempt run twice (a redelivery after a lost ack) may store the
    # same outcome twice; the projection keeps the first.
    ends = {
        (type(e).__name__, getattr(e, "attempt", None))
        for e in events
        if ends_task(e, events) and e not in late
    }
    assert len(ends) == 1, (task_id, [type(e).__name__ for e in events])
    return len(late)

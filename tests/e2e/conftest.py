"""End-to-end fixtures: one real nats-server per test, the coordinator and the nodes as
child processes (``python -m eventsrc.coordinator`` / ``python -m eventsrc.node``), and
the ``eventsrc`` CLI run as a subprocess. Nothing is mocked.

Timings are shortened so expiry shows in seconds: nodes heartbeat every 0.5 s, the
coordinator expires a node after 2 s of silence and sweeps every 0.5 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import psutil
import pytest

import eventsrc
from eventsrc.client import Cluster
from eventsrc.commands.views import TaskInfo
from eventsrc.errors import EventsrcError
from eventsrc.events import (
    TaskCancelled,
    TaskFailed,
    TaskRejected,
    TaskSucceeded,
    TaskTimedOut,
    submission_of,
)
from eventsrc.events.subjects import SUBMISSION_FILTERS
from eventsrc.ports import StoredEvent
from eventsrc.projections.state import TERMINAL_STATES
from eventsrc.store.server import EmbeddedServer
from tests.conftest import MakeServer
from tests.processes import Program, program
from tests.waiting import until_awaited

DEADLINE_S = 30.0
"""Generous bound on anything a test waits for; a healthy run needs a fraction of it."""

HEARTBEAT_S = "0.5"
STALE_AFTER_S = "2"
SWEEP_INTERVAL_S = "0.5"

TERMINAL = TERMINAL_STATES

# Our own environment must not steer the children (e.g. a stray EVENTSRC_NATS_URL).
CLEAN_ENV = {name: "" for name in os.environ if name.startswith("EVENTSRC_")}


class CliResult:
    """A finished ``eventsrc`` run: exit code, stdout, stderr and the JSON it printed."""

    def __init__(self, proc: subprocess.CompletedProcess[str]) -> None:
        self.code = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr

    @property
    def json(self) -> Any:
        lines = [line for line in self.out.splitlines() if line.strip()]
        assert len(lines) == 1, f"expected one JSON line, got:\n{self.out}\nstderr:\n{self.err}"
        return json.loads(lines[0])

    def __repr__(self) -> str:
        return f"CliResult(code={self.code}, out={self.out!r}, err={self.err!r})"


async def run_cli(
    args: Sequence[str], *, cwd: Path, url: str | None, timeout: float = 90.0
) -> CliResult:
    """``python -m eventsrc.cli [--nats-url URL] ARGS`` as a subprocess, off the event loop."""
    argv = [sys.executable, "-m", "eventsrc.cli"]
    if url is not None:
        argv += ["--nats-url", url]
    argv += list(args)

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv,
            cwd=cwd,
            env={**os.environ, **CLEAN_ENV},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    return CliResult(await asyncio.to_thread(run))


def poll(
    probe: Callable[[], Awaitable[Any]], what: str, *, timeout: float = DEADLINE_S
) -> Awaitable[Any]:
    """Await ``probe()`` every 0.1 s until it returns something truthy (the end-to-end
    tests' pace and deadline for ``until_awaited``)."""
    return until_awaited(probe, what, timeout, interval=0.1)


def descendants(proc: Program) -> list[psutil.Process]:
    """The child processes a program started (task executors), while they run."""
    with contextlib.suppress(psutil.NoSuchProcess):
        return psutil.Process(proc.proc.pid).children(recursive=True)
    return []


def kill_all(processes: Iterable[psutil.Process]) -> None:
    """SIGKILL each process still alive and reap what we can."""
    alive = []
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
            alive.append(process)
    psutil.wait_procs(alive, timeout=5)


class E2E:
    """One test's cluster: its server, the coordinator process and node processes."""

    def __init__(self, server: EmbeddedServer, workdir: Path, stack: ExitStack) -> None:
        assert server.url is not None
        self.server = server
        self.url = server.url
        self.workdir = workdir
        self._stack = stack
        self.coordinator: Program | None = None
        self.nodes: dict[str, Program] = {}
        self._strays: list[psutil.Process] = []

    def start_coordinator(self, *, extra: Sequence[str] = ()) -> Program:
        """A coordinator process on this server; returns once it says it is ready."""
        args = [
            "-m",
            "eventsrc.coordinator",
            "--nats-url",
            self.url,
            "--stale-after",
            STALE_AFTER_S,
            "--sweep-interval",
            SWEEP_INTERVAL_S,
            *extra,
        ]
        child = self._stack.enter_context(program(args, cwd=self.workdir, env=CLEAN_ENV))
        child.wait_for_line("ready", timeout=DEADLINE_S)
        self.coordinator = child
        return child

    def kill_coordinator(self) -> None:
        """``kill -9`` the coordinator (no goodbye: no final snapshot, no cleanup)."""
        assert self.coordinator is not None
        self.coordinator.proc.kill()
        self.coordinator.proc.wait(timeout=10)

    def spawn_node(
        self,
        node_id: str,
        *skills: str,
        extra: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> Program:
        """Start ``python -m eventsrc.node`` without waiting for it (``env`` on top of ours)."""
        args = ["-m", "eventsrc.node", "--nats-url", self.url, "--node-id", node_id]
        args += ["--heartbeat-interval", HEARTBEAT_S]
        for skill in skills:
            args += ["--skill", skill]
        args += list(extra)
        # Executors run in the node's own temp dirs; the node's cwd is only its workspace.
        workspace = self.workdir / f"ws-{node_id}"
        workspace.mkdir(exist_ok=True)
        child = self._stack.enter_context(
            program(args, cwd=workspace, env={**CLEAN_ENV, **(env or {})})
        )
        # Unwinds before the program's own kill (LIFO): its task children are found
        # while the node still runs and killed, so a SIGKILL of the node strands none.
        self._stack.callback(lambda: kill_all(descendants(child)))
        self.nodes[node_id] = child
        return child

    async def start_nodes(
        self,
        specs: dict[str, Sequence[str]],
        *,
        extra: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> dict[str, Program]:
        """Start nodes in parallel; return once the coordinator shows each alive with its
        skills (the projection the scheduler decides on, not just the node's word)."""
        started = {
            node_id: self.spawn_node(node_id, *skills, extra=extra, env=env)
            for node_id, skills in specs.items()
        }
        await asyncio.gather(
            *(
                asyncio.to_thread(child.wait_for_line, "ready", DEADLINE_S)
                for child in started.values()
            )
        )
        for node_id, skills in specs.items():
            await self.wait_node(node_id, "alive", skills=skills)
        return started

    async def start_node(
        self,
        node_id: str,
        *skills: str,
        extra: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> Program:
        return (await self.start_nodes({node_id: skills}, extra=extra, env=env))[node_id]

    def kill_node(self, node_id: str) -> None:
        """``kill -9`` a node and its task children: the machine is gone."""
        child = self.nodes[node_id]
        tasks = descendants(child)
        child.proc.kill()
        child.proc.wait(timeout=10)
        kill_all(tasks)

    async def api(self, endpoint: str, request: dict[str, Any] | None = None) -> Any:
        """One call to the coordinator's command API on a short-lived connection."""
        async with eventsrc.connect(self.url, project=False) as cluster:
            return await cluster.api.call(endpoint, request)

    async def node_view(self, node_id: str) -> dict[str, Any] | None:
        """The node as the coordinator's projection shows it (None when unknown)."""
        try:
            data = await self.api("nodes")
        except EventsrcError:
            return None  # e.g. the coordinator is restarting
        return next((n for n in data["nodes"] if n["node_id"] == node_id), None)

    async def wait_node(
        self, node_id: str, state: str, *, skills: Sequence[str] = ()
    ) -> dict[str, Any]:
        async def probe() -> dict[str, Any] | None:
            node = await self.node_view(node_id)
            if node is None or node["state"] != state or not set(skills) <= set(node["skills"]):
                return None
            return node

        node: dict[str, Any] = await poll(
            probe, f"node {node_id} {state} with skills {sorted(skills)}"
        )
        return node

    async def cli(self, *args: str, timeout: float = 90.0) -> CliResult:
        return await run_cli(args, cwd=self.workdir, url=self.url, timeout=timeout)


@pytest.fixture
def e2e(make_server: MakeServer, tmp_path: Path) -> Iterator[E2E]:
    """A fresh server with a coordinator process leading it; nodes via ``start_nodes``.

    Teardown kills every process the test started (and their task children) before the
    server stops.
    """
    server = make_server()
    with ExitStack() as stack:
        cluster = E2E(server, tmp_path, stack)
        cluster.start_coordinator()
        yield cluster


@pytest.fixture
async def client(e2e: E2E) -> AsyncIterator[Cluster]:
    """The Python client on the test's cluster (no local projection)."""
    async with eventsrc.connect(e2e.url, project=False) as cluster:
        yield cluster


async def wait_state(
    cluster: Cluster, task_id: str, states: Iterable[str], *, timeout: float = DEADLINE_S
) -> TaskInfo:
    """Poll a task (folded from its events) until it is in one of ``states``."""
    wanted = frozenset(states)

    async def probe() -> TaskInfo | None:
        task = await cluster.get(task_id)
        return task if task.state in wanted else None

    task: TaskInfo = await poll(probe, f"task {task_id} in {sorted(wanted)}", timeout=timeout)
    return task


async def task_events(cluster: Cluster, task_id: str) -> list[StoredEvent]:
    """Every stored event of a task's aggregate ``evt.task.<id>.>``, in stream order."""
    events: list[StoredEvent] = []
    async for record in cluster.store.read(subjects=f"evt.task.{task_id}.>"):
        assert isinstance(record, StoredEvent), record
        events.append(record)
    return events


def ends_task(event: object, events: Sequence[object]) -> bool:
    """A terminal event: any result but a retryable failure with attempts left."""
    if isinstance(event, TaskFailed):
        spec = next(s.spec for e in events if (s := submission_of(e)) is not None)
        return not event.retryable or event.attempt >= spec.max_attempts
    return isinstance(event, TaskSucceeded | TaskTimedOut | TaskCancelled | TaskRejected)


async def stored_task_ids(cluster: Cluster) -> set[str]:
    """The tasks whose submission is in the stream: what "accepted" means after a crash
    (an append may land just before the kill cuts its reply off). A submission is a
    ``TaskSubmitted``, or the ``TaskAssigned`` of a task placed at once."""
    return {
        submission.task_id
        async for record in cluster.store.read(subjects=list(SUBMISSION_FILTERS))
        if isinstance(record, StoredEvent)
        and (submission := submission_of(record.event)) is not None
    }


async def each_task_ends_once(cluster: Cluster, *, timeout: float = DEADLINE_S) -> dict[str, str]:
    """Every task submitted to the stream reaches exactly one terminal state; returns
    its final state per task id (polled with get, folded from the stream)."""
    stored = await stored_task_ids(cluster)
    outcomes: dict[str, str] = {}
    for task_id in sorted(stored):
        task = await wait_state(cluster, task_id, TERMINAL, timeout=timeout)
        events = [r.event for r in await task_events(cluster, task_id)]
        # Execution is at least once: an attempt run twice (a redelivery after a lost
        # ack) may store its result twice, and a requeued attempt may still finish; the
        # projection keeps the first end of the live attempt (docs/design.md).
        ends = {
            (type(event).__name__, getattr(event, "attempt", None))
            for event in events
            if ends_task(event, events)
            and getattr(event, "attempt", task.attempts) == task.attempts
        }
        assert len(ends) == 1, (task_id, sorted(ends, key=str))
        outcomes[task_id] = task.state
    return outcomes

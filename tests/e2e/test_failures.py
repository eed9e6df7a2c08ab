"""Crashes on real processes: a node and the coordinator killed with SIGKILL.

docs/design.md, Guarantees: no accepted task is lost, every task reaches exactly one
terminal state; a dead node is detected from missing heartbeats and its running tasks are requeued.
"""

from __future__ import annotations

import asyncio
import signal

from eventsrc.client import Cluster
from eventsrc.commands.views import TaskInfo
from eventsrc.errors import EventsrcError
from tests.e2e.conftest import DEADLINE_S, E2E, each_task_ends_once, wait_state

BURST = 30
KILL_AFTER = 10


async def test_a_killed_node_expires_and_its_task_finishes_elsewhere(
    e2e: E2E, client: Cluster
) -> None:
    await e2e.start_nodes({"node_a": ["python"], "node_b": ["python"]})
    code = "import time\ntime.sleep(3)\nprint('finished')\n"
    submitted = await client.submit("python", {"code": code})
    running = await wait_state(client, submitted.task_id, {"running"})
    victim = running.node_id
    assert victim in {"node_a", "node_b"}, running
    survivor = "node_b" if victim == "node_a" else "node_a"

    e2e.kill_node(victim)

    # stale_after 2 s + one 0.5 s sweep, then the requeue and a 3 s run on the survivor.
    task = await client.wait(submitted.task_id, timeout=DEADLINE_S)
    assert task.state == "succeeded", task
    assert task.attempts == 2
    assert task.node_id == survivor
    assert task.result["stdout"].strip() == "finished"

    nodes = {n["node_id"]: n for n in (await e2e.cli("nodes", "--json")).json["nodes"]}
    assert nodes[victim]["state"] == "expired", nodes
    assert nodes[survivor]["state"] == "alive", nodes


async def test_every_accepted_task_ends_once_across_a_coordinator_kill(
    e2e: E2E, client: Cluster
) -> None:
    await e2e.start_nodes({"node_a": ["python"], "node_b": ["python"]})
    coordinator = e2e.coordinator
    assert coordinator is not None
    accepted: dict[str, TaskInfo] = {}
    refused: dict[str, str] = {}
    gate = asyncio.Semaphore(4)  # a few submissions in flight when the kill lands

    async def submit(i: int) -> None:
        task_id = f"burst-{i:02d}"
        async with gate:
            try:
                accepted[task_id] = await client.submit(
                    "python", {"code": f"print({i})"}, task_id=task_id
                )
            except EventsrcError as err:
                refused[task_id] = str(err)
                return
            if len(accepted) == KILL_AFTER:
                coordinator.proc.kill()  # SIGKILL: no reply, no snapshot, no goodbye

    await asyncio.gather(*(submit(i) for i in range(BURST)))
    coordinator.proc.wait(timeout=10)
    assert len(accepted) >= KILL_AFTER, refused
    assert refused, "the coordinator was killed, yet every submission was answered"

    e2e.start_coordinator()

    # Accepted = TaskSubmitted is in the stream: a superset of the answered ones (an
    # append may have landed just before the kill cut the reply off).
    outcomes = await each_task_ends_once(client)
    assert set(accepted) <= set(outcomes)
    for task_id in accepted:
        assert outcomes[task_id] == "succeeded", (task_id, outcomes[task_id])

    unfinished = (await e2e.cli("tasks", "--json")).json["tasks"]
    assert unfinished == [], unfinished


async def test_wait_follows_a_task_from_before_a_restart(e2e: E2E, client: Cluster) -> None:
    await e2e.start_node("node_a", "python")
    submitted = await client.submit("python", {"code": "print('before')"})
    assert (await client.wait(submitted.task_id, timeout=DEADLINE_S)).state == "succeeded"

    assert e2e.coordinator is not None
    assert e2e.coordinator.signal(signal.SIGTERM) == 0
    e2e.start_coordinator()

    assert (await client.get(submitted.task_id)).state == "succeeded"
    task = await client.wait(submitted.task_id, timeout=5)
    assert task.state == "succeeded", task

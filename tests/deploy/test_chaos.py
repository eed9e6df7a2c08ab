"""Issue 8's whole must-show at once, under a steady load on the compose topology:
``kill -9`` the leading coordinator three times, a node, and one of the three
nats-servers. Afterwards every accepted task is in exactly one terminal state.

Two coordinators (leader and standby, a 2 s lease) and three nodes on a JetStream
cluster of three with R3 streams. Each killed coordinator is replaced by a new one
(which stands by); the killed node and server are started again. Submissions retry
with the same task id (resubmitting is idempotent) until they are accepted.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from pathlib import Path

import eventsrc
from eventsrc.client import Cluster
from eventsrc.errors import EventsrcError
from eventsrc.ports import EVENTS_STREAM
from tests.deploy.topology import Topology, check_one_end
from tests.e2e.conftest import TERMINAL, poll, stored_task_ids, task_events, wait_state
from tests.nats_cluster import NatsCluster
from tests.processes import Program
from tests.waiting import until_awaited

TASKS = 80
PACE_S = 0.12
LEASE = ["--lease-s", "2"]
NODES = ("node-1", "node-2", "node-3")
SUBMIT_DEADLINE_S = 60.0


async def events_of(client: Cluster, task_id: str) -> list[object] | None:
    """A task's events, or None while the cluster still recovers (a read timed out)."""
    try:
        return [r.event for r in await task_events(client, task_id)]
    except EventsrcError:
        return None


async def test_every_task_ends_once_through_leader_node_and_server_kills(
    nats_cluster: NatsCluster, tmp_path: Path
) -> None:
    with ExitStack() as stack:
        topology = Topology(nats_cluster, tmp_path, stack)
        topology.start_coordinator("coordinator-1", extra=LEASE)
        topology.start_coordinator("coordinator-2", extra=LEASE)
        await topology.start_nodes(NODES)
        replacements = iter(range(3, 10))
        log: list[str] = []
        started = time.monotonic()

        async def current_leader() -> str | None:
            try:
                leader = (await topology.api("status"))["leader"]
            except EventsrcError:
                return None  # between leaders
            return str(leader) if leader else None

        async def live_leader() -> tuple[str, Program] | None:
            leader = await current_leader()
            for name, child in topology.coordinators.items():
                if leader and child.proc.poll() is None and f"-{child.proc.pid}-" in leader:
                    return name, child
            return None  # between leaders, or the answer named one just killed

        async def kill_leader() -> None:
            name, child = await poll(live_leader, "a live leader to kill")
            child.proc.kill()
            topology.spawn_coordinator(f"coordinator-{next(replacements)}", extra=LEASE)
            log.append(f"{time.monotonic() - started:5.1f} s  kill -9 leader {name}")

        async def kill_node() -> None:
            topology.nodes["node-2"].proc.kill()
            log.append(f"{time.monotonic() - started:5.1f} s  kill -9 node-2")
            await asyncio.sleep(1.0)
            topology.spawn_node("node-2")  # back as a new incarnation
            log.append(f"{time.monotonic() - started:5.1f} s  node-2 started again")

        async def kill_server() -> None:
            info = (await topology.stream_infos())[EVENTS_STREAM].cluster
            assert info is not None and info.leader is not None
            victim = int(info.leader.removeprefix("nats-"))
            nats_cluster.kill(victim)
            log.append(f"{time.monotonic() - started:5.1f} s  kill -9 nats-{victim}")
            await asyncio.sleep(5.0)
            nats_cluster.start(victim)
            log.append(f"{time.monotonic() - started:5.1f} s  nats-{victim} started again")

        chaos: dict[int, Callable[[], Awaitable[None]]] = {
            10: kill_leader,
            20: kill_node,
            32: kill_server,
            48: kill_leader,
            64: kill_leader,
        }
        faults = asyncio.Lock()

        async def one_at_a_time(action: Callable[[], Awaitable[None]]) -> None:
            async with faults:  # a fault lands once the previous one is done
                await action()

        accepted: set[str] = set()
        retries: Counter[str] = Counter()
        pending: list[asyncio.Task[None]] = []

        async def submit(i: int) -> None:
            task_id = f"chaos-{i:03d}"
            errors: list[EventsrcError] = []

            async def taken() -> bool:
                try:
                    async with eventsrc.connect(topology.urls, project=False) as client:
                        await client.submit("word-count", {"text": "w " * i}, task_id=task_id)
                except EventsrcError as err:
                    retries[type(err).__name__] += 1
                    errors.append(err)
                    return False
                return True

            await until_awaited(
                taken,
                lambda: f"{task_id} to be accepted (last error: {errors[-1]})",
                SUBMIT_DEADLINE_S,
                0.2,
            )
            accepted.add(task_id)
            if (action := chaos.pop(len(accepted), None)) is not None:
                pending.append(asyncio.create_task(one_at_a_time(action)))

        async with asyncio.TaskGroup() as group:
            for i in range(TASKS):
                group.create_task(submit(i))
                await asyncio.sleep(PACE_S)
        await asyncio.gather(*pending)
        assert not chaos, f"not every fault was injected: {sorted(chaos)}"

        async with eventsrc.connect(topology.urls, project=False) as client:
            stored = await stored_task_ids(client)
            assert accepted <= stored
            states: Counter[str] = Counter()
            late = 0
            for task_id in sorted(stored):
                task = await wait_state(client, task_id, TERMINAL, timeout=90)
                states[task.state] += 1
                events = await poll(functools.partial(events_of, client, task_id), task_id)
                late += check_one_end(task_id, task.attempts, events)
                if task.state == "succeeded":
                    assert task.result["words"] == int(task_id.removeprefix("chaos-")), task

        await poll(current_leader, "a leader after the last kill")
        print(
            "\n"
            + "\n".join(log)
            + f"\n{len(accepted)} accepted ({dict(retries)} retried submissions), "
            f"{len(stored)} stored, terminal states {dict(states)}, {late} late results "
            f"of requeued attempts kept for audit; done at {time.monotonic() - started:.1f} s"
        )
        assert len(accepted) == TASKS
        assert states == Counter({"succeeded": len(stored)}), states

"""A nats-server restart (single server, file store) in the middle of a steady load.

Nothing accepted is lost and nobody is restarted by hand: the coordinator, the nodes
and the submitting client reconnect by themselves, and every task in the stream ends
exactly once.
"""

from __future__ import annotations

import asyncio

from eventsrc.client import Cluster
from eventsrc.errors import EventsrcError
from tests.conftest import MakeServer
from tests.e2e.conftest import DEADLINE_S, E2E, each_task_ends_once
from tests.processes import Program
from tests.waiting import until, until_awaited

TASKS = 60
RESTART_AFTER = 15
IN_FLIGHT = 4


def lost(program: Program) -> int:
    """How often the program has logged losing its NATS connection."""
    return sum("lost NATS at" in line for line in list(program.stderr_lines))


async def test_every_task_ends_once_across_a_server_restart(
    e2e: E2E, client: Cluster, make_server: MakeServer
) -> None:
    await e2e.start_nodes({"node_a": ["python"], "node_b": ["python"]})
    accepted: set[str] = set()
    retries = 0
    restarted = asyncio.Event()
    half_way = asyncio.Event()
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def submit(i: int) -> None:
        task_id = f"load-{i:03d}"

        async def taken() -> bool:
            nonlocal retries
            try:
                # The same id again after a failure: resubmitting is idempotent.
                await client.submit("python", {"code": f"print({i})"}, task_id=task_id)
            except EventsrcError:
                retries += 1
                return False
            return True

        async with gate:
            await until_awaited(taken, f"{task_id} to be accepted", 2 * DEADLINE_S, 0.2)
            accepted.add(task_id)
            if len(accepted) == RESTART_AFTER:
                half_way.set()

    async def restart_server() -> None:
        await half_way.wait()
        data_dir, port = e2e.server.data_dir, e2e.server.port
        assert e2e.coordinator is not None
        programs = [e2e.coordinator, *e2e.nodes.values()]
        before = [lost(p) for p in programs]
        e2e.server.stop()
        await until(
            lambda: all(lost(p) > n for p, n in zip(programs, before, strict=True)),
            "the coordinator and every node to log the lost connection",
            DEADLINE_S,
        )
        make_server(data_dir, port=port)
        restarted.set()

    await asyncio.gather(restart_server(), *(submit(i) for i in range(TASKS)))
    assert restarted.is_set()
    assert len(accepted) == TASKS

    outcomes = await each_task_ends_once(client, timeout=2 * DEADLINE_S)
    assert set(outcomes) == accepted
    states = {state: list(outcomes.values()).count(state) for state in set(outcomes.values())}
    print(f"server restart under load: {len(outcomes)} tasks, {states}, {retries} retried")
    assert states == {"succeeded": TASKS}
    # Both processes are still the ones started before the restart.
    assert e2e.coordinator is not None and e2e.coordinator.proc.poll() is None
    assert all(node.proc.poll() is None for node in e2e.nodes.values())

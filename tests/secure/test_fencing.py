"""Fencing at the node in secure mode: a node reads the leader elections with its own
credentials (message gets, no consumer) and does not run what a deposed leader stored."""

from __future__ import annotations

from typing import Any

import eventsrc
from eventsrc.node.agent import NodeAgent
from eventsrc.node.builtins import builtin_skill
from eventsrc.store.getreads import event_store
from tests.node.test_fencing import assignment, leader_epoch, store_raw
from tests.secure.conftest import SecureServer, connect_with
from tests.waiting import until, until_awaited


async def test_a_secure_node_runs_the_current_epoch_only(secure_cluster: SecureServer) -> None:
    node_nc = await connect_with(secure_cluster, "node-A")
    zombie = await connect_with(secure_cluster, "coordinator")  # a deposed leader's rights
    runs: list[str] = []

    async def count(task: dict[str, Any]) -> str:
        runs.append(task["task_id"])
        return "ran"

    agent = NodeAgent(
        node_nc,
        event_store(node_nc, consumers=False),
        node_id="A",
        skills={"search": builtin_skill("search")},
        executors={},
        heartbeat_interval=0.5,
    )
    agent.handlers["count"] = count
    try:
        await agent.start()
        async with eventsrc.connect(
            secure_cluster.url, creds=secure_cluster.creds("reader"), project=False
        ) as cluster:

            async def joined() -> bool:
                nodes = (await cluster.api.call("nodes"))["nodes"]
                return any(n["node_id"] == "A" and n["state"] == "alive" for n in nodes)

            await until_awaited(joined, "node A to join", 10, 0.05)
        epoch = await leader_epoch(event_store(zombie, consumers=True))
        await store_raw(zombie, assignment("secure-stale", "A", epoch - 1))
        await store_raw(zombie, assignment("secure-current", "A", epoch))
        await until(lambda: "secure-current" in runs, "the current-epoch assignment", 15)
        assert runs == ["secure-current"]
    finally:
        await agent.close(leave=True)
        await node_nc.close()
        await zombie.close()

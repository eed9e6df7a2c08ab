"""The week-5 messaging API against a real server, coordinator and two nodes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest

import eventsrc
from eventsrc.node.agent import NodeAgent
from eventsrc.node.builtins import builtin_skill
from eventsrc.node.messaging import RequestTimeoutError, TaskMessaging, TaskRequestResponse
from eventsrc.store import JetStreamEventStore
from tests.waiting import until_awaited


@pytest.fixture
async def nodes(coordinator_url: str) -> AsyncIterator[dict[str, NodeAgent]]:
    nc = await nats.connect(coordinator_url)
    agents: dict[str, NodeAgent] = {}
    try:
        for node_id in ("alpha", "beta"):
            agent = NodeAgent(
                nc,
                JetStreamEventStore(nc),
                node_id=node_id,
                skills={"search": builtin_skill("search")},
                executors={},
                heartbeat_interval=0.5,
            )

            async def echo(task: dict[str, Any], node_id: str = node_id) -> dict[str, Any]:
                return {"node": node_id, "got": task["payload"]}

            agent.handlers["echo"] = echo
            await agent.start()
            agents[node_id] = agent
        yield agents
    finally:
        for agent in agents.values():
            await agent.close(leave=True)
        await nc.close()


async def wait_alive(cluster: eventsrc.Cluster, count: int) -> None:
    async def enough() -> bool:
        nodes = (await cluster.api.call("nodes"))["nodes"]
        return sum(1 for n in nodes if n["state"] == "alive" and "search" in n["skills"]) >= count

    await until_awaited(enough, f"{count} nodes to be alive", 10, 0.05)


async def test_send_and_broadcast_gather_results(
    coordinator_url: str, nodes: dict[str, NodeAgent]
) -> None:
    async with eventsrc.connect(coordinator_url, project=False) as cluster:
        await wait_alive(cluster, 2)
        messaging = TaskMessaging(cluster)
        await messaging.start()
        task = {"skills": ["search"], "payload": {"q": "nats"}, "task_type": "echo"}
        one = await messaging.send_task(task, "beta", timeout=20)
        assert one.state == "succeeded" and one.result == {"node": "beta", "got": {"q": "nats"}}

        gathered = await messaging.broadcast_task(task, timeout=20)
        assert sorted(gathered) == ["alpha", "beta"]
        for node_id, info in gathered.items():
            assert info.state == "succeeded" and info.result["node"] == node_id
        (broadcast_id,) = {info.broadcast_id for info in gathered.values()}
        assert broadcast_id, gathered  # recorded, not dropped as an unknown option

        seen: list[str] = []
        other = await cluster.submit(["search"], {"q": 1}, task_type="echo")
        messaging.register_result_callback(other.task_id, lambda info: seen.append(info.state))
        assert (await messaging.wait_for_result(other.task_id, 20)).state == "succeeded"
        await messaging.stop()


async def test_request_gets_a_reply_or_a_timeout(coordinator_url: str) -> None:
    nc = await nats.connect(coordinator_url)
    try:
        alpha = TaskRequestResponse(nc, "alpha")
        beta = TaskRequestResponse(nc, "beta")

        async def status(data: Any) -> dict[str, Any]:
            return {"node": "beta", "asked": data}

        await beta.register_handler("status", status)
        assert await alpha.request("beta", "status", {"x": 1}) == {
            "node": "beta",
            "asked": {"x": 1},
        }
        with pytest.raises(RequestTimeoutError, match="did not answer"):
            await alpha.request("gamma", "status", None, timeout=0.5)
        await alpha.close()
        await beta.close()
    finally:
        await nc.close()

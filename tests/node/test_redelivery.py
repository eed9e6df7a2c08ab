"""A redelivered assignment whose attempt already ended is acked, never run again."""

from __future__ import annotations

import asyncio
from typing import Any

import nats
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

import eventsrc
from eventsrc.events.subjects import to_node_subject
from eventsrc.node.agent import NodeAgent
from eventsrc.node.builtins import builtin_skill
from eventsrc.ports import EVENTS_STREAM
from eventsrc.store import JetStreamEventStore
from eventsrc.store.assignments import Delivery
from tests.waiting import until_awaited


async def test_a_redelivered_finished_attempt_is_not_run_twice(coordinator_url: str) -> None:
    nc = await nats.connect(coordinator_url)
    runs: list[str] = []

    async def count(task: dict[str, Any]) -> str:
        runs.append(task["task_id"])
        return "ran"

    agent = NodeAgent(
        nc,
        JetStreamEventStore(nc),
        node_id="once",
        skills={"search": builtin_skill("search")},
        executors={},
        heartbeat_interval=0.5,
    )
    agent.handlers["count"] = count
    try:
        await agent.start()
        async with eventsrc.connect(coordinator_url, project=False) as cluster:

            async def joined() -> bool:
                nodes = (await cluster.api.call("nodes"))["nodes"]
                return any(n["node_id"] == "once" and "search" in n["skills"] for n in nodes)

            await until_awaited(joined, "the node to join", 5, 0.05)
            info = await cluster.submit(["search"], None, task_type="count")
            assert (await cluster.wait(info.task_id, 20)).state == "succeeded"
        assert runs == [info.task_id]

        # Deliver the same stored assignment again, as JetStream does after a lost ack:
        # a second consumer, a nak, and the redelivery (num_delivered == 2).
        js = nc.jetstream()

        async def redelivered(name: str) -> Delivery:
            await js.add_consumer(
                EVENTS_STREAM,
                ConsumerConfig(
                    durable_name=name,
                    filter_subject=to_node_subject(info.task_id, "once"),
                    ack_policy=AckPolicy.EXPLICIT,
                    deliver_policy=DeliverPolicy.ALL,
                ),
            )
            psub = await js.pull_subscribe_bind(durable=name, stream=EVENTS_STREAM)
            await (await psub.fetch(1, timeout=5))[0].nak()
            again = (await psub.fetch(1, timeout=5))[0]
            assert again.metadata.num_delivered == 2
            return Delivery(nc, again)

        await agent.deliver(await redelivered("replay-a"))
        # One turn of the loop is the point here: a run, had one been spawned, would start.
        await asyncio.sleep(0)
        assert runs == [info.task_id] and agent.running == 0

        # A restarted node remembers nothing: the stream says the attempt is over.
        restarted = NodeAgent(
            nc,
            JetStreamEventStore(nc),
            node_id="once",
            skills={"search": builtin_skill("search")},
            executors={},
        )
        restarted.handlers["count"] = count
        await restarted.deliver(await redelivered("replay-b"))
        await asyncio.sleep(0)
        assert runs == [info.task_id] and restarted.running == 0
    finally:
        await agent.close(leave=True)
        await nc.close()

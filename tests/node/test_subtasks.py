"""A Python handler that hands part of its work to the cluster with ``Cluster.run``: the
sub-task names its parent (from the attempt's context, not passed), its submission is
caused by the parent's, and the audit shows the tree. (A ``run`` command doing the same
with ``eventsrc submit``: tests/e2e/test_sub_tasks.py.)"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest

import eventsrc
from eventsrc.events import TaskSubmitted, submission_of
from eventsrc.node.agent import NodeAgent
from eventsrc.node.builtins import builtin_skill
from eventsrc.node.executors import PythonExecutor
from eventsrc.ports import StoredEvent
from eventsrc.store import JetStreamEventStore
from replay_tools import tree
from tests.e2e.conftest import task_events

SIX_TIMES_SEVEN = {"code": "print(6*7)"}


async def submission(cluster: eventsrc.Cluster, task_id: str) -> TaskSubmitted:
    events = [e.event for e in await task_events(cluster, task_id) if isinstance(e, StoredEvent)]
    return next(s for e in events if (s := submission_of(e)) is not None)


@pytest.fixture
async def planner_and_worker(coordinator_url: str) -> AsyncIterator[None]:
    """Node ``planner`` runs ``fanout`` tasks with a handler that submits a python
    sub-task; node ``worker`` runs python."""
    nc = await nats.connect(coordinator_url)
    planner = NodeAgent(
        nc,
        JetStreamEventStore(nc),
        node_id="planner",
        skills={"search": builtin_skill("search")},
        executors={},
        heartbeat_interval=0.5,
    )

    async def fanout(task: dict[str, Any]) -> dict[str, Any]:
        async with eventsrc.connect(coordinator_url, project=False) as cluster:
            sub = await cluster.run(["python"], task["payload"], timeout=20)  # no parent given
        return {"sub_task": sub.task_id, "node": sub.node_id, "stdout": sub.result["stdout"]}

    planner.handlers["fanout"] = fanout
    worker = NodeAgent(
        nc,
        JetStreamEventStore(nc),
        node_id="worker",
        skills={"python": builtin_skill("python")},
        executors={"python": PythonExecutor()},
        heartbeat_interval=0.5,
    )
    try:
        await planner.start()
        await worker.start()
        yield
    finally:
        await planner.close(leave=True)
        await worker.close(leave=True)
        await nc.close()


async def test_a_handler_s_sub_task_carries_its_parent(
    coordinator_url: str, planner_and_worker: None
) -> None:
    async with eventsrc.connect(coordinator_url, project=False) as cluster:
        parent = await cluster.run(
            ["search"], SIX_TIMES_SEVEN, task_type="fanout", task_id="plan-1", timeout=30
        )
        assert parent.state == "succeeded", parent
        assert parent.result["stdout"] == "42\n" and parent.result["node"] == "worker"
        child = await cluster.get(parent.result["sub_task"])
        assert child.parent_task_id == "plan-1" and child.node_id == "worker"

        submitted = await submission(cluster, child.task_id)
        assert submitted.parent_task_id == "plan-1"
        assert submitted.causation_id == (await submission(cluster, "plan-1")).event_id

        family = await tree.task_tree(cluster.store, child.task_id)
        assert family.root == "plan-1" and family.children["plan-1"] == [child.task_id]
        text = await tree.task_tree_text(cluster.store, "plan-1")
        assert "tree of tasks:" in text
        assert f"└─ {child.task_id} [python]" in text
        assert f"sub-task of plan-1: task {child.task_id}" in text

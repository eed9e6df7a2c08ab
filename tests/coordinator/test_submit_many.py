"""Batch submission: many tasks in one request, decided one by one, stored in atomic
batches; against a real nats-server, an in-process coordinator and a real node."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
import orjson
import pytest

import eventsrc
from eventsrc.client import Cluster
from eventsrc.commands import api
from eventsrc.errors import InvalidRequestError, NotFoundError
from eventsrc.events import TaskAssigned, decode, submission_of
from eventsrc.events.subjects import task_id_of
from eventsrc.node.agent import NodeAgent
from eventsrc.node.builtins import builtin_skill
from eventsrc.store import EVENTS_STREAM, JetStreamEventStore, StoredEvent
from tests.cli.conftest import eventsrc_cli


async def _echo(task: dict[str, Any]) -> Any:
    return task["payload"]


@pytest.fixture
async def cluster(coordinator_url: str) -> AsyncIterator[Cluster]:
    """A cluster with one node (capacity 16) whose ``echo`` handler returns the payload."""
    nc = await nats.connect(coordinator_url)
    agent = NodeAgent(
        nc,
        JetStreamEventStore(nc),
        node_id="worker",
        skills={"search": builtin_skill("search")},
        executors={},
        capacity=16,
    )
    agent.handlers["echo"] = _echo
    try:
        await agent.start()
        async with eventsrc.connect(coordinator_url, project=False) as connected:
            yield connected
    finally:
        await agent.close(leave=True)
        await nc.close()


async def _submissions(cluster: Cluster) -> Counter[str]:
    """How many submissions the stream holds, per task id (``TaskSubmitted`` events and
    the ``TaskAssigned`` events of tasks placed at once)."""
    counts: Counter[str] = Counter()
    async for record in cluster.store.read(subjects="evt.task.>"):
        if isinstance(record, StoredEvent) and (found := submission_of(record.event)):
            counts[found.task_id] += 1
    return counts


def _specs(count: int, prefix: str) -> list[dict[str, Any]]:
    return [
        {"skills": "search", "payload": {"n": n}, "task_id": f"{prefix}-{n}", "task_type": "echo"}
        for n in range(count)
    ]


async def test_a_thousand_tasks_in_one_call_are_all_accepted_and_run(cluster: Cluster) -> None:
    accepted = await cluster.submit_many(_specs(1000, "bulk"))
    assert [t.task_id for t in accepted] == [f"bulk-{n}" for n in range(1000)]
    states = Counter(t.state for t in accepted)
    assert set(states) <= {"assigned", "running", "queued", "succeeded"}, states
    done = await asyncio.gather(*(cluster.wait(t.task_id, timeout=120) for t in accepted))
    assert [(t.state, t.result) for t in done] == [("succeeded", {"n": n}) for n in range(1000)]
    submissions = await _submissions(cluster)
    assert len(submissions) == 1000 and set(submissions.values()) == {1}


async def test_a_call_is_stored_as_one_atomic_batch_each_task_placed_with_its_submission(
    cluster: Cluster,
) -> None:
    before = await cluster.store.last_seq()
    accepted = await cluster.submit_many(_specs(16, "atomic"))  # the node's 16 slots
    placed = {"assigned", "running", "succeeded"}
    assert {t.state for t in accepted} <= placed, [(t.state, t.reason) for t in accepted]
    msgs = [await cluster.store.js.get_msg(EVENTS_STREAM, before + n) for n in range(1, 17)]
    # One batch: the call's 16 events back to back, one batch id, committed by the last.
    batch_ids = {(m.headers or {}).get("Nats-Batch-Id") for m in msgs}
    assert len(batch_ids) == 1 and None not in batch_ids
    assert (msgs[-1].headers or {}).get("Nats-Batch-Commit") == "1"
    assert [m.subject for m in msgs] == [f"evt.task.atomic-{n}.to.worker" for n in range(16)]
    # Each task's one event: its placement, carrying its submission.
    events = [decode(m.data or b"") for m in msgs]
    assert all(isinstance(e, TaskAssigned) and e.submitted is not None for e in events)


async def test_the_same_batch_again_changes_nothing(cluster: Cluster) -> None:
    first = await cluster.submit_many(_specs(50, "again"))
    await asyncio.gather(*(cluster.wait(t.task_id, timeout=60) for t in first))
    before = await cluster.store.last_seq()
    second = await cluster.submit_many(_specs(50, "again"))
    assert [t.task_id for t in second] == [t.task_id for t in first]
    assert {t.state for t in second} == {"succeeded"}
    assert await cluster.store.last_seq() == before


async def test_a_refused_task_refuses_the_batch_and_stores_nothing(cluster: Cluster) -> None:
    before = await cluster.store.last_seq()
    specs = _specs(3, "refused")
    specs[2]["after"] = "ghost"  # decided by the coordinator: no such task
    with pytest.raises(NotFoundError, match=r"^task 3 \(refused-2\): no task ghost"):
        await cluster.submit_many(specs)
    assert await cluster.store.last_seq() == before
    twice = [*_specs(2, "twice"), _specs(1, "twice")[0]]
    with pytest.raises(InvalidRequestError, match="task 3: task id twice-0 is also task 1"):
        await cluster.submit_many(twice)
    assert await cluster.store.last_seq() == before


async def test_bad_specs_and_oversized_batches_are_refused_before_sending(
    cluster: Cluster,
) -> None:
    with pytest.raises(InvalidRequestError, match=r"task 2: .*priority"):
        await cluster.submit_many([{"skills": "search"}, {"skills": "search", "priority": "x"}])
    with pytest.raises(InvalidRequestError, match="task 1: unknown task option"):
        await cluster.submit_many([{"skills": "search", "colour": "red"}])
    with pytest.raises(InvalidRequestError, match=f"more than {api.MAX_BATCH} tasks"):
        await cluster.submit_many(_specs(api.MAX_BATCH + 1, "many"))
    with pytest.raises(InvalidRequestError, match="no tasks"):
        await cluster.submit_many([])


async def test_submit_from_a_file_and_a_bad_line_named_by_its_number(
    cluster: Cluster, coordinator_url: str, tmp_path: Path
) -> None:
    lines = [
        orjson.dumps(
            {"skill": "search", "payload": {"n": n}, "task_id": f"file-{n}", "task_type": "echo"}
        ).decode()
        for n in range(5)
    ]
    good = tmp_path / "tasks.jsonl"
    good.write_text("\n".join([*lines[:2], "", *lines[2:]]) + "\n")
    done = await eventsrc_cli(
        ["submit", "--from", str(good), "--json"], cwd=tmp_path, url=coordinator_url
    )
    assert done.code == 0, done
    assert [t["task_id"] for t in done.json] == [f"file-{n}" for n in range(5)]
    text = await eventsrc_cli(["submit", "--from", str(good)], cwd=tmp_path, url=coordinator_url)
    assert text.code == 0 and "5 tasks:" in text.out, text

    ended = await asyncio.gather(*(cluster.wait(f"file-{n}", timeout=60) for n in range(5)))
    assert [t.result for t in ended] == [{"n": n} for n in range(5)]

    before = await cluster.store.last_seq()
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        "\n".join([lines[0], '{"skill": "search", "priority": "high"}', "{not json"]) + "\n"
    )
    refused = await eventsrc_cli(["submit", "--from", str(bad)], cwd=tmp_path, url=coordinator_url)
    assert refused.code != 0 and refused.out == ""
    assert refused.err.strip().splitlines() == [refused.err.strip()]
    assert refused.err.startswith(f"error: {bad} line 2: "), refused.err
    assert "priority" in refused.err
    unknown = tmp_path / "unknown.jsonl"
    unknown.write_text(lines[0] + '\n{"skills": "search"}\n')
    refused = await eventsrc_cli(
        ["submit", "--from", str(unknown)], cwd=tmp_path, url=coordinator_url
    )
    assert f"{unknown} line 2: unknown field(s) skills" in refused.err, refused
    mixed = await eventsrc_cli(
        ["submit", "--from", str(good), "--skill", "search"], cwd=tmp_path, url=coordinator_url
    )
    assert mixed.code != 0 and "drop --skill" in mixed.err, mixed
    # Nothing of the refused files was stored (a node may still expire and rejoin on a
    # loaded machine, so the stream itself may move on: its task events may not).
    stored = [r async for r in cluster.store.read(from_seq=before + 1)]
    assert [r for r in stored if task_id_of(r.subject) is not None] == [], stored

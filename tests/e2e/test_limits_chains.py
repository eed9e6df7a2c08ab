"""Cluster-wide limits, chains and delays on a real cluster: a nats-server, the
coordinator and three node processes with skill folders (``metadata.eventsrc``).

Every claim is computed from the stored events and their server times: how many tasks
held a slot at once, how many started per second, what each chained task got, when a
delayed task started. ``replay_tools verify`` is clean afterwards.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from eventsrc.client import Cluster
from eventsrc.events import TaskAssigned, TaskQueued, TaskSubmitted
from eventsrc.ports import StoredEvent
from tests.e2e.conftest import CLEAN_ENV, E2E, each_task_ends_once, task_events, wait_state

NODES = ("n1", "n2", "n3")
STEP = """\
payload = json.load(sys.stdin) or {}
before = (payload.get("after") or {}).get("result") or {}
print(json.dumps({"value": before.get("value", 0) + payload.get("add", 1)}))
"""


def skill_folder(root: Path, name: str, script: str, **ours: Any) -> None:
    """A skill folder whose ``run.py`` runs ``script``; ``ours`` go under metadata.eventsrc."""
    folder = root / name
    folder.mkdir(parents=True)
    extra = "".join(f', "{key}": {value!r}' for key, value in ours.items()).replace("'", '"')
    (folder / "SKILL.md").write_text(
        textwrap.dedent(f"""\
        ---
        name: {name}
        description: {name} for the e2e test
        metadata: {{"eventsrc": {{"run": "./run.py"{extra}}}}}
        ---
        """)
    )
    run = folder / "run.py"
    run.write_text("#!/usr/bin/env python3\nimport json, sys, time\n" + script)
    run.chmod(0o755)


async def three_nodes(e2e: E2E, skills: Path, names: Sequence[str]) -> None:
    extra = ["--skills-dir", str(skills), "--capacity", "4"]
    await e2e.start_nodes({node: names for node in NODES}, extra=extra)


async def stored(cluster: Cluster, task_ids: Sequence[str]) -> dict[str, list[StoredEvent]]:
    return {task_id: await task_events(cluster, task_id) for task_id in task_ids}


def held_slots(history: dict[str, list[StoredEvent]]) -> list[tuple[datetime, datetime]]:
    """Per attempt, from its assignment to the event that ended it (server times)."""
    spans = []
    for records in history.values():
        start = next(r.time for r in records if isinstance(r.event, TaskAssigned))
        end = next(r.time for r in reversed(records) if r.event.type.startswith("TaskSucc"))
        spans.append((start, end))
    return spans


def most_at_once(spans: list[tuple[datetime, datetime]]) -> int:
    """The most spans open at one instant (an end before a start at the same time)."""
    edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    level = peak = 0
    for _, step in edges:
        level += step
        peak = max(peak, level)
    return peak


def replay_tools(e2e: E2E, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "replay_tools", "--nats-url", e2e.url, *args],
        env={**os.environ, **CLEAN_ENV},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_a_skill_limit_and_a_key_rate_hold_across_the_cluster(
    e2e: E2E, client: Cluster, tmp_path: Path
) -> None:
    skills = tmp_path / "skills"
    skill_folder(skills, "slow", "time.sleep(0.6)\nprint(1)\n", max_concurrent=2)
    skill_folder(skills, "quick", "print(1)\n")
    await three_nodes(e2e, skills, ["slow", "quick"])
    listed = await e2e.cli("limit", "list", "--json")
    assert listed.json == [
        {"name": "skill slow", "kind": "skill", "max_running": 2, "rate": None, "running": 0}
    ]

    # max_concurrent 2 with 12 free slots: never more than 2 hold one.
    slow = [f"slow-{n}" for n in range(7)]
    await asyncio.gather(*(client.submit("slow", task_id=t) for t in slow))
    held = await wait_state(client, slow[-1], ["queued", "assigned", "running", "succeeded"])
    assert held.state != "succeeded"
    assert set((await each_task_ends_once(client)).values()) == {"succeeded"}
    history = await stored(client, slow)
    assert most_at_once(held_slots(history)) == 2
    reasons = {
        r.event.reason for rs in history.values() for r in rs if isinstance(r.event, TaskQueued)
    }
    assert reasons == {"limit skill slow: 2 of 2 running"}

    # A key's rate of 10/s over a burst of 100: at most 10 starts in any second.
    limit = await e2e.cli("limit", "set", "burst", "--rate", "10/s", "--json")
    assert limit.code == 0, limit
    assert {"name": "burst", "kind": "key", "max_running": None, "rate": "10/s", "running": 0} in (
        limit.json
    )
    burst = [f"burst-{n:03}" for n in range(100)]
    await asyncio.gather(*(client.submit("quick", task_id=t, limit_key="burst") for t in burst))
    outcomes = await each_task_ends_once(client, timeout=60)
    assert {outcomes[t] for t in burst} == {"succeeded"}
    history = await stored(client, burst)
    starts = sorted(
        next(r.time for r in rs if isinstance(r.event, TaskAssigned)) for rs in history.values()
    )
    window = timedelta(seconds=1)
    busiest = max(sum(1 for s in starts if t - window < s <= t) for t in starts)
    assert busiest <= 10
    assert starts[-1] - starts[0] >= timedelta(seconds=9)  # held, not just slow
    evidence = [
        r.event.limits for rs in history.values() for r in rs if isinstance(r.event, TaskAssigned)
    ]
    assert all(len(uses[0].window_starts) < 10 for uses in evidence)
    assert any(len(uses[0].window_starts) == 9 for uses in evidence)

    # A key's max below the skill's: the tighter one holds.
    solo = await e2e.cli("limit", "set", "solo", "--max", "1", "--json")
    assert solo.code == 0, solo
    alone = [f"solo-{n}" for n in range(3)]
    await asyncio.gather(*(client.submit("slow", task_id=t, limit_key="solo") for t in alone))
    outcomes = await each_task_ends_once(client)
    assert {outcomes[t] for t in alone} == {"succeeded"}
    history = await stored(client, alone)
    assert most_at_once(held_slots(history)) == 1
    assert "limit solo: 1 of 1 running" in {
        r.event.reason for rs in history.values() for r in rs if isinstance(r.event, TaskQueued)
    }

    removed = await e2e.cli("limit", "remove", "burst", "--json")
    assert removed.code == 0 and all(row["name"] != "burst" for row in removed.json)
    verify = replay_tools(e2e, "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr


async def test_chains_pass_results_and_a_failure_cancels_the_rest(
    e2e: E2E, client: Cluster, tmp_path: Path
) -> None:
    skills = tmp_path / "skills"
    skill_folder(skills, "step", STEP)
    skill_folder(skills, "breaks", "sys.exit('broken on purpose')\n")
    await three_nodes(e2e, skills, ["step", "breaks"])

    first = await client.submit("step", {"add": 1}, task_id="one")
    await client.submit("step", {"add": 10}, task_id="two", after=first.task_id)
    third = await e2e.cli(
        "submit", "--skill", "step", "--payload", '{"add": 100}', "--after", "two",
        "--task-id", "three", "--json",
    )  # fmt: skip
    assert third.code == 0, third
    done = await wait_state(client, "three", ["succeeded", "failed", "cancelled"])
    assert done.state == "succeeded", done
    assert done.result == {"value": 111}
    three_events = await task_events(client, "three")
    assigned = next(r.event for r in three_events if isinstance(r.event, TaskAssigned))
    assert assigned.payload == {"add": 100, "after": {"task_id": "two", "result": {"value": 11}}}

    await client.submit("step", task_id="good")
    await client.submit("breaks", task_id="bad", after="good", max_attempts=1)
    await client.submit("step", task_id="never", after="bad")
    never = await wait_state(client, "never", ["cancelled", "succeeded", "failed"])
    assert never.state == "cancelled"
    assert never.reason.startswith("task bad it runs after ended failed: "), never.reason
    assert "broken on purpose" in never.reason
    assert not any(isinstance(r.event, TaskAssigned) for r in await task_events(client, "never"))

    audit = replay_tools(e2e, "audit", "task", "two")
    assert audit.returncode == 0, audit.stderr
    assert "chain: one -> two -> three" in audit.stdout
    for task_id in ("one", "three"):
        assert f"task {task_id}:" in audit.stdout

    verify = replay_tools(e2e, "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr


async def test_a_delay_starts_no_earlier_than_asked_in_server_time(
    e2e: E2E, client: Cluster, tmp_path: Path
) -> None:
    skills = tmp_path / "skills"
    skill_folder(skills, "step", STEP)
    await three_nodes(e2e, skills, ["step"])

    delayed = await e2e.cli("submit", "--skill", "step", "--delay", "3", "--json")
    assert delayed.code == 0, delayed
    task_id = delayed.json["task_id"]
    assert delayed.json["state"] == "queued"
    await wait_state(client, task_id, ["succeeded"])
    records = await task_events(client, task_id)
    submitted = next(r.time for r in records if isinstance(r.event, TaskSubmitted))
    assigned = next(r.time for r in records if isinstance(r.event, TaskAssigned))
    assert assigned - submitted >= timedelta(seconds=3)
    assert assigned - submitted < timedelta(seconds=5)
    queued = [r.event.reason for r in records if isinstance(r.event, TaskQueued)]
    assert [reason.split(" ")[:2] for reason in queued] == [["not", "before"]]

    late = await client.submit(
        "step", task_id="late", not_before=datetime.now().astimezone() + timedelta(hours=1),
        deadline=datetime.now().astimezone() + timedelta(seconds=1),
    )  # fmt: skip
    assert late.state == "queued"
    timed_out = await wait_state(client, "late", ["timed_out"])
    assert "queue deadline" in timed_out.reason

    verify = replay_tools(e2e, "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr

"""``eventsrc get ID --follow`` and ``eventsrc tasks --watch`` print changes as they
happen: run as real processes against a real cluster, read line by line."""

from __future__ import annotations

import asyncio
import json
import signal
from typing import Any

from tests.e2e.conftest import CLEAN_ENV, DEADLINE_S, E2E
from tests.processes import Program


def follow(e2e: E2E, *args: str) -> Program:
    """``eventsrc ARGS --nats-url URL`` running in the background; ``kill()`` it."""
    return Program(
        ["-m", "eventsrc.cli", *args, "--nats-url", e2e.url], cwd=e2e.workdir, env=CLEAN_ENV
    )


async def next_json(proc: Program) -> dict[str, Any]:
    line = await asyncio.to_thread(proc.wait_for_line, "{", DEADLINE_S)
    document: dict[str, Any] = json.loads(line)
    return document


async def test_get_follow_prints_each_change_and_ends_with_the_task(e2e: E2E) -> None:
    await e2e.start_node("n-1", "python")
    # Pinned to a node that has not joined yet: it waits, so following starts mid-way.
    submitted = await e2e.cli(
        "submit",
        "--skill",
        "python",
        "--node",
        "n-2",
        "--task-id",
        "t-1",
        "--json",
        "--payload",
        '{"code": "print(42)"}',
    )
    assert submitted.code == 0 and submitted.json["state"] == "queued", submitted
    watcher = follow(e2e, "get", "t-1", "--follow", "--json")
    try:
        first = await next_json(watcher)
        assert first["task_id"] == "t-1" and first["state"] == "queued", first
        await e2e.start_node("n-2", "python")  # now it can run, while we follow
        states = [first["state"]]
        printed: list[str] = []
        while states[-1] != "succeeded":
            change = await next_json(watcher)
            assert change["task_id"] == "t-1", change
            if change.get("type") == "TaskOutput":  # the live output, between the changes
                printed += [line["text"] for line in change["lines"]]
                continue
            states.append(str(change["state"]))
        assert printed == ["42"], printed
        assert "running" in states or "assigned" in states, states
        assert change["node_id"] == "n-2" and change["result"]["stdout"] == "42\n", change
        # It ends by itself once the task has ended, exit 0 for a success.
        assert await asyncio.to_thread(watcher.proc.wait, DEADLINE_S) == 0
    finally:
        watcher.kill()


async def test_get_follow_of_an_unknown_task_says_so(e2e: E2E) -> None:
    result = await e2e.cli("get", "nope", "--follow")
    assert result.code == 1 and result.err.startswith("error: no task nope"), result


async def test_tasks_watch_prints_changes_until_interrupted(e2e: E2E) -> None:
    await e2e.start_node("n-1", "python")
    before = await e2e.cli(
        "submit", "--skill", "python", "--task-id", "old", "--wait", "--payload", '{"code": ""}'
    )
    assert before.code == 0, before
    watcher = follow(e2e, "tasks", "--watch", "--all")
    try:
        header = await asyncio.to_thread(watcher.wait_for_line, "TASK", DEADLINE_S)
        assert header.split() == [
            "TASK",
            "STATE",
            "NODE",
            "ATTEMPTS",
            "SKILLS",
            "PROGRESS",
            "REASON",
        ]
        row = await asyncio.to_thread(watcher.wait_for_line, "old", DEADLINE_S)
        assert row.split()[:3] == ["old", "succeeded", "n-1"], row
        ran = await e2e.cli(
            "submit",
            "--skill",
            "python",
            "--task-id",
            "new",
            "--wait",
            "--payload",
            '{"code": "print(1)"}',
        )
        assert ran.code == 0, ran
        seen = [await asyncio.to_thread(watcher.wait_for_line, "new ", DEADLINE_S)]
        while seen[-1].split()[1] != "succeeded":
            seen.append(await asyncio.to_thread(watcher.wait_for_line, "new ", DEADLINE_S))
        assert seen[0].split()[1] in ("queued", "assigned", "running"), seen
        assert seen[-1].split()[2] == "n-1", seen
        # Following until interrupted: Ctrl-C ends it cleanly.
        assert watcher.signal(signal.SIGINT, timeout=DEADLINE_S) == 0
    finally:
        watcher.kill()

"""Progress and live output of running tasks (EVENTSRC_OUTPUT), end to end: a real
nats-server, the coordinator and node processes, the ``eventsrc`` CLI as a subprocess.

Liveness is shown by a handshake, not by the clock: the task waits for a file the test
writes only once ``get --follow`` has printed the line before it, so each line was
shown while the task was still running.
"""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap
from pathlib import Path

from eventsrc.client import Cluster
from eventsrc.events import TaskOutput
from eventsrc.ports import EVENTS_STREAM, OUTPUT_STREAM, StoredEvent
from tests.cli.test_follow import follow
from tests.e2e.conftest import DEADLINE_S, E2E, poll, wait_state

WAIT_FOR_GO = """
def wait_for(path):
    deadline = time.monotonic() + 60
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.02)
"""


def progress_skill(root: Path) -> Path:
    """A skill folder whose ``run`` command prints 5 progress lines (and 5 other stderr
    lines) a second apart, each time waiting for the test's go-ahead file; its stdout
    is its result."""
    folder = root / "crawl"
    folder.mkdir(parents=True)
    (folder / "SKILL.md").write_text(
        textwrap.dedent("""\
        ---
        name: crawl
        description: prints its progress for the live-output test
        metadata: {"eventsrc": {"run": "./run.py"}}
        ---
        """)
    )
    run = folder / "run.py"
    run.write_text(
        f"#!{sys.executable}\nimport json, os, sys, time\n"
        + WAIT_FOR_GO
        + textwrap.dedent("""\
        go = json.load(sys.stdin)["go"]
        for step in range(1, 6):
            print(f"::progress {step / 5} page {step} of 5", file=sys.stderr, flush=True)
            print(f"fetched page {step}", file=sys.stderr, flush=True)
            wait_for(os.path.join(go, f"go-{step}"))
            time.sleep(1)
        print(json.dumps({"pages": 5}))
        """)
    )
    run.chmod(0o755)
    return root


async def output_events(cluster: Cluster, stream: str) -> list[TaskOutput]:
    found: list[TaskOutput] = []
    async for record in cluster.store.read(stream=stream):
        if isinstance(record, StoredEvent) and isinstance(record.event, TaskOutput):
            found.append(record.event)
    return found


async def test_follow_shows_progress_lines_as_they_come_before_the_end(
    e2e: E2E, client: Cluster, tmp_path: Path
) -> None:
    skills = progress_skill(tmp_path / "skills")
    await e2e.start_node("n-1", extra=["--skills-dir", str(skills)])
    await e2e.wait_node("n-1", "alive", skills=["crawl"])
    go = tmp_path / "go"
    go.mkdir()
    payload = json.dumps({"go": str(go)})
    submitted = await e2e.cli(
        "submit", "--skill", "crawl", "--task-id", "crawl-1", "--json", "--payload", payload
    )
    assert submitted.code == 0, submitted
    watcher = follow(e2e, "get", "crawl-1", "--follow")
    try:
        shown: list[str] = []
        for step in range(1, 6):
            line = await asyncio.to_thread(watcher.wait_for_line, f"page {step} of 5", DEADLINE_S)
            shown.append(line.strip())
            # Only now may the task go on: this line was printed while it ran.
            (go / f"go-{step}").touch()
        end = await asyncio.to_thread(watcher.wait_for_line, "task crawl-1: succeeded", DEADLINE_S)
        assert end.startswith("task crawl-1: succeeded"), end
        assert await asyncio.to_thread(watcher.proc.wait, DEADLINE_S) == 0
    finally:
        watcher.kill()
    assert shown == [f"[{step * 20:3d}%] page {step} of 5" for step in range(1, 6)], shown
    done = await wait_state(client, "crawl-1", ["succeeded"])
    assert done.result == {"pages": 5}

    # The lines and the progress are soft state in EVENTSRC_OUTPUT; the events stream
    # holds the task's lifecycle only.
    in_events = await output_events(client, EVENTS_STREAM)
    assert in_events == [], in_events
    batches = [b for b in await output_events(client, OUTPUT_STREAM) if b.task_id == "crawl-1"]
    lines = [(line.kind, line.text) for batch in batches for line in batch.lines]
    assert [text for kind, text in lines if kind == "stderr"] == [
        f"fetched page {step}" for step in range(1, 6)
    ]
    assert [text for kind, text in lines if kind == "stdout"] == ['{"pages": 5}']
    assert [text for kind, text in lines if kind == "progress"] == [
        f"page {step} of 5" for step in range(1, 6)
    ]
    assert batches[-1].progress == 1.0 and batches[-1].progress_message == "page 5 of 5"


async def test_child_output_lines_are_streamed_while_it_runs(
    e2e: E2E, client: Cluster, tmp_path: Path
) -> None:
    await e2e.start_node("n-1", "python")
    go = tmp_path / "go"
    code = (
        "import os, sys, time\n"
        + WAIT_FOR_GO
        + f"print('started', flush=True)\nprint('warming up', file=sys.stderr, flush=True)\n"
        f"wait_for({str(go)!r})\nprint('finished')\n"
    )
    submitted = await client.submit("python", {"code": code}, task_id="lines-1")
    seen: list[tuple[str, str]] = []
    result = None
    async with asyncio.timeout(DEADLINE_S):
        async for item in client.follow_output(submitted.task_id):
            if isinstance(item, TaskOutput):
                seen += [(line.kind, line.text) for line in item.lines]
                if ("stderr", "warming up") in seen and not go.exists():
                    assert item.task_id == "lines-1" and item.node_id == "n-1", item
                    go.touch()  # the task was waiting: these lines came live
            else:
                result = item
    assert result is not None and result.state == "succeeded", result
    assert ("stdout", "started") in seen and ("stderr", "warming up") in seen, seen
    assert seen.index(("stdout", "started")) < seen.index(("stdout", "finished")), seen


def handler_package(site: Path) -> Path:
    """An installed-looking package with a PythonSkill ``steps`` (an ``eventsrc.skills``
    entry point) whose handler reports progress, then waits for a go-ahead file."""
    package = site / "progress_skill"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        textwrap.dedent("""\
        import asyncio, os

        from eventsrc.events import SkillMetadata
        from eventsrc.node.output import progress
        from eventsrc.node.pyskills import PythonSkill


        async def run(payload):
            progress(0.25, "reading the inbox")
            progress(0.5, "halfway there")
            for _ in range(3000):
                if os.path.exists(payload["go"]):
                    break
                await asyncio.sleep(0.02)
            progress(1.0, "done")
            return {"ok": True}


        skill = PythonSkill(SkillMetadata(name="steps", description="reports progress"), run)
        """)
    )
    info = site / "progress_skill-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: progress-skill\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[eventsrc.skills]\nsteps = progress_skill:skill\n")
    return site


async def test_a_python_handlers_progress_shows_in_tasks(
    e2e: E2E, client: Cluster, tmp_path: Path
) -> None:
    site = handler_package(tmp_path / "site")
    await e2e.start_node("n-1", "steps", env={"PYTHONPATH": str(site)})
    go = tmp_path / "go-handler"
    submitted = await client.submit("steps", {"go": str(go)}, task_id="steps-1")

    async def halfway() -> dict[str, object] | None:
        listed = await e2e.cli("tasks", "--json")
        assert listed.code == 0, listed
        task = next(t for t in listed.json["tasks"] if t["task_id"] == "steps-1")
        progress = task.get("progress")
        return task if progress == {"fraction": 0.5, "message": "halfway there"} else None

    try:
        task = await poll(halfway, "steps-1 at 50% in eventsrc tasks --json")
        assert task["state"] == "running", task
        table = await e2e.cli("tasks")
        row = next(line for line in table.out.splitlines() if line.startswith("steps-1"))
        assert "50% halfway there" in row and "running" in row, table.out
    finally:
        go.touch()
    done = await wait_state(client, submitted.task_id, ["succeeded"])
    assert done.result == {"ok": True}
    listed = await e2e.cli("tasks", "--all", "--json")
    ended = next(t for t in listed.json["tasks"] if t["task_id"] == "steps-1")
    assert "progress" not in ended, ended  # only running tasks show it


async def test_a_chatty_process_is_coalesced_not_flooding(e2e: E2E, client: Cluster) -> None:
    await e2e.start_node("n-1", "python")
    code = "for i in range(20000):\n    print(i)\n"
    done = await client.run("python", {"code": code}, task_id="chatty", timeout=DEADLINE_S)
    assert done.state == "succeeded", done
    batches = [b for b in await output_events(client, OUTPUT_STREAM) if b.task_id == "chatty"]
    sent = sum(len(batch.lines) for batch in batches)
    dropped = sum(batch.dropped for batch in batches)
    # Every line is accounted for: sent or counted as dropped, in few messages.
    assert sent + dropped == 20000, (sent, dropped)
    assert len(batches) <= 60, len(batches)
    assert sent >= 500, sent
    first = [int(line.text) for line in batches[0].lines]
    assert first == list(range(len(first))), first[:10]

"""A history written by a real coordinator and node, then read by replay_tools."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import nats
import pytest

import eventsrc
from eventsrc.config import CoordinatorConfig, NodeConfig
from eventsrc.coordinator.app import Coordinator
from eventsrc.node.agent import NodeAgent
from eventsrc.node.setup import discover
from eventsrc.store import JetStreamEventStore
from replay_tools.__main__ import main
from tests.conftest import MakeServer


def write_skill(root: Path, name: str) -> None:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "SKILL.md").write_text(
        f"---\nname: {name}\ndescription: echo\n"
        f'metadata: {{"eventsrc": {{"run": "run.sh"}}}}\n---\nbody\n'
    )
    script = folder / "run.sh"
    script.write_text("#!/bin/sh\necho '{\"ok\": true}'\n")
    script.chmod(0o755)


async def record(url: str, skills_dir: Path) -> str:
    """Run a coordinator and one node, complete one task, stop both; the task id."""
    config = NodeConfig(node_id="worker", skills_dirs=(skills_dir,), workspace=skills_dir)
    found = discover(config, {"PATH": os.environ["PATH"], "HOME": str(skills_dir)})
    coordinator_config = CoordinatorConfig(nats_url=url, stale_after=2.0, sweep_interval=0.5)
    async with Coordinator(coordinator_config):
        nc = await nats.connect(url)
        agent = NodeAgent(
            nc,
            JetStreamEventStore(nc),
            node_id="worker",
            skills=found.skills,
            executors=found.executors,
            heartbeat_interval=0.5,
        )
        try:
            await agent.start()
            # project=False: no local projection needed (and its close is slow on 3.11).
            async with eventsrc.connect(url, project=False) as cluster:
                task = await cluster.submit("echo", {"x": 1}, task_id="live-1")
                done = await cluster.wait(task.task_id, timeout=20)
                assert done.state == "succeeded", done
        finally:
            await agent.close(leave=True)
            await nc.close()
    return "live-1"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(list(args))
    return code, capsys.readouterr().out


def test_a_real_clusters_history_verifies_audits_and_rebuilds(
    make_server: MakeServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = make_server()
    assert server.url is not None
    write_skill(tmp_path / "skills", "echo")
    task_id = asyncio.run(record(server.url, tmp_path / "skills"))
    url = ["--nats-url", server.url]

    verified, report = run(capsys, "verify", *url)
    audited, timeline = run(capsys, "audit", "task", task_id, "--json", *url)
    rebuilt, state = run(capsys, "rebuild", "--json", *url)

    assert verified == 0, report
    assert "ok    snapshot: at seq" in report  # the coordinator's own snapshot
    events = json.loads(timeline)["events"]
    kinds = [e["type"] for e in events]
    assert kinds[0] == "TaskAssigned" and kinds[-1] == "TaskSucceeded"
    placed = events[0]  # placed at its submission: one event stands for both
    assert placed["summary"].startswith("submitted") and "-> worker" in placed["summary"]
    assert placed["producer"].startswith("coordinator")
    assert audited == rebuilt == 0
    document = json.loads(state)
    assert [(t["id"], t["state"], t["node_id"]) for t in document["tasks"]] == [
        (task_id, "succeeded", "worker")
    ]
    assert [(n["id"], n["state"]) for n in document["nodes"]] == [("worker", "left")]

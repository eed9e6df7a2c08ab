"""The node agent against a real server and coordinator: rescans, packaged skills."""

from __future__ import annotations

import asyncio
import os
import textwrap
from pathlib import Path

import nats
import pytest

import eventsrc
from eventsrc.config import NodeConfig
from eventsrc.node.agent import NodeAgent
from eventsrc.node.setup import discover
from eventsrc.store import JetStreamEventStore
from tests.waiting import until


def write_skill(root: Path, name: str, *, needs_env: str | None = None) -> None:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    requires = f', "requires": {{"env": ["{needs_env}"]}}' if needs_env else ""
    (folder / "SKILL.md").write_text(
        textwrap.dedent(f"""\
        ---
        name: {name}
        description: test skill {name}
        metadata: {{"openclaw": {{"emoji": "x"{requires}}}, "eventsrc": {{"run": "run.sh"}}}}
        ---
        body
        """)
    )
    script = folder / "run.sh"
    script.write_text("#!/bin/sh\necho '{\"ok\": true}'\n")
    script.chmod(0o755)


async def test_rescan_registers_new_and_unregisters_ineligible_skills(
    coordinator_url: str, tmp_path: Path
) -> None:
    skills_dir = tmp_path / "skills"
    write_skill(skills_dir, "alpha")
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    config = NodeConfig(node_id="scanner", skills_dirs=(skills_dir,), workspace=tmp_path)
    found = discover(config, env)
    assert set(found.skills) == {"alpha"}

    nc = await nats.connect(coordinator_url)
    agent = NodeAgent(
        nc,
        JetStreamEventStore(nc),
        node_id="scanner",
        skills=found.skills,
        executors=found.executors,
        heartbeat_interval=0.5,
    )
    try:
        async with eventsrc.connect(coordinator_url) as cluster:
            await agent.start()
            registry = cluster.registry
            state = cluster.runner.state
            await until(lambda: state.node_skills.get("scanner") == {"alpha"})

            write_skill(skills_dir, "beta")
            write_skill(skills_dir, "gamma", needs_env="GAMMA_TOKEN")
            await agent.apply_rescan(discover(config, env))
            await until(lambda: state.node_skills.get("scanner") == {"alpha", "beta"})
            assert await registry.get_skill_metadata("beta") is not None
            await until(lambda: [u.name for u in state.nodes["scanner"].unavailable] == ["gamma"])

            (skills_dir / "alpha" / "SKILL.md").unlink()
            await agent.apply_rescan(discover(config, env))
            await until(lambda: state.node_skills.get("scanner") == {"beta"})
            assert await registry.get_available_nodes_for_skill("alpha") == []

            task = await cluster.submit(["beta"], {"x": 1})
            done = await cluster.wait(task.task_id, timeout=20)
            assert done.state == "succeeded" and done.result == {"ok": True}
    finally:
        await agent.close(leave=True)
        await nc.close()


def test_packaged_skills_come_from_entry_points_when_enabled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "shout_skill.py").write_text(
        textwrap.dedent("""\
        from eventsrc.events import SkillMetadata
        from eventsrc.node.pyskills import PythonSkill

        async def shout(payload):
            return str(payload["text"]).upper()

        skill = PythonSkill(SkillMetadata(name="shout", description="upper-case"), shout)
        """)
    )
    info = tmp_path / "shout_skill-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: shout-skill\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[eventsrc.skills]\nshout = shout_skill:skill\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}

    assert "shout" not in discover(NodeConfig(workspace=tmp_path), env).skills
    found = discover(NodeConfig(workspace=tmp_path, skills=("shout",)), env)
    assert found.skills["shout"].metadata.description == "upper-case"
    result = asyncio.run(found.executors["shout"].run({"text": "hi"}, timeout=5))
    assert result.ok and result.result == "HI"

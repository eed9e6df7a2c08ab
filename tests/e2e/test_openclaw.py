"""The real OpenClaw uses the cluster: after ``eventsrc openclaw install --mcp`` it sees
the eventsrc-cluster skill and the eventsrc MCP tools, and one agent turn on machine A
hands a task to node B and gets the result back. Only the model is scripted.

"Machine A" is an OpenClaw home (HOME in a temp folder) whose node A lacks the skill;
node B has it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

from tests.e2e.conftest import CLEAN_ENV, E2E
from tests.model_server import ModelServer, Reply, ToolCall, tool_outputs
from tests.node.helpers import python_script, write_executable, write_skill
from tests.openclaw_toolchain import OpenClawToolchain

TOOLS = [
    "audit_task",
    "cancel_task",
    "get_task",
    "list_nodes",
    "list_skills",
    "run_task",
    "submit_task",
    "wait_task",
]


def path_with_eventsrc(openclaw: OpenClawToolchain) -> str:
    """PATH for OpenClaw: its node first, then this environment's ``eventsrc`` script
    (the skill is gated on it), then the rest."""
    parts = [str(openclaw.bin_dir), sysconfig.get_path("scripts"), os.environ.get("PATH", "")]
    return os.pathsep.join(parts)


async def eventsrc(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``eventsrc ARGS`` as this machine's user (HOME=home)."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "eventsrc.cli", *args],
        env={**os.environ, **CLEAN_ENV, "HOME": str(home)},
        cwd=home,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def openclaw_run(
    openclaw: OpenClawToolchain, home: Path, *args: str, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        openclaw.run,
        list(args),
        home=home,
        env={"PATH": path_with_eventsrc(openclaw), **CLEAN_ENV},
        timeout=timeout,
    )


async def test_install_shows_the_skill_and_tools_and_uninstall_restores_the_config(
    e2e: E2E, openclaw: OpenClawToolchain, openclaw_home: Path
) -> None:
    config = openclaw_home / ".openclaw" / "openclaw.json"
    before = config.read_bytes()
    installed = await eventsrc(openclaw_home, "--nats-url", e2e.url, "openclaw", "install", "--mcp")
    assert installed.returncode == 0, installed.stderr

    listed = await openclaw_run(openclaw, openclaw_home, "skills", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    skills = {s["name"]: s for s in json.loads(listed.stdout)["skills"]}
    ours = skills["eventsrc-cluster"]
    assert ours["eligible"] is True and ours["missing"]["bins"] == [], ours
    assert ours["source"] == "openclaw-managed"

    probe = await openclaw_run(openclaw, openclaw_home, "mcp", "probe", "--json")
    assert probe.returncode == 0, probe.stderr
    probed = json.loads(probe.stdout)
    assert probed["servers"]["eventsrc"]["tools"] == len(TOOLS), probed
    assert [f"eventsrc__{name}" for name in TOOLS] == sorted(
        t for t in probed["tools"] if t.removeprefix("eventsrc__") in TOOLS
    )
    assert probed["servers"]["eventsrc"]["resources"] is True

    removed = await eventsrc(openclaw_home, "openclaw", "install", "--uninstall")
    assert removed.returncode == 0, removed.stderr
    assert config.read_bytes() == before
    relisted = await openclaw_run(openclaw, openclaw_home, "skills", "list", "--json")
    assert "eventsrc-cluster" not in {s["name"] for s in json.loads(relisted.stdout)["skills"]}


async def test_an_agent_turn_on_a_hands_a_task_to_b_and_reports_its_result(
    e2e: E2E,
    openclaw: OpenClawToolchain,
    model_server: ModelServer,
    openclaw_home: Path,
    tmp_path: Path,
) -> None:
    skills_b = tmp_path / "skills-b"
    shout = write_skill(
        skills_b,
        "shout",
        'name: shout\ndescription: upper-cases a text\nmetadata: {"eventsrc": {"run": "./run.py"}}',
    )
    write_executable(
        shout,
        "run.py",
        python_script(
            "import json, sys\n"
            "text = json.load(sys.stdin)['text']\n"
            "print(json.dumps({'shouted': text.upper()}))\n"
        ),
    )
    await e2e.start_node("A", "python")
    await e2e.start_node("B", extra=["--skills-dir", str(skills_b)])
    assert "shout" not in (await e2e.node_view("A") or {})["skills"]
    installed = await eventsrc(openclaw_home, "--nats-url", e2e.url, "openclaw", "install", "--mcp")
    assert installed.returncode == 0, installed.stderr

    def final_text(request: dict[str, object]) -> str:
        # What the model reads: OpenClaw wraps the MCP result as external content.
        output = tool_outputs(request)[-1]
        body = output.split("\n---\n", 1)[1].rsplit("\n<<<END_EXTERNAL", 1)[0]
        task = json.loads(body)["result"]["details"]["structuredContent"]
        return f"The cluster says {task['result']['shouted']} (node {task['node_id']})"

    model_server.set_script(
        [
            ToolCall(
                "tool_call",
                {
                    "id": "eventsrc__run_task",
                    "args": {
                        "skills": ["shout"],
                        "payload": {"text": "hello from a"},
                        "task_id": "from-a",
                    },
                },
            ),
            Reply(final_text),
        ]
    )
    work = openclaw_home / "work"
    work.mkdir()
    turn = await openclaw_run(
        openclaw,
        openclaw_home,
        "agent",
        "exec",
        "--json",
        "--cwd",
        str(work),
        "--timeout",
        "120",
        "shout 'hello from a' using the cluster",
    )
    assert turn.returncode == 0, turn.stderr
    envelope = json.loads(turn.stdout)
    assert envelope["status"] == "ok", envelope
    assert envelope["final"] == "The cluster says HELLO FROM A (node B)"
    assert "eventsrc__run_task" in envelope["toolSummary"]["tools"]
    # OpenClaw defers MCP tool schemas: the model reaches them through tool_call, and
    # the prompt lists the installed skill that says when to.
    first = model_server.requests[0]
    assert "tool_call" in {t["function"]["name"] for t in first.get("tools", [])}
    assert "<name>eventsrc-cluster</name>" in str(first["messages"][0]["content"])

    audit = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "replay_tools", "--nats-url", e2e.url, "audit", "task", "from-a"],
        env={**os.environ, **CLEAN_ENV},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert audit.returncode == 0, audit.stderr
    lines = audit.stdout
    assert "submitted by mcp: skills shout" in lines
    assert "attempt 1 -> B" in lines
    assert "attempt 1 succeeded on B" in lines

"""A skill's ``run`` command hands work to the cluster with ``eventsrc submit``: the node
gives it the task id and the NATS URL in its environment, so the submission is a
sub-task without naming the cluster or the parent; ``replay_tools audit task`` shows the
tree."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.e2e.conftest import CLEAN_ENV, E2E
from tests.node.helpers import python_script, write_executable, write_skill

SIX_TIMES_SEVEN = {"code": "print(6*7)"}


async def test_a_run_command_s_eventsrc_submit_is_a_sub_task(e2e: E2E, tmp_path: Path) -> None:
    skills = tmp_path / "skills"
    folder = write_skill(
        skills,
        "delegate",
        "name: delegate\ndescription: hands its payload to the python skill\n"
        'metadata: {"eventsrc": {"run": "./run.py"}}',
    )
    # The node gives the command EVENTSRC_TASK_ID and EVENTSRC_NATS_URL; nothing here
    # names the cluster or the parent.
    write_executable(
        folder,
        "run.py",
        python_script(
            "import subprocess, sys\n"
            "payload = sys.stdin.read()\n"
            "done = subprocess.run([sys.executable, '-m', 'eventsrc.cli', 'submit', '--skill',"
            " 'python', '--payload', payload, '--wait', '--json'], capture_output=True,"
            " text=True)\n"
            "sys.stderr.write(done.stderr)\n"
            "print(done.stdout)\n"
            "sys.exit(done.returncode)\n"
        ),
    )
    await e2e.start_node("boss", extra=["--skills-dir", str(skills)])
    await e2e.start_node("crunch", "python")

    run = await e2e.cli(
        "submit", "--skill", "delegate", "--payload", json.dumps(SIX_TIMES_SEVEN),
        "--task-id", "outer", "--wait", "--json",
    )  # fmt: skip
    assert run.code == 0, run
    assert run.json["node_id"] == "boss"
    inner = run.json["result"]
    assert inner["parent_task_id"] == "outer"
    assert (inner["node_id"], inner["result"]["stdout"]) == ("crunch", "42\n")

    argv = [sys.executable, "-m", "replay_tools", "--nats-url", e2e.url, "audit", "task", "outer"]
    audit = await asyncio.to_thread(
        subprocess.run,
        argv,
        env={**os.environ, **CLEAN_ENV},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert audit.returncode == 0, audit.stderr
    assert f"outer [delegate]  <- this task\n└─ {inner['task_id']} [python]" in audit.stdout
    assert "attempt 1 succeeded on crunch" in audit.stdout


async def test_eventsrc_mcp_under_a_minimal_environment_still_makes_a_sub_task(
    e2e: E2E, tmp_path: Path
) -> None:
    # As in an OpenClaw agent turn on a node: an MCP client starts `eventsrc mcp` with
    # only HOME, PATH and a few more (here the SDK's own client, with its default
    # environment), so EVENTSRC_TASK_ID is not passed on; the server finds it above.
    skills = tmp_path / "skills"
    folder = write_skill(
        skills,
        "agentic",
        "name: agentic\ndescription: asks an MCP client to run python on the cluster\n"
        'metadata: {"eventsrc": {"run": "./run.py"}}',
    )
    write_executable(
        folder,
        "run.py",
        python_script(
            "import asyncio, json, os, sys\n"
            "from mcp import Client\n"
            "from mcp.client.stdio import StdioServerParameters\n"
            "async def main():\n"
            "    payload = json.load(sys.stdin)\n"
            "    url = os.environ['EVENTSRC_NATS_URL']\n"
            "    args = ['-m', 'eventsrc.cli', '--nats-url', url, 'mcp']\n"
            "    server = StdioServerParameters(command=sys.executable, args=args)\n"
            "    async with Client(server) as client:\n"
            "        done = await client.call_tool('run_task', {'skills': ['python'],"
            " 'payload': payload})\n"
            "    print(json.dumps(done.structured_content))\n"
            "asyncio.run(main())\n"
        ),
    )
    await e2e.start_node("agent-node", extra=["--skills-dir", str(skills)])
    await e2e.start_node("crunch", "python")

    run = await e2e.cli(
        "submit", "--skill", "agentic", "--payload", json.dumps(SIX_TIMES_SEVEN),
        "--task-id", "turn", "--wait", "--json",
    )  # fmt: skip
    assert run.code == 0, run
    inner = run.json["result"]
    assert (inner["state"], inner["node_id"]) == ("succeeded", "crunch")
    assert inner["result"]["stdout"] == "42\n"
    assert inner["parent_task_id"] == "turn"

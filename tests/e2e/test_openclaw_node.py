"""A node process on a machine with the real openclaw: it offers OpenClaw's own skills.

HOME is a temporary folder; ``openclaw`` and its Node.js come first on the node's PATH,
as on a user's machine.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import psutil

from tests.e2e.conftest import E2E, TERMINAL, descendants, poll
from tests.model_server import (
    MODEL,
    OTHER_MODEL,
    PROVIDER,
    ModelServer,
    Reply,
    Status,
    ToolCall,
    tool_outputs,
)
from tests.openclaw_toolchain import OpenClawToolchain


def shadow_skill(home: Path, name: str, reply: str) -> None:
    """A workspace skill with our ``run`` that has the name of a bundled one."""
    folder = home / ".openclaw" / "workspace" / "skills" / name
    folder.mkdir(parents=True)
    (folder / "SKILL.md").write_text(
        f"---\nname: {name}\ndescription: the workspace's own {name}\n"
        'metadata: {"eventsrc": {"run": "./run.sh"}}\n---\n'
    )
    (folder / "run.sh").write_text(f"#!/bin/sh\necho '{reply}'\n")
    (folder / "run.sh").chmod(0o755)


async def test_a_node_advertises_openclaws_eligible_skills_and_a_workspace_one_shadows(
    e2e: E2E, openclaw: OpenClawToolchain, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    shadow_skill(home, "healthcheck", "the workspace healthcheck ran")
    listed = openclaw.run(["skills", "list", "--json"], home=home)
    assert listed.returncode == 0, listed.stderr
    theirs = {s["name"]: s for s in json.loads(listed.stdout)["skills"]}
    eligible = sorted(name for name, s in theirs.items() if s["eligible"])
    bundled = [n for n in eligible if theirs[n]["source"] == "openclaw-bundled"]
    assert len(bundled) >= 5 and theirs["healthcheck"]["source"] == "openclaw-workspace"

    await e2e.start_node("claw", env=openclaw.env(home))
    await e2e.wait_node("claw", "alive", skills=eligible)
    (node,) = (await e2e.cli("nodes", "--json")).json["nodes"]
    assert sorted(node["skills"]) == eligible
    assert sorted(node["unavailable"]) == sorted(set(theirs) - set(eligible))

    done = await e2e.cli("submit", "--skill", "healthcheck", "--wait", "--json")
    assert done.code == 0, done
    assert done.json["result"] == "the workspace healthcheck ran"


async def test_openclaw_skill_tasks_run_as_agent_turns_end_to_end(
    e2e: E2E, openclaw: OpenClawToolchain, model_server: ModelServer, openclaw_home: Path
) -> None:
    """One node, one scripted model server: success with a tool call, a rate limit, a
    turn outliving its run timeout, a cancel, a 401."""
    await e2e.start_node("claw", env=openclaw.env(openclaw_home))
    await e2e.wait_node("claw", "alive", skills=["healthcheck"])
    submit = ("submit", "--skill", "healthcheck", "--payload", '{"check": "disk"}')

    model_server.set_script(
        [
            ToolCall("exec", {"command": "echo disk-ok-$((6 * 7))"}),
            Reply(lambda r: "healthcheck says " + " ".join(tool_outputs(r)).strip()),
        ]
    )
    ok = await e2e.cli(*submit, "--wait", "--json", timeout=120)
    assert ok.code == 0, ok
    assert (ok.json["state"], ok.json["attempts"]) == ("succeeded", 1)
    assert ok.json["result"] == "healthcheck says disk-ok-42"
    agent = ok.json["agent"]
    assert (agent["provider"], agent["model"], agent["tools"]) == (PROVIDER, MODEL, ["exec"])
    assert agent["input_tokens"] > 0 and agent["cost_usd"] > 0 and agent["session_id"]
    shown = await e2e.cli("get", ok.json["task_id"])
    assert f"agent: {PROVIDER}/{MODEL}, session {agent['session_id']}" in shown.out
    assert "$healthcheck" in json.dumps(model_server.requests[0]["messages"])

    # A task may pick its model; this one also meets a rate limit, which OpenClaw retries.
    model_server.set_script([Status(429, "slow down"), Reply("after the rate limit")])
    other = f"{PROVIDER}/{OTHER_MODEL}"
    limited = await e2e.cli(*submit, "--model", other, "--wait", "--json", timeout=120)
    assert limited.json["state"] == "succeeded", limited
    assert limited.json["result"] == "after the rate limit"
    assert limited.json["agent"]["model"] == OTHER_MODEL
    assert [r["model"] for r in model_server.requests] == [OTHER_MODEL, OTHER_MODEL]

    model_server.set_script([Status(429, "slow down", headers=(("Retry-After", "600"),))])
    late = await e2e.cli(*submit, "--run-timeout", "3", "--wait", "--json", timeout=120)
    assert late.json["state"] == "timed_out", late
    assert "run deadline" in late.json["reason"]
    await poll(lambda: _no_turns(e2e), "the node to kill the late turn", timeout=20)

    model_server.set_script([Status(429, "slow down", headers=(("Retry-After", "600"),))])
    task_id = (await e2e.cli(*submit, "--json")).json["task_id"]
    await poll(lambda: _requested(model_server), "the turn's first model request", timeout=60)
    assert (await e2e.cli("cancel", task_id)).code == 0
    await poll(lambda: _ended(e2e, task_id), "the cancel to end the task")
    cancelled = await e2e.cli("get", task_id, "--json")
    assert cancelled.json["state"] == "cancelled"
    await poll(lambda: _no_turns(e2e), "the node to kill the cancelled turn", timeout=10)

    # Last: after a 401 OpenClaw sets the provider's key aside for a while.
    model_server.set_script([Status(401, "invalid api key")])
    denied = await e2e.cli(*submit, "--max-attempts", "3", "--wait", "--json", timeout=120)
    assert (denied.json["state"], denied.json["attempts"]) == ("failed", 1), denied
    assert denied.json["error"].startswith("the OpenClaw agent on node claw cannot reach a model")
    assert "~/.openclaw/openclaw.json on node claw" in denied.json["error"]
    assert len(model_server.requests) == 1


async def _no_turns(e2e: E2E) -> bool:
    """No OpenClaw process is left under the node."""
    for process in descendants(e2e.nodes["claw"]):
        with contextlib.suppress(psutil.Error):
            if "openclaw" in " ".join(process.cmdline()):
                return False
    return True


async def _requested(server: ModelServer) -> int | None:
    return len(server.requests) or None


async def _ended(e2e: E2E, task_id: str) -> bool | None:
    return (await e2e.cli("get", task_id, "--json")).json["state"] in TERMINAL or None

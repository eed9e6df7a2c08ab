"""One OpenClaw agent turn per task: ``openclaw agent exec --json`` with the real openclaw
and the scripted model server, and its envelope read as pure data."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from eventsrc.node.agent_turn import OpenClawExecutor, TurnLimit, agent_run
from eventsrc.node.discovery import SkillDiscovery
from eventsrc.node.executors import executor_for
from tests.model_server import MODEL, PROVIDER, ModelServer, Reply, Status, ToolCall, tool_outputs
from tests.openclaw_toolchain import OpenClawToolchain

ENVELOPE = {
    "ok": True,
    "status": "ok",
    "final": '{"answer": 42}',
    "usage": {"input": 120, "output": 8, "total": 128, "cost": {"total": 0.0021}},
    "toolSummary": {"calls": 1, "tools": ["exec"]},
    "model": "m1",
    "provider": "p1",
    "sessionId": "019abc",
}


def processes_with_home(home: Path) -> list[int]:
    """The pids of live processes whose HOME is ``home``: what a turn left behind."""
    mark = f"HOME={home}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:  # ended meanwhile, or not ours to read
            continue
        if mark in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def test_the_envelope_gives_model_session_tokens_cost_and_tools() -> None:
    run = agent_run(ENVELOPE)
    assert (run.provider, run.model, run.session_id) == ("p1", "m1", "019abc")
    assert (run.input_tokens, run.output_tokens, run.total_tokens) == (120, 8, 128)
    assert run.cost_usd == 0.0021 and run.tools == ("exec",)
    assert run.summary() == "p1/m1, session 019abc, 120 in + 8 out tokens, $0.0021, tools exec"
    assert agent_run({**ENVELOPE, "costUsd": 0.5}).cost_usd == 0.5
    assert agent_run({"status": "error", "model": None}).summary() == (
        "model unknown, 0 in + 0 out tokens"
    )


@pytest.mark.parametrize(
    ("message", "status", "returncode", "retryable", "says"),
    [
        (
            "Authentication failed (provider returned HTTP 401). Re-authenticate.",
            "error",
            1,
            False,
            "configure a model provider",
        ),
        (
            "No route-compatible authentication source is configured for openai.",
            "error",
            1,
            False,
            "on node n1",
        ),
        ("⚠️ rate limited; Retry-After: 1 seconds", "error", 1, True, "rate limited"),
        ("Provider returned HTTP 503: overloaded", "error", 1, True, "503"),
        ("Command lane task timed out: no progress for 49948ms", "error", 1, True, "timed out"),
        ("run deadline passed", "timeout", 2, True, "timed out"),
        ("Tool policy refused the request", "error", 1, False, "failed: Tool policy"),
    ],
)
def test_failures_say_what_happened_and_only_transient_ones_retry(
    message: str, status: str, returncode: int, retryable: bool, says: str
) -> None:
    executor = OpenClawExecutor("s", node_id="n1")
    envelope = {"ok": False, "status": status, "error": {"message": message, "kind": "exception"}}
    error, again = executor.failure(envelope, returncode)
    assert again is retryable
    assert says in error and "\n" not in error
    assert "on node n1" in error


def test_the_turn_references_the_skill_and_carries_the_payload(tmp_path: Path) -> None:
    executor = OpenClawExecutor("weather", openclaw="oc", model="p/m")
    message = executor.message({"city": "Oslo"})
    assert message.startswith("$weather ") and '"city": "Oslo"' in message
    argv = executor.argv(tmp_path, 12.5)
    assert argv[:4] == ["oc", "agent", "exec", "--json"]
    assert argv[argv.index("--cwd") + 1] == str(tmp_path)
    assert argv[argv.index("--timeout") + 1] == "13"
    assert argv[argv.index("--model") + 1] == "p/m"
    assert argv[argv.index("--message-file") + 1] == "-"
    task_model = executor.with_model("p/other").argv(tmp_path, 1)
    assert task_model[task_model.index("--model") + 1] == "p/other"
    assert "--model" not in OpenClawExecutor("weather").argv(tmp_path, 1)


async def test_the_turn_limit_holds_turns_back() -> None:
    limit = TurnLimit(1)
    async with limit:
        waiting = asyncio.create_task(limit.__aenter__())
        await asyncio.sleep(0.05)  # time passing is the point: the second turn stays held
        assert not waiting.done()
    await waiting
    await limit.__aexit__()
    assert TurnLimit().limit >= 1


async def test_a_real_turn_runs_the_scripted_tool_call_and_reports_usage(
    openclaw: OpenClawToolchain, model_server: ModelServer, openclaw_home: Path
) -> None:
    workspace = openclaw_home / ".openclaw" / "workspace"
    folder = workspace / "skills" / "sky-check"
    folder.mkdir(parents=True)
    (folder / "SKILL.md").write_text(
        "---\nname: sky-check\ndescription: Looks at the sky\n---\nRun `echo blue`.\n"
    )
    model_server.set_script(
        [
            ToolCall("exec", {"command": "echo sky-is-$((40 + 2))"}),
            Reply(lambda r: json.dumps({"seen": " ".join(tool_outputs(r)).strip()})),
        ]
    )
    env = openclaw.env(openclaw_home)
    skill = (
        SkillDiscovery(env=env, workspace=workspace, home=openclaw_home).scan().skills["sky-check"]
    )
    executor = executor_for(skill, env, workspace=workspace, node_id="n1", turns=TurnLimit(1))
    assert isinstance(executor, OpenClawExecutor)
    outcome = await executor.run({"where": "outside"}, timeout=90)
    assert outcome.ok, outcome.error
    assert outcome.result == {"seen": "sky-is-42"}
    assert outcome.agent is not None
    assert (outcome.agent.provider, outcome.agent.model) == (PROVIDER, MODEL)
    assert outcome.agent.total_tokens > 0 and outcome.agent.tools == ("exec",)
    first = json.dumps(model_server.requests[0]["messages"])
    # $sky-check made OpenClaw point the model at the workspace skill's SKILL.md.
    assert "skills/sky-check/SKILL.md" in first and '\\"where\\": \\"outside\\"' in first


async def test_a_401_is_final_and_names_the_node_and_what_to_configure(
    openclaw: OpenClawToolchain, model_server: ModelServer, openclaw_home: Path
) -> None:
    model_server.set_script([Status(401, "invalid api key")])
    executor = OpenClawExecutor(
        "anything", openclaw=str(openclaw.openclaw), node_id="n1", env=openclaw.env(openclaw_home)
    )
    outcome = await executor.run({}, timeout=90)
    assert not outcome.ok and not outcome.retryable
    assert outcome.error is not None
    assert outcome.error.startswith("the OpenClaw agent on node n1 cannot reach a model: ")
    assert "401" in outcome.error and "~/.openclaw/openclaw.json on node n1" in outcome.error
    assert len(model_server.requests) == 1
    assert processes_with_home(openclaw_home) == []  # the turn ended whole


async def test_a_turn_that_outlives_the_timeout_is_killed(
    openclaw: OpenClawToolchain, model_server: ModelServer, openclaw_home: Path
) -> None:
    # OpenClaw waits out a long Retry-After far beyond its own --timeout.
    model_server.set_script([Status(429, "slow down", headers=(("Retry-After", "600"),))])
    executor = OpenClawExecutor(
        "anything", openclaw=str(openclaw.openclaw), env=openclaw.env(openclaw_home)
    )
    started = time.monotonic()
    outcome = await executor.run({}, timeout=12)
    assert time.monotonic() - started < 20
    assert outcome.timed_out and not outcome.ok
    assert outcome.error == "the OpenClaw agent turn timed out after 12s and was killed"
    assert processes_with_home(openclaw_home) == []  # nothing of the turn lives on

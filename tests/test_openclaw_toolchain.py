"""The test toolchain itself: the pinned real OpenClaw runs, and a real agent turn reaches
the scripted model server and comes back with its text."""

from __future__ import annotations

import json
from pathlib import Path

from tests.model_server import MODEL, PROVIDER, ModelServer, Reply, ToolCall, tool_outputs
from tests.openclaw_toolchain import VERSION, OpenClawToolchain


def test_the_installed_openclaw_is_the_pinned_version(openclaw: OpenClawToolchain) -> None:
    done = openclaw.run(["--version"], home=openclaw.install_dir)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[:2] == ["OpenClaw", VERSION]


def test_one_agent_exec_turn_returns_the_scripted_text_and_runs_the_scripted_tool(
    openclaw: OpenClawToolchain, model_server: ModelServer, openclaw_home: Path
) -> None:
    work = openclaw_home / "work"
    work.mkdir()
    state = openclaw_home / ".openclaw"
    model_server.set_script(
        [
            ToolCall("exec", {"command": "echo toolchain-$((6 * 7))"}),
            Reply(lambda request: "the tool said " + " ".join(tool_outputs(request)).strip()),
        ]
    )
    # The HOME's own state dir: no extra lock files left in /tmp (see the fixture).
    turn = ["agent", "exec", "--json", "--cwd", str(work), "--state-dir", str(state)]
    done = openclaw.run(
        [*turn, "--timeout", "60", "run the check"],
        home=openclaw_home,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    envelope = json.loads(done.stdout)
    assert envelope["status"] == "ok"
    assert envelope["final"] == "the tool said toolchain-42"
    assert (envelope["provider"], envelope["model"]) == (PROVIDER, MODEL)
    assert envelope["usage"]["total"] > 0
    assert envelope["toolSummary"]["tools"] == ["exec"]
    assert len(model_server.requests) == 2
    first = model_server.requests[0]
    assert first["stream"] is True
    assert first["stream_options"] == {"include_usage": True}
    assert "run the check" in json.dumps(first["messages"])

"""``eventsrc mcp`` against a real cluster, through the official SDK's client."""

from __future__ import annotations

import json
from pathlib import Path

from mcp import Client

from tests.e2e.conftest import CLEAN_ENV, DEADLINE_S, E2E
from tests.e2e.test_skill_folders import skill_folder
from tests.mcp.conftest import data_of, mcp_argv, stdio_client, text_of, tool_names
from tests.processes import program

TOOLS = {
    "list_skills",
    "list_nodes",
    "run_task",
    "submit_task",
    "get_task",
    "wait_task",
    "cancel_task",
    "audit_task",
}
SIX_TIMES_SEVEN = {"code": "print(6*7)"}


async def test_over_stdio_run_task_gives_42_and_failures_are_tool_errors(
    e2e: E2E, tmp_path: Path
) -> None:
    # node_a can transcode; node_b found the skill too but lacks a binary for it.
    usable, gated = tmp_path / "skills-a", tmp_path / "skills-b"
    skill_folder(usable, "transcode", "print('done')\n")
    skill_folder(gated, "transcode", "print('never')\n", bins=("no-such-binary-xyz",))
    await e2e.start_nodes({"node_a": []}, extra=["--skills-dir", str(usable)])
    await e2e.start_node("node_b", "python", extra=["--skills-dir", str(gated)])

    async with stdio_client(e2e.url, cwd=tmp_path) as client:
        listed = await client.list_tools()
        assert tool_names(listed.tools) >= TOOLS
        run_task = next(tool for tool in listed.tools if tool.name == "run_task")
        assert run_task.input_schema["required"] == ["skills"]
        assert "payload" in run_task.input_schema["properties"]
        assert run_task.description and "result" in run_task.description

        task = data_of(
            await client.call_tool(
                "run_task", {"skills": ["python"], "payload": SIX_TIMES_SEVEN, "task_id": "t42"}
            )
        )
        assert (task["state"], task["node_id"], task["done"]) == ("succeeded", "node_b", True)
        assert task["result"]["stdout"].strip() == "42"

        listing = data_of(await client.call_tool("list_skills", {}))
        skills = {skill["name"]: skill for skill in listing["skills"]}
        assert skills["python"]["holders"] == ["node_b"]
        assert skills["transcode"]["holders"] == ["node_a"]
        would = skills["transcode"]["would_be_holders"]
        assert would == [{"node_id": "node_b", "lacks": ["bin:no-such-binary-xyz"], "install": ""}]

        nodes = data_of(await client.call_tool("list_nodes", {}))["nodes"]
        assert [(n["node_id"], n["state"]) for n in nodes] == [
            ("node_a", "alive"),
            ("node_b", "alive"),
        ]

        # A bad id, a schema violation and an unknown task: tool errors with one line each.
        bad_id = await client.call_tool("run_task", {"skills": ["no spaces"], "payload": {}})
        assert bad_id.is_error and "skill name" in text_of(bad_id), text_of(bad_id)
        no_skills = await client.call_tool("run_task", {"skills": []})
        assert no_skills.is_error, text_of(no_skills)
        unknown = await client.call_tool("get_task", {"task_id": "never-submitted"})
        assert unknown.is_error and "no task never-submitted" in text_of(unknown)
        assert "\n" not in text_of(unknown).strip()

        # ... and the server keeps serving.
        again = data_of(await client.call_tool("get_task", {"task_id": "t42"}))
        assert again["state"] == "succeeded"
        audit = await client.call_tool("audit_task", {"task_id": "t42"})
        assert not audit.is_error
        # Placed at its submission: the TaskAssigned reads "submitted: ...; attempt 1 -> ...".
        for step in ("TaskAssigned", "submitted by", "TaskSucceeded", "node_b"):
            assert step in text_of(audit)

        status = await client.read_resource("eventsrc://cluster/status")
        contents = status.contents[0]
        assert json.loads(getattr(contents, "text", "{}"))["leader"]


async def test_over_http_submit_then_wait(e2e: E2E, tmp_path: Path) -> None:
    await e2e.start_node("node_b", "python")
    argv = mcp_argv(e2e.url, "--http", "127.0.0.1:0")
    with program(argv, cwd=tmp_path, env=CLEAN_ENV) as server:
        line = server.wait_for_line("serving http://", timeout=DEADLINE_S)
        url = line.rsplit(" ", 1)[1]
        async with Client(url) as client:
            submitted = data_of(
                await client.call_tool(
                    "submit_task", {"skills": ["python"], "payload": SIX_TIMES_SEVEN}
                )
            )
            task_id = submitted["task_id"]
            task = data_of(await client.call_tool("wait_task", {"task_id": task_id, "wait_s": 30}))
            assert task["state"] == "succeeded"
            assert task["result"]["stdout"].strip() == "42"
            chained = data_of(
                await client.call_tool(
                    "submit_task",
                    {"skills": ["python"], "payload": SIX_TIMES_SEVEN, "after": task_id},
                )
            )
            later = data_of(
                await client.call_tool("wait_task", {"task_id": chained["task_id"], "wait_s": 30})
            )
            assert later["state"] == "succeeded" and later["after"] == task_id, later
            refused = await client.call_tool("cancel_task", {"task_id": "bad id!"})
            assert refused.is_error
            assert data_of(await client.call_tool("list_nodes", {}))["nodes"]
        assert server.proc.poll() is None, "the server stopped after a bad request"


async def test_an_unreachable_cluster_is_a_tool_error_not_a_dead_server(tmp_path: Path) -> None:
    async with stdio_client("nats://127.0.0.1:1", cwd=tmp_path) as client:
        assert tool_names((await client.list_tools()).tools) >= TOOLS
        for _ in range(2):  # the server stays up and tries again on the next call
            failed = await client.call_tool("list_nodes", {})
            assert failed.is_error
            assert "cannot reach NATS at nats://127.0.0.1:1" in text_of(failed)

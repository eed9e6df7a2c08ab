"""Names that try to become wildcard subjects: task ids, node ids and skill names with
``*``, ``>``, ``.`` or spaces, through every entry point (the ``eventsrc`` CLI, the node
program, the Python API, the registry API, the raw command API). Each is refused with
one clear line (exit 2 on the command line) and nothing is appended to the stream.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson
import pytest

import eventsrc
from eventsrc.commands import api
from eventsrc.errors import InvalidIdError, InvalidRequestError
from eventsrc.events import SkillMetadata
from tests.hostile.conftest import CLEAN_ENV, Requester, check_reply
from tests.processes import Program

CLI_CASES = [
    ["submit", "--skill", "python", "--task-id", "a.*"],
    ["submit", "--skill", "python", "--task-id", "a b"],
    ["submit", "--skill", "python", "--task-id", "x" * 129],
    ["submit", "--skill", "python", "--task-id", ""],
    ["submit", "--skill", ">"],
    ["submit", "--skill", "python", "--skill", "evt.>"],
    ["submit", "--skill", "python", "--node", "n.1"],
    ["submit", "--skill", "python", "--payload", "{not json"],
    ["submit", "--skill", "python", "--run-timeout", "-1"],
    ["get", "a.b"],
    ["cancel", "*"],
    ["drain", "n>"],
]
NODE_CASES = [
    ["--node-id", "a.b"],
    ["--node-id", "*"],
    ["--node-id", "tab\tbed"],
    ["--node-id", "ok", "--skill", ">"],
]


def run_all(commands: list[list[str]], cwd: Path) -> list[subprocess.CompletedProcess[str]]:
    """Run the programs in parallel (each is a fresh Python process)."""
    env = {**os.environ, **CLEAN_ENV}
    procs = [
        subprocess.Popen(
            [sys.executable, *command],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for command in commands
    ]
    results = []
    for proc, command in zip(procs, commands, strict=True):
        out, err = proc.communicate(timeout=60)
        results.append(subprocess.CompletedProcess(command, proc.returncode, out, err))
    return results


def assert_usage_error(result: subprocess.CompletedProcess[str]) -> None:
    lines = result.stderr.splitlines()
    assert result.returncode == 2, result
    assert len(lines) == 1 and lines[0].startswith("error: "), result
    assert "Traceback" not in result.stderr and not result.stdout.strip(), result


def test_the_cli_and_the_node_refuse_wildcard_names_with_one_line(
    coordinator: Program, requester: Requester, nats_url: str, tmp_path: Path
) -> None:
    stored = requester.last_seq()
    cli = [["-m", "eventsrc.cli", "--nats-url", nats_url, *case] for case in CLI_CASES]
    node = [["-m", "eventsrc.node", "--nats-url", nats_url, *case] for case in NODE_CASES]
    results = run_all(cli + node, tmp_path)
    for result in results:
        assert_usage_error(result)
    said = [result.stderr for result in results]
    assert "task id 'a.*' contains '.' at position 1" in said[0]
    assert "skill name '>' contains '>'" in said[4]
    assert "node id 'n.1' contains '.'" in said[6]
    assert "--payload is not valid JSON" in said[7]
    assert "run_timeout_s" in said[8]
    assert "node id 'a.b' contains '.'" in said[len(CLI_CASES)]
    assert requester.last_seq() == stored, "a refused name appended events"


@pytest.mark.parametrize("bad", ["a.*", ">", "a b", "x.y.z", "", "x" * 129, "nul\x00"])
async def test_the_python_and_registry_apis_refuse_wildcard_names(
    coordinator: Program, nats_url: str, bad: str
) -> None:
    async with eventsrc.connect(nats_url) as cluster:
        stored = await cluster.store.last_seq()
        refusals: dict[str, Callable[[], Awaitable[object]]] = {
            "submit task_id": lambda: cluster.submit("python", task_id=bad),
            "submit skill": lambda: cluster.submit(bad),
            "submit skills": lambda: cluster.submit(["python", bad]),
            "submit node_id": lambda: cluster.submit("python", node_id=bad),
            "run": lambda: cluster.run("python", task_id=bad, timeout=1),
            "get": lambda: cluster.get(bad),
            "wait": lambda: cluster.wait(bad, timeout=1),
            "cancel": lambda: cluster.cancel(bad),
            "drain": lambda: cluster.drain(bad),
            "register skill": lambda: cluster.registry.register_skill_instance(bad, "n1"),
            "register node": lambda: cluster.registry.register_skill_instance("python", bad),
            "unregister": lambda: cluster.registry.unregister_skill_instance(bad, "n1"),
        }
        for what, call in refusals.items():
            try:
                await call()
            except InvalidIdError as err:
                assert "\n" not in str(err), what
            else:
                pytest.fail(f"{what} accepted {bad!r}")
        # A model built without validation still meets the coordinator's check.
        forged = SkillMetadata.model_construct(name=bad)
        with pytest.raises(InvalidRequestError, match="name"):
            await cluster.registry.register_skill(forged)
        assert await cluster.store.last_seq() == stored, "a refused name appended events"


def test_the_raw_command_api_refuses_wildcard_names(
    coordinator: Program, requester: Requester
) -> None:
    stored = requester.last_seq()
    requests = {
        "submit": {"task_id": "a.>", "spec": {"skills": ["python"]}},
        "get": {"task_id": "*"},
        "drain": {"node_id": "a b"},
        "register_skill": {"metadata": {"name": "evt.>"}},
        "register_instance": {"skill": "python", "node_id": "n.*"},
        "node_hello": {"node_id": ">", "incarnation": "i1"},
    }
    for endpoint, request in requests.items():
        document = check_reply(
            requester.request(api.subject(endpoint), orjson.dumps(request)), endpoint
        )
        assert document["ok"] is False and document["error"]["code"] == api.ERR_INVALID
    assert requester.last_seq() == stored

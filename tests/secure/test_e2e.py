"""Secure mode end to end: coordinator, node and clients as processes, each with its own
credentials, on a server started from the generated config."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

from tests.processes import program
from tests.secure.conftest import SecureServer

CLEAN_ENV = {name: "" for name in os.environ if name.startswith("EVENTSRC_")}


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env={**os.environ, **CLEAN_ENV},
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def test_a_task_runs_with_every_program_on_its_own_credentials(
    secure_server: SecureServer, tmp_path: Path
) -> None:
    url = secure_server.url
    creds = secure_server.creds
    with ExitStack() as stack:
        coordinator = stack.enter_context(
            program(
                [
                    "-m",
                    "eventsrc.coordinator",
                    "--nats-url",
                    url,
                    "--creds",
                    creds("coordinator"),
                    "--stale-after",
                    "3",
                    "--sweep-interval",
                    "0.5",
                ],
                cwd=tmp_path,
                env=CLEAN_ENV,
            )
        )
        coordinator.wait_for_line("ready", timeout=30)
        node = stack.enter_context(
            program(
                [
                    "-m",
                    "eventsrc.node",
                    "--nats-url",
                    url,
                    "--creds",
                    creds("node-A"),
                    "--node-id",
                    "A",
                    "--skill",
                    "python",
                    "--heartbeat-interval",
                    "0.5",
                ],
                cwd=tmp_path,
                env=CLEAN_ENV,
            )
        )
        node.wait_for_line("ready", timeout=30)

        submitted = _run(
            [
                "-m",
                "eventsrc.cli",
                "--nats-url",
                url,
                "--creds",
                creds("submitter"),
                "submit",
                "--skill",
                "python",
                "--payload",
                '{"code": "print(6*7)"}',
                "--task-id",
                "t42",
                "--wait",
                "--timeout",
                "30",
                "--json",
            ],
            tmp_path,
        )
        assert submitted.returncode == 0, submitted.stderr
        task = json.loads(submitted.stdout)
        assert task["state"] == "succeeded" and task["node_id"] == "A"
        assert task["result"]["stdout"] == "42\n"

        # The reader folds the task from the stream by message gets (no consumer).
        got = _run(
            [
                "-m",
                "eventsrc.cli",
                "--nats-url",
                url,
                "--creds",
                creds("reader"),
                "get",
                "t42",
                "--json",
            ],
            tmp_path,
        )
        assert got.returncode == 0, got.stderr
        assert json.loads(got.stdout)["state"] == "succeeded"
        # Following reads the same way; the global options after the command.
        followed = _run(
            [
                *("-m", "eventsrc.cli", "get", "t42", "--follow", "--json"),
                *("--nats-url", url, "--creds", creds("reader")),
            ],
            tmp_path,
        )
        assert followed.returncode == 0, followed.stderr
        printed = [json.loads(line) for line in followed.stdout.splitlines()]
        # The node's output (its own out.t42.<node>, by message gets), then the task.
        assert [p["state"] for p in printed if "state" in p] == ["succeeded"]
        lines = [line["text"] for p in printed if "lines" in p for line in p["lines"]]
        assert lines == ["42"], printed
        nodes = _run(
            [
                "-m",
                "eventsrc.cli",
                "--nats-url",
                url,
                "--creds",
                creds("reader"),
                "nodes",
                "--json",
            ],
            tmp_path,
        )
        assert [n["node_id"] for n in json.loads(nodes.stdout)["nodes"]] == ["A"]
        refused = _run(
            [
                "-m",
                "eventsrc.cli",
                "--nats-url",
                url,
                "--creds",
                creds("reader"),
                "submit",
                "--skill",
                "python",
                "--payload",
                '{"code": "print(1)"}',
            ],
            tmp_path,
        )
        assert refused.returncode == 4  # these credentials may not: exit 4
        assert "refused submit" in refused.stderr and "Traceback" not in refused.stderr

        audit = _run(
            [
                "-m",
                "replay_tools",
                "--nats-url",
                url,
                "--creds",
                creds("coordinator"),
                "audit",
                "task",
                "t42",
            ],
            tmp_path,
        )
        assert audit.returncode == 0, audit.stderr
        assert "TaskSucceeded" in audit.stdout

        assert node.signal(signal.SIGTERM) == 0
        assert coordinator.signal(signal.SIGTERM) == 0
    assert "permissions violation" not in "\n".join(node.stderr_lines).lower()

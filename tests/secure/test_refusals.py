"""A refused request ends at once and says so: no waiting out a timeout for a permission
NATS already denied, and a node on another node's credentials says which id is wrong."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from eventsrc.client import Cluster
from eventsrc.errors import NotPermittedError
from eventsrc.runtime import EXIT_NOT_PERMITTED
from eventsrc.store import NatsOptions
from tests.secure.conftest import SecureServer

CLEAN_ENV = {name: "" for name in os.environ if name.startswith("EVENTSRC_")}


async def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    # Off the event loop: the coordinator of the fixture runs on it and must answer.
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, *args],
        cwd=cwd,
        env={**os.environ, **CLEAN_ENV},
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


async def test_a_readers_submit_fails_at_once(secure_cluster: SecureServer) -> None:
    options = NatsOptions(servers=(secure_cluster.url,), creds=secure_cluster.creds("reader"))
    async with Cluster(options) as cluster:
        started = time.monotonic()
        with pytest.raises(NotPermittedError, match="refused submit to these credentials"):
            await cluster.submit(["python"], {"code": "print(1)"})
        took = time.monotonic() - started
    assert took < 2.0, f"the refusal took {took:.1f} s"


async def test_the_cli_names_the_refused_command_with_its_own_exit_code(
    secure_cluster: SecureServer, tmp_path: Path
) -> None:
    args = ["-m", "eventsrc.cli", "--nats-url", secure_cluster.url, "--creds"]
    started = time.monotonic()
    refused = await _run([*args, secure_cluster.creds("reader"), "cancel", "t1"], tmp_path)
    took = time.monotonic() - started
    assert refused.returncode == EXIT_NOT_PERMITTED, refused
    assert refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr
    assert "refused cancel to these credentials" in refused.stderr
    assert took < 10, f"{took:.1f} s"  # a process start; the refusal itself is immediate


async def test_a_node_on_another_nodes_credentials_says_so(
    secure_cluster: SecureServer, tmp_path: Path
) -> None:
    node = await _run(
        [
            "-m",
            "eventsrc.node",
            "--nats-url",
            secure_cluster.url,
            "--creds",
            secure_cluster.creds("node-A"),
            "--node-id",
            "B",
            "--skill",
            "python",
        ],
        tmp_path,
    )
    assert node.returncode == EXIT_NOT_PERMITTED, node
    errors = [line for line in node.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in node.stderr, node.stderr
    assert "these credentials do not allow node id B" in errors[0]
    assert "--node-id" in errors[0]

"""A cluster that cannot serve — here a JetStream cluster whose streams lost their
leader — is exit 3 ("cannot reach the cluster") for every command, never a failure (1)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.cli.conftest import eventsrc_cli
from tests.e2e.conftest import CLEAN_ENV, DEADLINE_S, CliResult
from tests.nats_cluster import NatsCluster
from tests.processes import program
from tests.waiting import until_awaited

EXIT_UNREACHABLE = 3


async def test_a_stream_without_a_leader_exits_3(nats_cluster: NatsCluster, tmp_path: Path) -> None:
    args = ["-m", "eventsrc.coordinator", "--no-local-node", "--replicas", "3"]
    args += ["--nats-url", nats_cluster.urls, "--data-dir", str(tmp_path / "coordinator")]
    with program(args, cwd=tmp_path, env=CLEAN_ENV) as coordinator:
        coordinator.wait_for_line("ready", timeout=DEADLINE_S)
        submitted = await eventsrc_cli(
            ["submit", "--skill", "python", "--task-id", "t-1", "--json"],
            cwd=tmp_path,
            url=nats_cluster.urls,
        )
        # No node has the skill: refused, but stored, so there is a task to read.
        assert submitted.json["state"] == "rejected", submitted

        # Two of three servers gone: the R3 streams have no quorum, so no leader.
        nats_cluster.kill(2)
        nats_cluster.kill(3)
        survivor = nats_cluster.server(1).url

        async def leaderless() -> CliResult | None:
            got = await eventsrc_cli(["get", "t-1"], cwd=tmp_path, url=survivor)
            # At first the survivor may not answer in time (also exit 3), then it says
            # that the stream has no leader.
            assert got.code in (0, EXIT_UNREACHABLE), got
            return got if "no leader" in got.err else None

        got = await until_awaited(leaderless, "the survivor to say: no leader", DEADLINE_S)
        assert got is not None and got.code == EXIT_UNREACHABLE, got
        error = got.err.splitlines()[-1]
        assert error.startswith("error: JetStream cannot serve evt.cluster"), got

        for command in (["submit", "--skill", "python"], ["status"], ["tasks"]):
            result = await eventsrc_cli(command, cwd=tmp_path, url=survivor)
            assert result.code == EXIT_UNREACHABLE, (command, result)
            assert "Traceback" not in result.err, result
        # The tools read the streams raw, but map NATS errors as eventsrc does: exit 3.
        export = ["export", "--out", str(tmp_path / "x.jsonl"), "--nats-url", survivor]
        tool = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "replay_tools", *export],
            cwd=tmp_path,
            env={**os.environ, **CLEAN_ENV},
            capture_output=True,
            text=True,
            timeout=DEADLINE_S,
        )
        assert tool.returncode == EXIT_UNREACHABLE, (tool.returncode, tool.stderr)
        assert "Traceback" not in tool.stderr and len(tool.stderr.splitlines()) == 1, tool
        coordinator.signal(signal.SIGTERM, timeout=DEADLINE_S)

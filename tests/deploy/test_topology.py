"""docker-compose.yml's topology, natively on loopback: 3 nats-servers from the shipped
configs, 2 coordinators with ``--replicas 3``, 3 nodes with the example skills."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

import eventsrc
from eventsrc.ports import EVENTS_STREAM, HEARTBEATS_STREAM
from tests.deploy.topology import REPLICAS, Topology
from tests.e2e.conftest import CLEAN_ENV, DEADLINE_S
from tests.nats_cluster import REPO, NatsCluster

NODES = ("node-1", "node-2", "node-3")
TEXTS = [" ".join(["word"] * n) for n in range(1, 13)]


async def test_the_compose_topology_runs_tasks_on_r3_streams(
    nats_cluster: NatsCluster, tmp_path: Path
) -> None:
    with ExitStack() as stack:
        topology = Topology(nats_cluster, tmp_path, stack)
        first = topology.start_coordinator("coordinator-1")
        second = topology.start_coordinator("coordinator-2")
        await topology.start_nodes(NODES)

        # The first coordinator holds the lease; the second one follows as a standby.
        status = (await topology.cli("status", "--json")).json
        assert status["epoch"] == 1, status
        assert f"-{first.proc.pid}-" in status["leader"], status
        assert status["nodes"] == {"alive": 3}, status
        assert any("standby" in line for line in second.stderr_lines), second.stderr_lines
        assert second.proc.poll() is None, "the standby stays up, ready to take over"

        async with eventsrc.connect(topology.urls, project=False) as cluster:
            submitted = await asyncio.gather(
                *(cluster.submit("word-count", {"text": text}) for text in TEXTS)
            )
            done = await asyncio.gather(
                *(cluster.wait(task.task_id, timeout=DEADLINE_S) for task in submitted)
            )
        assert [task.state for task in done] == ["succeeded"] * len(TEXTS), done
        assert [task.result["words"] for task in done] == list(range(1, 13))
        assert {task.node_id for task in done} <= set(NODES)

        weather = await topology.cli(
            "submit", "--skill", "local-weather", "--payload", '{"city": "Toronto"}',
            "--wait", "--json",
        )  # fmt: skip
        assert weather.code == 0, weather
        assert weather.json["result"]["forecast"] == "snow showers", weather.json

        infos = await topology.stream_infos()
        for name in (EVENTS_STREAM, HEARTBEATS_STREAM):
            info = infos[name]
            assert info.config.num_replicas == REPLICAS, (name, info.config)
            assert info.cluster is not None and info.cluster.leader, (name, info.cluster)
            peers = info.cluster.replicas or []
            assert len(peers) == REPLICAS - 1, (name, peers)
            names = {info.cluster.leader, *(peer.name for peer in peers)}
            assert names == {"nats-1", "nats-2", "nats-3"}, names

        await _health_checks_pass(topology, nats_cluster)


async def _health_checks_pass(topology: Topology, cluster: NatsCluster) -> None:
    """The compose file's health checks, run against the native topology."""
    script = str(REPO / "deploy" / "healthcheck.py")
    env = {**os.environ, **CLEAN_ENV, "EVENTSRC_NATS_URL": topology.urls}
    # The script runs `eventsrc`; make sure it is this environment's.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"

    def check(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, script, *args], env=env, capture_output=True, text=True, timeout=60
        )

    runs = [
        *(("nats", f"http://127.0.0.1:{server.http_port}") for server in cluster.servers),
        ("coordinator",),
        *(("node", node_id) for node_id in NODES),
    ]
    results = await asyncio.gather(*(asyncio.to_thread(check, *run) for run in runs))
    for run, result in zip(runs, results, strict=True):
        assert result.returncode == 0, (run, result.stdout, result.stderr)
    unknown = await asyncio.to_thread(check, "node", "node-9")
    assert unknown.returncode == 1, unknown
    assert "node-9 is not known" in unknown.stderr, unknown.stderr

"""docker-compose.secure.yml's topology, natively on loopback, as its header says to set
it up: ``eventsrc secure init deploy/secure --node node-1 --node node-2 --node node-3``
and a dashboard token. The three nats-servers run the overlay's config
(``deploy/nats/secure.conf`` including each server's shipped config and the generated
``auth.conf``, laid out as the containers mount them); the coordinators and nodes run
the overlay's commands and environment, with ``/secure`` replaced by the setup folder,
the compose URLs by the cluster's and the listening addresses by loopback ones."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shlex
import shutil
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from eventsrc import secure
from eventsrc.ports import EVENTS_STREAM, HEARTBEATS_STREAM
from eventsrc.store import NatsOptions, connect_nats
from eventsrc.store.connection import split_urls
from tests.deploy.test_compose import COORDINATORS, NATS, NODES, load_compose, mounts
from tests.deploy.topology import EXAMPLE_SKILLS, REPLICAS
from tests.e2e.conftest import CLEAN_ENV, DEADLINE_S
from tests.nats_cluster import REPO, NatsCluster, localized_config
from tests.processes import Program, program

IN_CONTAINER = "/secure"
SERVICES = load_compose("docker-compose.yml", "docker-compose.secure.yml")["services"]


def _setup_command() -> list[str]:
    """The ``eventsrc secure init ...`` line of the overlay's header."""
    header = (REPO / "docker-compose.secure.yml").read_text().splitlines()
    line = next(text for text in header if "eventsrc secure init" in text)
    return shlex.split(line.lstrip("# "))


def _native(value: str, setup: Path, urls: str) -> str:
    """A compose value as it reads outside the containers."""
    if value.startswith(IN_CONTAINER + "/"):
        return str(setup / value.removeprefix(IN_CONTAINER + "/"))
    if value.startswith("nats://nats-1:"):
        return urls
    if value.startswith("0.0.0.0:"):
        return "127.0.0.1:0"  # --http and --metrics: any free loopback port
    if value == "/skills":  # the example skills, mounted there by docker-compose.yml
        return str(EXAMPLE_SKILLS)
    return value


def _start(service: str, setup: Path, urls: str, workdir: Path, stack: ExitStack) -> Program:
    spec = SERVICES[service]
    command = [_native(str(part), setup, urls) for part in spec["command"]]
    assert command[0] == "python", command
    env = {**CLEAN_ENV, **{k: _native(str(v), setup, urls) for k, v in spec["environment"].items()}}
    cwd = workdir / service
    cwd.mkdir()
    return stack.enter_context(program(command[1:], cwd=cwd, env=env))


def _lay_out_servers(cluster: NatsCluster, setup: Path) -> None:
    """Each server's /etc/nats as the overlay mounts it; its config is secure.conf."""
    for server in cluster.servers:
        spec = SERVICES[server.name]
        assert spec["command"] == ["nats-server", "-c", "/etc/nats/secure.conf"]
        for target, source in mounts(spec).items():
            if not target.startswith("/etc/nats/"):
                continue
            destination = server.workdir / Path(target).name
            if source.startswith("./deploy/secure/"):
                shutil.copy(setup / source.removeprefix("./deploy/secure/"), destination)
            elif target == "/etc/nats/nats.conf":  # the shipped config, store moved
                destination.write_text(localized_config(server.index, server.store_dir))
            else:
                shutil.copy(REPO / source, destination)
        shutil.copy(server.workdir / "secure.conf", server.config_file)


def _secure_init(setup: Path) -> None:
    """Run the overlay header's ``eventsrc secure init`` with ``setup`` as its folder."""
    command = _setup_command()
    assert command[:4] == ["eventsrc", "secure", "init", "deploy/secure"], command
    made = subprocess.run(
        [sys.executable, "-m", "eventsrc.cli", "secure", "init", str(setup), *command[4:]],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert made.returncode == 0, made.stderr


async def test_the_secure_compose_topology_runs_tasks(tmp_path: Path) -> None:
    setup = tmp_path / "deploy" / "secure"
    await asyncio.to_thread(_secure_init, setup)
    (setup / "http-token").write_text(secrets.token_hex(16) + "\n")

    cluster = NatsCluster(tmp_path / "nats")
    _lay_out_servers(cluster, setup)
    with ExitStack() as stack:
        stack.callback(cluster.stop)
        cluster.start()
        coordinators = [_start(n, setup, cluster.urls, tmp_path, stack) for n in COORDINATORS]
        for child in coordinators:
            child.wait_for_line("ready", timeout=DEADLINE_S)
        nodes = [_start(n, setup, cluster.urls, tmp_path, stack) for n in NODES]
        for child in nodes:
            child.wait_for_line("ready", timeout=DEADLINE_S)

        submitter = str(setup / secure.CREDS_DIR / "submitter.nk")
        texts = [" ".join(["word"] * n) for n in range(1, 7)]
        runs = [
            _cli(cluster.urls, submitter, "submit", "--skill", "word-count",
                 "--payload", json.dumps({"text": text}), "--wait", "--timeout", "60", "--json")
            for text in texts
        ]  # fmt: skip
        results = await asyncio.gather(*(asyncio.to_thread(run) for run in runs))
        for result in results:
            assert result.returncode == 0, result.stderr
        words = sorted(json.loads(result.stdout)["result"]["words"] for result in results)
        assert words == list(range(1, 7))
        ran_on = {json.loads(result.stdout)["node_id"] for result in results}
        assert ran_on <= set(NODES), ran_on
        print(f"secure compose topology: {len(results)} tasks on {sorted(ran_on)}")

        await _streams_are_r3(cluster, setup)
        _health_checks_pass(setup, cluster)


def _cli(urls: str, creds: str, *args: str) -> Any:
    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "eventsrc.cli", "--nats-url", urls, "--creds", creds, *args],
            env={**os.environ, **CLEAN_ENV},
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )

    return run


async def _streams_are_r3(cluster: NatsCluster, setup: Path) -> None:
    creds = str(setup / secure.CREDS_DIR / "coordinator.nk")
    options = NatsOptions(servers=split_urls(cluster.urls), creds=creds)
    nc = await connect_nats(options, long_running=False)
    try:
        for name in (EVENTS_STREAM, HEARTBEATS_STREAM):
            info = await nc.jetstream().stream_info(name)
            assert info.config.num_replicas == REPLICAS, (name, info.config)
            assert info.cluster is not None and info.cluster.leader in NATS, info.cluster
    finally:
        await nc.close()


def _health_checks_pass(setup: Path, cluster: NatsCluster) -> None:
    """The compose health checks, with the overlay's environment (reader credentials)."""
    script = str(REPO / "deploy" / "healthcheck.py")
    spec = SERVICES["coordinator-1"]
    env = {**os.environ, **CLEAN_ENV}
    env |= {k: _native(str(v), setup, cluster.urls) for k, v in spec["environment"].items()}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    for run in [("coordinator",), *(("node", node_id) for node_id in NODES)]:
        result = subprocess.run(
            [sys.executable, script, *run], env=env, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, (run, result.stdout, result.stderr)

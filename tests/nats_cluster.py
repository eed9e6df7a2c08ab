"""A three-server NATS JetStream cluster on loopback, started from the configs we ship.

Each server runs ``nats-server -c deploy/nats/nats-<i>.conf`` — the very files
docker-compose mounts — with only the addresses overridden by flags (client, cluster
and monitoring ports on 127.0.0.1, routes to the other two) and the store dir moved to
a temporary folder. So a test on this cluster exercises the shipped JetStream limits,
cluster name and server names, not a look-alike.

Reused by the fault tests: ``kill(i)`` is ``kill -9`` of one server, ``start(i)``
brings it back on the same ports and store.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from eventsrc.store.server import die_with_parent_fn, find_nats_server
from tests.waiting import until_blocking

REPO = Path(__file__).resolve().parents[1]
SHIPPED_CONFIGS = REPO / "deploy" / "nats"
SHIPPED_STORE_LINE = "store_dir: /data"
"""The one line of a shipped config rewritten for a test (``-sd`` cannot override it)."""

CLUSTER_SIZE = 3
READY_TIMEOUT_S = 30.0


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def shipped_config(index: int) -> Path:
    """``deploy/nats/nats-<index>.conf``."""
    return SHIPPED_CONFIGS / f"nats-{index}.conf"


@dataclass
class ClusterServer:
    """One server of the cluster: its ports, files and process."""

    index: int
    client_port: int
    cluster_port: int
    http_port: int
    workdir: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    host: str = "127.0.0.1"
    """The address it listens on and is reached at."""
    launcher: Sequence[str] = ()
    """In front of the command line (``ip netns exec NS`` for a server in a namespace)."""

    @property
    def name(self) -> str:
        return f"nats-{self.index}"

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.client_port}"

    @property
    def route_url(self) -> str:
        return f"nats-route://{self.host}:{self.cluster_port}"

    @property
    def config_file(self) -> Path:
        return self.workdir / f"{self.name}.conf"

    @property
    def store_dir(self) -> Path:
        return self.workdir / "store"

    @property
    def log_file(self) -> Path:
        return self.workdir / "nats-server.log"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def health(self, query: str = "") -> bool:
        """True when ``/healthz`` (with ``query``) answers ok."""
        url = f"http://{self.host}:{self.http_port}/healthz{query}"
        try:
            with urllib.request.urlopen(url, timeout=1) as reply:
                return bool(json.loads(reply.read()).get("status") == "ok")
        except (OSError, ValueError, urllib.error.URLError):
            return False

    def monitor(self, path: str) -> dict[str, object]:
        """A monitoring endpoint's JSON (``varz``, ``routez``, ``jsz`` ...)."""
        url = f"http://{self.host}:{self.http_port}/{path}"
        with urllib.request.urlopen(url, timeout=2) as reply:
            data: dict[str, object] = json.loads(reply.read())
            return data

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"


class NatsCluster:
    """Three clustered nats-servers on loopback; ``stop()`` kills whatever still runs."""

    def __init__(
        self,
        workdir: Path,
        *,
        size: int = CLUSTER_SIZE,
        servers: Sequence[ClusterServer] | None = None,
    ) -> None:
        """``servers`` placed elsewhere (their own hosts), else ``size`` on loopback."""
        self.workdir = workdir
        self.binary = find_nats_server()
        self.servers = (
            list(servers)
            if servers is not None
            else [
                ClusterServer(i, free_port(), free_port(), free_port(), workdir / f"nats-{i}")
                for i in range(1, size + 1)
            ]
        )
        for server in self.servers:
            server.workdir.mkdir(parents=True, exist_ok=True)
            server.config_file.write_text(localized_config(server.index, server.store_dir))

    @property
    def urls(self) -> str:
        """All client URLs, comma-separated: what ``--nats-url`` takes for a cluster."""
        return ",".join(server.url for server in self.servers)

    def server(self, index: int) -> ClusterServer:
        """Server ``nats-<index>`` (1-based, as in the shipped file names)."""
        return self.servers[index - 1]

    def start(self, index: int | None = None) -> None:
        """Start one server (or all) and wait until each answers ``/healthz``."""
        chosen = self.servers if index is None else [self.server(index)]
        for server in chosen:
            self._spawn(server)
        self.wait_healthy(chosen)

    def kill(self, index: int) -> None:
        """``kill -9`` one server: no goodbye to clients or the cluster."""
        server = self.server(index)
        if server.proc is not None:
            server.proc.kill()
            server.proc.wait(timeout=10)

    def stop(self) -> None:
        """Kill every server still running; idempotent."""
        for server in self.servers:
            if server.proc is not None and server.proc.poll() is None:
                server.proc.kill()
            if server.proc is not None:
                server.proc.wait(timeout=10)

    def wait_healthy(
        self, servers: list[ClusterServer] | None = None, *, timeout: float = READY_TIMEOUT_S
    ) -> None:
        """Until each server's full ``/healthz`` is ok: JetStream on, a meta leader known,
        its streams current. Fails with the log tail of the first one that is not."""
        waiting = list(servers or self.servers)

        def all_healthy() -> bool:
            while waiting and waiting[0].health():
                waiting.pop(0)
            if waiting and not waiting[0].running:
                raise AssertionError(f"{waiting[0].name} exited:\n{waiting[0].log_tail()}")
            return not waiting

        until_blocking(
            all_healthy,
            lambda: f"{waiting[0].name} to be healthy:\n{waiting[0].log_tail()}",
            timeout,
            interval=0.1,
        )

    def _spawn(self, server: ClusterServer) -> None:
        routes = ",".join(s.route_url for s in self.servers if s is not server)
        args = [
            *server.launcher,
            self.binary,
            "-c",
            str(server.config_file),
            "-a",
            server.host,
            "-p",
            str(server.client_port),
            "-m",
            str(server.http_port),
            "--cluster",
            f"nats://{server.host}:{server.cluster_port}",
            "--routes",
            routes,
            "-l",
            str(server.log_file),
        ]
        server.proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # A test process killed hard must not strand servers on their stores.
            preexec_fn=die_with_parent_fn(),
        )


def localized_config(index: int, store_dir: Path) -> str:
    """The shipped ``nats-<index>.conf`` with its store dir moved to ``store_dir``.

    Addresses are overridden on the command line instead; the store dir cannot be
    (nats-server refuses ``-sd`` next to a configured ``store_dir``).
    """
    text = shipped_config(index).read_text()
    if text.count(SHIPPED_STORE_LINE) != 1:
        raise AssertionError(f"{shipped_config(index)} must contain {SHIPPED_STORE_LINE!r} once")
    return text.replace(SHIPPED_STORE_LINE, f'store_dir: "{store_dir}"')


@pytest.fixture
def nats_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    """A started three-server cluster for one test; every server is killed at the end."""
    cluster = NatsCluster(tmp_path_factory.mktemp("nats-cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()

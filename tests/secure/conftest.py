"""Secure-mode fixtures: a nats-server started from ``eventsrc secure init``'s config.

The server runs on a random port (``port: -1``) with its store in the test's temp dir;
each fixture stops what it started.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client

from eventsrc import secure
from eventsrc.config import CoordinatorConfig
from eventsrc.coordinator.app import Coordinator
from eventsrc.store import NatsOptions, connect_nats
from eventsrc.store.server import find_nats_server
from tests.waiting import until, until_blocking

NODES = ("A", "B")


@dataclass
class SecureServer:
    """A running secure-mode server: its setup folder and client URL."""

    folder: Path
    url: str

    def creds(self, name: str) -> str:
        """The credentials file of an identity (``coordinator``, ``node-A``, ...)."""
        return str(self.folder / secure.CREDS_DIR / f"{name}.nk")

    def tls_files(self, name: str) -> dict[str, str]:
        """The CA and an identity's client certificate and key (``secure init --tls``),
        keyed like the settings (``tls_ca``, ``tls_cert``, ``tls_key``)."""
        tls_dir = self.folder / secure.TLS_DIR
        cert, key = secure.client_cert_files(name)
        return {
            "tls_ca": str(tls_dir / secure.CA_CERT),
            "tls_cert": str(tls_dir / cert),
            "tls_key": str(tls_dir / key),
        }

    def tls_flags(self, name: str) -> list[str]:
        """``--tls-ca CA --tls-cert CERT --tls-key KEY`` for an identity."""
        files = self.tls_files(name)
        return [f for key, path in files.items() for f in (f"--{key.replace('_', '-')}", path)]


@dataclass
class Refusals:
    """A connection's async errors, as nats-py reports them to ``error_cb``."""

    errors: list[str] = field(default_factory=list)

    async def record(self, err: Exception) -> None:
        self.errors.append(str(err))

    async def wait_for(self, subject: str, timeout: float = 10.0) -> str:
        """The permissions violation the server sent for a publish to ``subject``."""
        needle = f'publish to "{subject.lower()}"'
        found = await until(
            lambda: [e for e in self.errors if "permissions violation" in e and needle in e],
            lambda: f"a permissions violation for {subject}; got {self.errors}",
            timeout,
        )
        return found[0]


def _start(folder: Path, run_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    run_dir.mkdir()
    log = run_dir / "nats-server.log"
    proc = subprocess.Popen(
        [
            find_nats_server(),
            "-c",
            str(folder / secure.CONFIG_FILE),
            "--ports_file_dir",
            str(run_dir),
            "-l",
            str(log),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def ready() -> str:
        ports = list(run_dir.glob("*.ports"))
        if ports and log.exists() and b"Server is ready" in log.read_bytes():
            return str(json.loads(ports[0].read_text())["nats"][0])
        if proc.poll() is not None:
            raise AssertionError(f"secure nats-server exited:\n{log.read_text()[-2000:]}")
        return ""

    try:
        url = until_blocking(
            ready, lambda: f"secure nats-server to start:\n{log.read_text()[-2000:]}", 15
        )
    except BaseException:  # pytest's failure is no Exception: kill the server either way
        proc.kill()
        proc.wait()
        raise
    return proc, url


@pytest.fixture
def secure_server(tmp_path: Path) -> Iterator[SecureServer]:
    """``eventsrc secure init`` (nodes A and B) and a nats-server on its config."""
    yield from _serve(tmp_path, tls=False)


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[SecureServer]:
    """``eventsrc secure init --tls``: the same, TLS only, with client certificates."""
    yield from _serve(tmp_path, tls=True)


def _serve(tmp_path: Path, *, tls: bool) -> Iterator[SecureServer]:
    folder = tmp_path / "secure"
    secure.init(folder, nodes=NODES, host="127.0.0.1", port=-1, tls=tls)
    proc, url = _start(folder, tmp_path / "run")
    try:
        yield SecureServer(folder, url)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
async def secure_cluster(secure_server: SecureServer) -> AsyncIterator[SecureServer]:
    """The secure server with an in-process coordinator on the coordinator's credentials."""
    async with _coordinator(secure_server, tls=False):
        yield secure_server


@pytest.fixture
async def tls_cluster(tls_server: SecureServer) -> AsyncIterator[SecureServer]:
    """The TLS server with an in-process coordinator on its credentials and certificate."""
    async with _coordinator(tls_server, tls=True):
        yield tls_server


def _coordinator(server: SecureServer, *, tls: bool) -> Coordinator:
    config = CoordinatorConfig(
        nats_url=server.url,
        creds=server.creds("coordinator"),
        data_dir=server.folder.parent / "coordinator",
        stale_after=2.0,
        sweep_interval=0.5,
        **(server.tls_files("coordinator") if tls else {}),
    )
    return Coordinator(config)


async def connect_as(server: SecureServer, name: str, refusals: Refusals) -> Client:
    """A raw nats-py connection with an identity's seed, reporting errors to ``refusals``."""
    creds = NatsOptions(creds=server.creds(name)).credentials()
    assert creds is not None and creds.seed is not None
    return await nats.connect(
        server.url,
        nkeys_seed_str=creds.seed,
        inbox_prefix=creds.inbox_prefix or "_INBOX",
        error_cb=refusals.record,
        allow_reconnect=False,
    )


async def connect_with(server: SecureServer, name: str) -> Client:
    """A connection the way eventsrc programs open one (``--creds``)."""
    return await connect_nats(
        NatsOptions(servers=(server.url,), creds=server.creds(name)), long_running=False
    )

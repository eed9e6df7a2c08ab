"""Fixtures shared by every test: real nats-servers on port 0 with temporary stores.

Fixtures are synchronous so they work with any pytest-asyncio loop scope.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from eventsrc.store.server import EmbeddedServer

# The real OpenClaw (``openclaw``) and the scripted model server behind it (``model_server``).
pytest_plugins = ["tests.openclaw_toolchain", "tests.model_server"]

MakeServer = Callable[..., EmbeddedServer]


@pytest.fixture(scope="module")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """One started server for the whole test module, stopped at its end."""
    server = EmbeddedServer(tmp_path_factory.mktemp("nats"), port=0)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def nats_url(nats_server: EmbeddedServer) -> str:
    """The client URL of the module's server."""
    assert nats_server.url is not None
    return nats_server.url


@pytest.fixture
def make_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MakeServer]:
    """A factory ``make_server(data_dir=None, *, port=0)`` of started servers.

    Each call without a data dir gets a fresh temporary one; every server it made is
    stopped at teardown, so a test may stop or restart them freely.
    """
    servers: list[EmbeddedServer] = []

    def make(data_dir: str | Path | None = None, *, port: int | None = 0) -> EmbeddedServer:
        server = EmbeddedServer(data_dir or tmp_path_factory.mktemp("nats"), port=port)
        servers.append(server)
        server.start()
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
async def coordinator_url(make_server: MakeServer) -> AsyncIterator[str]:
    """A fresh server with an in-process coordinator leading it; yields the NATS URL."""
    from eventsrc.config import CoordinatorConfig
    from eventsrc.coordinator.app import Coordinator

    server = make_server()
    assert server.url is not None
    config = CoordinatorConfig(nats_url=server.url, stale_after=2.0, sweep_interval=0.5)
    async with Coordinator(config):
        yield server.url

"""Dashboard fixtures: a real cluster (nats-server, coordinator and node processes, as
in the end-to-end tests) whose coordinator serves its dashboard on a free port."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import MakeServer
from tests.e2e.conftest import DEADLINE_S, E2E
from tests.processes import Program

URL = re.compile(r"(http://\S+)")


def printed_url(child: Program, needle: str) -> str:
    """The http:// URL a program printed on the line holding ``needle``."""
    line = child.wait_for_line(needle, timeout=DEADLINE_S)
    found = URL.search(line)
    assert found is not None, line
    return found.group(1)


@dataclass
class Site:
    """The test's cluster and the dashboard its coordinator serves."""

    cluster: E2E
    url: str
    session: aiohttp.ClientSession

    async def get(self, path: str, **params: Any) -> Any:
        async with self.session.get(f"{self.url}{path}", params=params) as response:
            assert response.status == 200, f"{path}: {response.status} {await response.text()}"
            return await response.json()

    async def text(self, url: str) -> str:
        async with self.session.get(url) as response:
            assert response.status == 200, f"{url}: {response.status}"
            return await response.text()


def start_dashboard_cluster(
    make_server: MakeServer, workdir: Path, stack: ExitStack, *extra: str
) -> tuple[E2E, str]:
    cluster = E2E(make_server(), workdir, stack)
    child = cluster.start_coordinator(extra=["--http", "127.0.0.1:0", *extra])
    return cluster, printed_url(child, "dashboard at")


@pytest.fixture
def dashboard_cluster(make_server: MakeServer, tmp_path: Path) -> Iterator[tuple[E2E, str]]:
    """A fresh cluster whose coordinator serves the dashboard; (cluster, its URL)."""
    with ExitStack() as stack:
        yield start_dashboard_cluster(make_server, tmp_path, stack)


@pytest.fixture
async def site(dashboard_cluster: tuple[E2E, str]) -> AsyncIterator[Site]:
    cluster, url = dashboard_cluster
    async with aiohttp.ClientSession() as session:
        yield Site(cluster, url, session)

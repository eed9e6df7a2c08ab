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
from playwright.async_api import Page, async_playwright

from tests.conftest import MakeServer
from tests.dashboard.browser import ARGS, ARTIFACTS, ensure_chromium
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


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Remember each phase's report on the test, so a fixture can tell it failed."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"report_{report.when}", report)


@dataclass
class Browser:
    """A page in headless Chromium that records console errors and uncaught exceptions."""

    page: Page
    errors: list[str]


@pytest.fixture
async def browser(request: pytest.FixtureRequest) -> AsyncIterator[Browser]:
    """A fresh Chromium page; a screenshot of it is saved when the test fails."""
    executable = ensure_chromium()
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=executable, args=ARGS)
        try:
            page = await chromium.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on(
                "console",
                lambda message: errors.append(message.text) if message.type == "error" else None,
            )
            page.on("pageerror", lambda error: errors.append(str(error)))
            yield Browser(page, errors)
            report = getattr(request.node, "report_call", None)
            if report is not None and report.failed:
                ARTIFACTS.mkdir(parents=True, exist_ok=True)
                shot = ARTIFACTS / f"{request.node.name}.png"
                await page.screenshot(path=str(shot), full_page=True)
                print(f"screenshot of the failing page: {shot}")
        finally:
            await chromium.close()

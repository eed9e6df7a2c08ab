"""Fixtures of the partition tests: a namespaced network per test, the cluster on it, and
a summary of what each cut did, printed at the end of the run (even under ``-q``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.partition.cluster import Partitioned, start
from tests.partition.netns import Network, sweep, why_unavailable

Report = Callable[[str], None]
SUMMARY = pytest.StashKey[list[str]]()


@pytest.fixture(scope="session")
def netns_ready() -> None:
    """Skip (saying why) where namespaces cannot be made; remove earlier runs' leftovers."""
    reason = why_unavailable()
    if reason is not None:
        pytest.skip(reason)
    sweep()


@pytest.fixture
def network(netns_ready: None) -> Iterator[Network]:
    """A bridge of its own for one test; every namespace and link goes at teardown."""
    net = Network()
    try:
        net.open()
        yield net
    finally:
        net.close()


@pytest.fixture
async def partitioned(network: Network, tmp_path: Path) -> AsyncIterator[Partitioned]:
    """The namespaced cluster, started; every program and server is killed at teardown
    (before the network goes)."""
    with ExitStack() as stack:
        cluster = await start(network, tmp_path, stack)
        try:
            yield cluster
        finally:
            keep_logs(cluster, tmp_path / "logs")


def keep_logs(cluster: Partitioned, folder: Path) -> None:
    """Each program's stderr in ``folder/<name>.log``, for a failure's post-mortem."""
    folder.mkdir(exist_ok=True)
    programs = {**cluster.topology.coordinators, **cluster.topology.nodes}
    for name, child in programs.items():
        (folder / f"{name}.log").write_text("\n".join(child.stderr_lines) + "\n")


@pytest.fixture
def report(request: pytest.FixtureRequest) -> Report:
    """Add a line to the run's partition summary."""
    lines = request.config.stash.setdefault(SUMMARY, [])
    name = request.node.name

    def add(line: str) -> None:
        lines.append(f"{name}: {line}")

    return add


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = terminalreporter.config.stash.get(SUMMARY, [])
    if lines:
        terminalreporter.section("network partitions: counts and timings")
        for line in lines:
            terminalreporter.write_line(line)

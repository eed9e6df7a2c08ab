"""The real OpenClaw for tests: the ``openclaw`` fixture over ``eventsrc.openclaw_toolchain``.

The install (``openclaw`` from npm on Node.js 24 from PyPI, cached per machine outside the
repository) lives in ``eventsrc.openclaw_toolchain``, which the benchmarks use too. Here
an install that is impossible fails the test with its one line; it is never skipped.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from eventsrc.node.agent_turn import remove_state_locks
from eventsrc.openclaw_toolchain import VERSION, OpenClawToolchain, ToolchainError, cache_root
from eventsrc.openclaw_toolchain import ensure_openclaw as _ensure_openclaw

__all__ = ["VERSION", "OpenClawToolchain", "cache_root", "ensure_openclaw", "openclaw"]


def ensure_openclaw() -> OpenClawToolchain:
    """The pinned OpenClaw, installed on first use; fails the test with one line if impossible."""
    try:
        return _ensure_openclaw()
    except ToolchainError as err:
        pytest.fail(str(err), pytrace=False)


@pytest.fixture(scope="session")
def openclaw() -> Iterator[OpenClawToolchain]:
    """The real OpenClaw CLI for the whole test session.

    At the end, the lock files OpenClaw left under the system's temporary folder for the
    state of each temporary HOME are removed (it never removes them itself).
    """
    toolchain = ensure_openclaw()
    yield toolchain
    for home in toolchain.homes:
        remove_state_locks(home / ".openclaw")

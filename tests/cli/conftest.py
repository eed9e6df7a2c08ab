"""Fixtures of the CLI tests: the e2e cluster of one and the loopback NATS cluster."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from tests.e2e.conftest import CLEAN_ENV, CliResult, e2e
from tests.nats_cluster import nats_cluster

__all__ = ["e2e", "eventsrc_cli", "nats_cluster"]


async def eventsrc_cli(
    args: Sequence[str],
    *,
    cwd: Path,
    url: str,
    timeout: float = 90.0,
    module: str = "eventsrc.cli",
) -> CliResult:
    """``python -m eventsrc.cli ARGS --nats-url URL`` (or another ``module``): the global
    option after the command, as the README's synopsis writes it."""

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", module, *args, "--nats-url", url],
            cwd=cwd,
            env={**os.environ, **CLEAN_ENV},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    return CliResult(await asyncio.to_thread(run))

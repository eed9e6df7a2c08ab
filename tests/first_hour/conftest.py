"""A coordinator process on the module's server, as a new user's first terminal runs it."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.e2e.conftest import CLEAN_ENV, DEADLINE_S
from tests.processes import Program, program


@contextmanager
def coordinator_on(
    nats_url: str, cwd: Path, *extra: str
) -> Iterator[tuple[dict[str, str], Program]]:
    """``python -m eventsrc.coordinator --no-local-node`` on ``nats_url``, ready; yields
    the environment that points other programs at it. Stopped with SIGTERM, so it hands
    its lease back and the next test's coordinator leads at once."""
    env = {**CLEAN_ENV, "EVENTSRC_NATS_URL": nats_url}
    args = ["-m", "eventsrc.coordinator", "--no-local-node", *extra]
    with program(args, cwd=cwd, env=env) as coordinator:
        coordinator.wait_for_line("ready", timeout=DEADLINE_S)
        yield env, coordinator
        coordinator.signal(signal.SIGTERM, timeout=DEADLINE_S)

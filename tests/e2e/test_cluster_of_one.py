"""A cluster of one as a new user meets it: ``python -m eventsrc.coordinator`` with no URL
in an empty folder, then ``eventsrc submit --wait`` from that folder,
as the README's quick start says."""

from __future__ import annotations

import signal
from pathlib import Path

import psutil

from tests.e2e.conftest import CLEAN_ENV, DEADLINE_S, run_cli
from tests.processes import is_gone, program
from tests.waiting import until


async def test_a_cluster_of_one_runs_python_and_leaves_nothing_behind(tmp_path: Path) -> None:
    # No URL anywhere: not on the command line, not in EVENTSRC_NATS_URL. Port 0 only
    # keeps this test off the default 4222 that another run may hold.
    args = ["-m", "eventsrc.coordinator", "--embedded-port", "0"]
    with program(args, cwd=tmp_path, env=CLEAN_ENV) as coordinator:
        coordinator.wait_for_line("nats://", timeout=DEADLINE_S)
        coordinator.wait_for_line("local node", timeout=DEADLINE_S)
        server_pid = int((tmp_path / ".eventsrc" / "nats-server.pid").read_text())
        children = [p.pid for p in psutil.Process(coordinator.proc.pid).children(recursive=True)]
        assert server_pid in children

        # The CLI finds the server through ./.eventsrc/url, as a user's shell would.
        run = await run_cli(
            ["submit", "--skill", "python", "--payload", '{"code": "print(6*7)"}', "--wait"],
            cwd=tmp_path,
            url=None,
        )
        assert run.code == 0, run
        assert "42" in run.out.splitlines(), run

        assert coordinator.signal(signal.SIGINT, timeout=DEADLINE_S) == 0, coordinator.stderr_lines
    await until(lambda: is_gone(server_pid), "the embedded nats-server to end with it", 10)
    await until(
        lambda: [pid for pid in children if not is_gone(pid)] == [], "its children to end", 10
    )

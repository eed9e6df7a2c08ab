"""What a new user reads when something is slow or gone: a running program names the
NATS server it lost, ``status`` names the stream leaders, a command with no answer says
it is still waiting, and ``eventsrc server`` gives a bare server to restore into."""

from __future__ import annotations

import logging
import re
import signal
import time
from pathlib import Path

import nats
import pytest

from eventsrc.store import NatsOptions, connect_nats
from tests.conftest import MakeServer
from tests.e2e.conftest import CLEAN_ENV, DEADLINE_S, run_cli
from tests.first_hour.conftest import coordinator_on
from tests.processes import program
from tests.waiting import until


async def test_a_running_program_names_the_server_it_lost(
    make_server: MakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = make_server(), make_server()
    assert first.url is not None and second.url is not None
    servers = (first.url, second.url)
    nc = await connect_nats(NatsOptions(servers=servers), long_running=True)
    try:
        connected = nc.connected_url
        assert connected is not None
        lost = next(s for s in (first, second) if s.url == connected.geturl())
        other = second.url if lost is first else first.url
        with caplog.at_level(logging.WARNING, logger="eventsrc.store.connection"):
            lost.stop()
            await until(
                lambda: (url := nc.connected_url) is not None and url.geturl() == other,
                "a reconnect to the other server",
                DEADLINE_S,
                0.05,
            )
        lines = [r.getMessage() for r in caplog.records]
        assert any(
            line.startswith(f"lost NATS at {lost.url} (") and line.endswith(f"to {other}")
            for line in lines
        ), lines
        assert f"reconnected to NATS at {other}" in lines
        assert not any("start the coordinator" in line for line in lines), lines
    finally:
        await nc.close()


async def test_status_names_the_leaders_and_a_frozen_coordinator_is_said_to_be_awaited(
    tmp_path: Path, nats_url: str
) -> None:
    with coordinator_on(nats_url, tmp_path) as (_, coordinator):
        status = await run_cli(["status", "--json"], cwd=tmp_path, url=nats_url)
        assert status.code == 0, status
        leaders = status.json["stream_leaders"]
        assert set(leaders) == {
            "EVENTSRC_EVENTS",
            "EVENTSRC_HEARTBEATS",
            "EVENTSRC_OUTPUT",
            "KV_EVENTSRC_LEADER",
        }
        # One server, no cluster: each stream is led by that server.
        assert all(re.fullmatch(r"[\w-]+", where) for where in leaders.values()), leaders
        text = await run_cli(["status"], cwd=tmp_path, url=nats_url)
        assert "  EVENTSRC_EVENTS: " in text.out, text

        coordinator.proc.send_signal(signal.SIGSTOP)  # alive, but answers nothing
        try:
            started = time.monotonic()
            frozen = await run_cli(["nodes"], cwd=tmp_path, url=nats_url)
            took = time.monotonic() - started
        finally:
            coordinator.proc.send_signal(signal.SIGCONT)
        assert frozen.code == 3, frozen
        waiting, error = frozen.err.splitlines()
        assert waiting.startswith("eventsrc: nodes: no answer for 3 s, still waiting"), frozen
        assert error.startswith("error: the coordinator did not answer nodes"), frozen
        assert took < DEADLINE_S


async def test_eventsrc_server_runs_a_bare_jetstream_server(tmp_path: Path) -> None:
    data_dir = tmp_path / "scratch"
    args = ["-m", "eventsrc.cli", "server", "--data-dir", str(data_dir), "--port", "0"]
    with program(args, cwd=tmp_path, env=CLEAN_ENV) as server:
        line = server.wait_for_line("nats-server with JetStream at", timeout=DEADLINE_S)
        found = re.search(r"nats://[\d.]+:\d+", line)
        assert found, line
        nc = await nats.connect(found.group())
        try:
            info = await nc.jetstream().account_info()
            assert info.streams == 0  # bare: no coordinator made any stream
        finally:
            await nc.close()
        assert server.signal(signal.SIGINT, timeout=DEADLINE_S) == 0
    assert not (data_dir / "url").exists()
    assert (data_dir / "jetstream").is_dir()

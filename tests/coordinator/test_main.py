"""``python -m eventsrc.coordinator`` as a user runs it: real processes only."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import nats
import pytest

from eventsrc.store import EVENTS_STREAM, HEARTBEATS_STREAM
from tests.processes import is_gone, program
from tests.waiting import until

URL = re.compile(r"nats://[\d.]+:\d+")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
async def test_embedded_server_starts_and_nothing_outlives_it(tmp_path: Path, signum: int) -> None:
    args = ["-m", "eventsrc.coordinator", "--embedded-port", "0"]
    with program(args, cwd=tmp_path, env={"EVENTSRC_NATS_URL": ""}) as coordinator:
        line = coordinator.wait_for_line("nats://")
        match = URL.search(line)
        assert match, line
        url = match.group()
        server_pid = int((tmp_path / ".eventsrc" / "nats-server.pid").read_text())
        assert (tmp_path / ".eventsrc" / "url").read_text().strip() == url

        nc = await nats.connect(url)
        try:
            names = {info.config.name for info in await nc.jetstream().streams_info()}
        finally:
            await nc.close()
        assert {EVENTS_STREAM, HEARTBEATS_STREAM} <= names

        assert coordinator.signal(signum) == 0
    await until(lambda: is_gone(server_pid), "the embedded nats-server to end with it", 10)
    # A clean stop takes the URL with it: programs started here must not dial a dead server.
    assert not (tmp_path / ".eventsrc" / "url").exists()


async def test_given_url_uses_that_server(tmp_path: Path, nats_url: str) -> None:
    args = ["-m", "eventsrc.coordinator", "--nats-url", nats_url]
    with program(args, cwd=tmp_path) as coordinator:
        assert nats_url in coordinator.wait_for_line("ready")
        assert not (tmp_path / ".eventsrc").exists(), "no embedded server with a URL"
        assert coordinator.signal(signal.SIGTERM) == 0


def test_a_bad_config_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text("stale_after = 'soon'\n")
    with program(["-m", "eventsrc.coordinator", "--config", "bad.toml"], cwd=tmp_path) as child:
        assert child.proc.wait(timeout=20) == 2  # a bad config file is a usage error
    errors = [line for line in child.stderr_lines if line.strip()]
    assert len(errors) == 1 and "stale_after" in errors[0], child.stderr_lines

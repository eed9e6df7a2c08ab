"""TLS: ``eventsrc secure init --tls`` makes a CA, a server certificate and one client
certificate per identity; a real nats-server on that config serves TLS only and asks
every client for its certificate (mutual TLS). Each program takes the CA, its
certificate and key as flags or environment variables."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

import aiohttp
import pytest

from eventsrc import secure
from eventsrc.errors import ServerUnavailableError
from eventsrc.store import NatsOptions, connect_nats
from tests.dashboard.conftest import printed_url
from tests.processes import program
from tests.secure.conftest import SecureServer

CLEAN_ENV = {name: "" for name in os.environ if name.startswith("EVENTSRC_")}


def _cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eventsrc.cli", *args],
        cwd=cwd,
        env={**os.environ, **CLEAN_ENV, **(env or {})},
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def _tls_env(server: SecureServer, name: str) -> dict[str, str]:
    """The environment variables that give an identity its TLS files."""
    return {f"EVENTSRC_{key.upper()}": path for key, path in server.tls_files(name).items()}


def test_every_program_runs_a_task_over_mutual_tls(
    tls_server: SecureServer, tmp_path: Path
) -> None:
    """Coordinator (flags), node (environment), CLI (flags), dashboard (environment)
    over TLS with client certificates; the task runs and every reader sees it."""
    url, creds = tls_server.url, tls_server.creds
    with ExitStack() as stack:
        coordinator = stack.enter_context(
            program(
                [
                    "-m",
                    "eventsrc.coordinator",
                    "--nats-url",
                    url,
                    "--creds",
                    creds("coordinator"),
                    *tls_server.tls_flags("coordinator"),
                    "--sweep-interval",
                    "0.5",
                ],
                cwd=tmp_path,
                env=CLEAN_ENV,
            )
        )
        coordinator.wait_for_line("ready", timeout=30)
        node = stack.enter_context(
            program(
                ["-m", "eventsrc.node", "--nats-url", url, "--node-id", "A", "--skill", "python"],
                cwd=tmp_path,
                env={
                    **CLEAN_ENV,
                    "EVENTSRC_NATS_CREDS": creds("node-A"),
                    **_tls_env(tls_server, "node-A"),
                },
            )
        )
        node.wait_for_line("ready", timeout=30)
        submitted = _cli(
            "--nats-url",
            url,
            "--creds",
            creds("submitter"),
            *tls_server.tls_flags("submitter"),
            "submit",
            "--skill",
            "python",
            "--payload",
            '{"code": "print(6*7)"}',
            "--task-id",
            "tls42",
            "--wait",
            "--timeout",
            "30",
            "--json",
            cwd=tmp_path,
        )
        assert submitted.returncode == 0, submitted.stderr
        task = json.loads(submitted.stdout)
        assert task["state"] == "succeeded" and task["result"]["stdout"] == "42\n"
        got = _cli(
            "--nats-url",
            url,
            "get",
            "tls42",
            "--json",
            cwd=tmp_path,
            env={"EVENTSRC_NATS_CREDS": creds("reader"), **_tls_env(tls_server, "reader")},
        )
        assert got.returncode == 0, got.stderr
        assert json.loads(got.stdout)["state"] == "succeeded"
        replay = ["-m", "replay_tools", "--nats-url", url, "--creds", creds("coordinator")]
        verified = subprocess.run(
            [sys.executable, *replay, *tls_server.tls_flags("coordinator"), "verify"],
            cwd=tmp_path,
            env={**os.environ, **CLEAN_ENV},
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
        assert verified.returncode == 0, verified.stderr
        viewer = stack.enter_context(
            program(
                ["-m", "eventsrc.cli", "--nats-url", url, "dashboard", "--http", "127.0.0.1:0"],
                cwd=tmp_path,
                env={
                    **CLEAN_ENV,
                    "EVENTSRC_NATS_CREDS": creds("reader"),
                    **_tls_env(tls_server, "reader"),
                },
            )
        )
        dashboard = printed_url(viewer, "dashboard at")

        async def overview() -> dict[str, object]:
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"{dashboard}/api/overview") as answer,
            ):
                body: dict[str, object] = await answer.json()
                return body

        body = asyncio.run(overview())
        assert body["role"] == "viewer", body
        assert viewer.signal() == 0
        assert node.signal() == 0
        assert coordinator.signal() == 0


async def test_a_plain_connection_is_refused(tls_server: SecureServer) -> None:
    """Right credentials, no TLS: the server says TLS is required; the error says to
    give the CA."""
    options = NatsOptions(servers=(tls_server.url,), creds=tls_server.creds("reader"))
    with pytest.raises(ServerUnavailableError) as caught:
        await connect_nats(options, long_running=False)
    print(f"plain: {caught.value}")
    assert "--tls-ca" in str(caught.value)


async def test_tls_without_a_client_certificate_is_refused(tls_server: SecureServer) -> None:
    """The CA alone: the handshake fails, mutual TLS wants a client certificate."""
    files = tls_server.tls_files("reader")
    options = NatsOptions(
        servers=(tls_server.url,), creds=tls_server.creds("reader"), tls_ca=files["tls_ca"]
    )
    with pytest.raises(ServerUnavailableError) as caught:
        await connect_nats(options, long_running=False, connect_timeout=3)
    print(f"no client certificate: {caught.value}")
    assert "--tls-cert" in str(caught.value)


def test_the_server_speaks_no_plain_nats(tls_server: SecureServer) -> None:
    """A client that sends the protocol in the clear, as an old or careless one would:
    the server announces TLS as required and closes the connection instead of answering."""
    host, port = tls_server.url.split("://")[1].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        info = sock.recv(4096).decode()
        assert info.startswith("INFO ") and json.loads(info[5:])["tls_required"] is True
        sock.sendall(b'CONNECT {"verbose":false}\r\nPING\r\n')
        answer = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(4096):
                answer += chunk
    print(f"plain protocol answered: {answer!r}")
    assert b"PONG" not in answer


async def test_a_certificate_from_another_ca_is_refused(
    tls_server: SecureServer, tmp_path: Path
) -> None:
    """A client certificate that another ``secure init --tls`` made: refused."""
    other = tmp_path / "other"
    secure.init(other, host="127.0.0.1", port=-1, tls=True)
    files = tls_server.tls_files("reader")
    cert, key = secure.client_cert_files("reader")
    options = NatsOptions(
        servers=(tls_server.url,),
        creds=tls_server.creds("reader"),
        tls_ca=files["tls_ca"],
        tls_cert=str(other / secure.TLS_DIR / cert),
        tls_key=str(other / secure.TLS_DIR / key),
    )
    with pytest.raises(ServerUnavailableError):
        await connect_nats(options, long_running=False, connect_timeout=3)
    # The same identity with its own certificate gets in.
    good = NatsOptions(
        servers=(tls_server.url,),
        creds=tls_server.creds("reader"),
        **tls_server.tls_files("reader"),
    )
    nc = await connect_nats(good, long_running=False)
    try:
        assert nc.is_connected and nc.connected_url is not None
    finally:
        await nc.close()


def test_tls_mistakes_are_one_line(tls_server: SecureServer, tmp_path: Path) -> None:
    url, reader = tls_server.url, tls_server.creds("reader")
    files = tls_server.tls_files("reader")
    plain = _cli("--nats-url", url, "--creds", reader, "status", cwd=tmp_path)
    assert plain.returncode == 3 and "--tls-ca" in plain.stderr, plain.stderr
    missing = _cli(
        "--nats-url", url, "--creds", reader, "--tls-ca", "/nope/ca.pem", "status", cwd=tmp_path
    )
    assert missing.returncode == 2 and "no such file" in missing.stderr, missing.stderr
    half = _cli(
        "--nats-url",
        url,
        "--creds",
        reader,
        "--tls-ca",
        files["tls_ca"],
        "--tls-cert",
        files["tls_cert"],
        "status",
        cwd=tmp_path,
    )
    assert half.returncode == 2 and "go together" in half.stderr, half.stderr
    not_pem = _cli("--nats-url", url, "--creds", reader, "--tls-ca", reader, "status", cwd=tmp_path)
    assert not_pem.returncode == 2 and "PEM" in not_pem.stderr, not_pem.stderr
    for result in (plain, missing, half, not_pem):
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_openclaw_install_passes_the_tls_files_to_the_mcp_server(
    tls_server: SecureServer, tmp_path: Path
) -> None:
    """The MCP server OpenClaw starts gets the same credentials and TLS files."""
    env = {"EVENTSRC_NATS_CREDS": tls_server.creds("reader"), **_tls_env(tls_server, "reader")}
    env["HOME"] = str(tmp_path)
    printed = _cli(
        "--nats-url", tls_server.url, "openclaw", "install", "--print-mcp", cwd=tmp_path, env=env
    )
    assert printed.returncode == 0, printed.stderr
    args = json.loads(printed.stdout)["args"]
    for flag, path in zip(
        ("--creds", "--tls-ca", "--tls-cert", "--tls-key"),
        (tls_server.creds("reader"), *tls_server.tls_files("reader").values()),
        strict=True,
    ):
        assert args[args.index(flag) + 1] == path, (flag, args)
    assert args[-1] == "mcp"

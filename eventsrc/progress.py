"""Progress bars for long jobs (a coordinator catching up, ``replay_tools`` folding,
verifying, exporting or importing a history): count, rate and ETA on stderr, drawn by
tqdm. Only on a terminal, only for a job of at least ``minimum`` items, and never for
a program asked for JSON (its entry point runs it inside ``hidden()``)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextvars import ContextVar
from typing import TextIO

from tqdm import tqdm

LONG_JOB = 20_000
"""Items below which a job is quick enough to need no bar."""
REFRESH_S = 0.5

_hidden: ContextVar[bool] = ContextVar("eventsrc_progress_hidden", default=False)


@contextlib.contextmanager
def hidden(when: bool = True) -> Iterator[None]:
    """No progress bar inside this block when ``when`` (e.g. ``--json`` was given)."""
    token = _hidden.set(when or _hidden.get())
    try:
        yield
    finally:
        _hidden.reset(token)


class Progress:
    """``update(done)`` with the count done so far (redrawn at most every ``refresh_s``);
    ``done()`` clears the bar."""

    def __init__(
        self,
        what: str,
        total: int,
        *,
        unit: str = "events",
        stream: TextIO | None = None,
        minimum: int = LONG_JOB,
        refresh_s: float = REFRESH_S,
    ) -> None:
        stream = stream or sys.stderr
        shown = total >= minimum and not _hidden.get() and stream.isatty()
        self._bar = tqdm(
            total=total,
            desc=what,
            unit=f" {unit}",
            unit_scale=True,
            file=stream,
            leave=False,
            mininterval=refresh_s,
            dynamic_ncols=True,
            disable=not shown,
        )

    @property
    def shown(self) -> bool:
        return not self._bar.disable

    def update(self, done: int) -> None:
        if self.shown and done > self._bar.n:
            self._bar.update(done - self._bar.n)

    def done(self) -> None:
        self._bar.close()


@contextlib.asynccontextmanager
async def following(progress: Progress, position: Callable[[], int]) -> AsyncIterator[None]:
    """Update ``progress`` from ``position()`` every REFRESH_S while the block runs (for
    work done elsewhere, e.g. a follower task applying events); clears it at the end."""

    async def refresh() -> None:
        while True:
            progress.update(position())
            await asyncio.sleep(REFRESH_S)

    task = asyncio.create_task(refresh()) if progress.shown else None
    try:
        yield
    finally:
        if task is not None:
            task.cancel()
            await asyncio.wait({task})
        progress.done()

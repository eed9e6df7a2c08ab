"""A running attempt's progress and output lines, sent live to EVENTSRC_OUTPUT.

While an attempt runs, ``current_output`` holds its ``OutputSink``. Child processes feed
it their stdout and stderr lines (a stderr line ``::progress 0.4 fetching pages`` is a
progress report); Python handlers call ``progress(fraction, message)``. Adding a line
never waits: the sink keeps a bounded buffer and one sender task publishes what
gathered every ``interval`` (100 ms) as one ``TaskOutput``, so a chatty process costs a
few messages a second at most. Lines that arrive while the buffer is full are counted
and dropped (the next batch says how many); every batch carries the latest progress,
so that is never lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, Final

from eventsrc.errors import EventsrcError, InvalidRequestError
from eventsrc.events import OutputLine, TaskOutput, parse_progress
from eventsrc.events.output import OutputKind

log = logging.getLogger(__name__)

SEND_INTERVAL_S: Final = 0.1
"""Lines are coalesced for this long into one message."""
MAX_PENDING_LINES: Final = 2000
"""Lines buffered while sending lags; more are dropped and counted."""
MAX_BATCH_LINES: Final = 500
"""Lines per message (a larger backlog goes out over the next sends)."""
MAX_LINE_CHARS: Final = 2000
"""A longer line is cut to this (with an ellipsis)."""
CLOSE_TIMEOUT_S: Final = 2.0
"""How long the end of an attempt waits for its last lines to be sent."""

current_output: ContextVar[OutputSink | None] = ContextVar("eventsrc_task_output", default=None)
"""The sink of the attempt running in this context (None outside an attempt)."""


def progress(fraction: float, message: str = "") -> None:
    """Report the progress of the task this handler runs: ``fraction`` from 0 to 1 and
    what it is doing. Shown by ``eventsrc get ID --follow`` and ``eventsrc tasks``.
    Returns at once (sending happens in the background); outside a task it does nothing.
    """
    number = isinstance(fraction, int | float) and not isinstance(fraction, bool)
    if not number or not 0.0 <= fraction <= 1.0:
        raise InvalidRequestError(
            f"progress fraction must be a number from 0 to 1, not {fraction!r}"
        )
    sink = current_output.get()
    if sink is not None:
        sink.add(OutputLine(kind="progress", text=_cut(str(message)), fraction=float(fraction)))


class OutputSink:
    """Buffers one attempt's lines and sends them in batches; ``start`` then ``close``."""

    def __init__(
        self,
        publish: Callable[[TaskOutput], Awaitable[int]],
        *,
        envelope: Callable[[], dict[str, Any]],
        task_id: str,
        node_id: str,
        attempt: int,
        interval: float = SEND_INTERVAL_S,
        max_pending: int = MAX_PENDING_LINES,
    ) -> None:
        self._publish = publish
        self._envelope = envelope
        self._ids = {"task_id": task_id, "node_id": node_id, "attempt": attempt}
        self._interval = interval
        self._max_pending = max_pending
        self._pending: list[OutputLine] = []
        self._dropped = 0
        self._progress: float | None = None
        self._message = ""
        self._wake = asyncio.Event()
        self._closing = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None
        self._live = False
        self.sent = 0

    def line(self, kind: OutputKind, text: str) -> None:
        """One line of a child's stdout or stderr (a progress report on stderr counts as
        progress)."""
        if kind == "stderr":
            report = parse_progress(text)
            if report is not None:
                self.add(report)
                return
        self.add(OutputLine(kind=kind, text=_cut(text)))

    def add(self, line: OutputLine) -> None:
        """Queue a line to send; never waits."""
        if line.kind == "progress":
            self._progress, self._message = line.fraction, line.text
        if len(self._pending) >= self._max_pending:
            self._dropped += 1
        else:
            self._pending.append(line)
        self._wake.set()
        if self._live and self._sender is None:  # a silent attempt costs no task
            self._sender = asyncio.create_task(self._send_loop(), name="task-output")

    def start(self) -> None:
        """Send what is added from now on in the background."""
        self._live = True

    async def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Send what is left (waiting at most ``timeout``: a batch in flight is finished,
        not cut off), then stop."""
        self._live = False
        sender, self._sender = self._sender, None
        if sender is None:
            return  # nothing was ever added
        self._closing.set()
        self._wake.set()
        done, _ = await asyncio.wait({sender}, timeout=timeout)
        if not done:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender

    async def _send_loop(self) -> None:
        while True:
            await self._wake.wait()
            # Coalesce what comes meanwhile; closing cuts the pause short.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), self._interval)
            self._wake.clear()
            while self._pending or self._dropped:
                await self._send_batch()
            if self._closing.is_set():
                return
            # Lines added while sending set _wake again and go out after the next pause.

    async def _send_batch(self) -> None:
        batch, self._pending = self._pending[:MAX_BATCH_LINES], self._pending[MAX_BATCH_LINES:]
        dropped, self._dropped = self._dropped, 0
        try:
            event = TaskOutput(
                **self._envelope(),
                **self._ids,
                lines=tuple(batch),
                progress=self._progress,
                progress_message=self._message,
                dropped=dropped,
            )
            await self._publish(event)
        except EventsrcError as err:  # soft state: a lost batch is not worth a retry
            log.debug("task %s: output batch not sent: %s", self._ids["task_id"], err)
            return
        except Exception:  # never the task's failure
            log.warning("task %s: output batch not sent", self._ids["task_id"], exc_info=True)
            return
        self.sent += 1


def _cut(text: str) -> str:
    return text if len(text) <= MAX_LINE_CHARS else text[: MAX_LINE_CHARS - 1] + "…"

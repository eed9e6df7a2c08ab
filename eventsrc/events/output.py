"""A running task's progress and output lines, under ``out.<task>.<node>``.

Soft state like heartbeats: stored in EVENTSRC_OUTPUT (bounded retention), never in
EVENTSRC_EVENTS, and never folded into the cluster state. The node sends one
``TaskOutput`` per batch of lines (coalesced, at most a few per second); each carries the
task's latest progress, so the newest message of a subject says how far the task is.
"""

from __future__ import annotations

from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from eventsrc.events.base import EventBase
from eventsrc.events.ids import Token
from eventsrc.events.subjects import output_subject

PROGRESS_PREFIX: Final = "::progress "
"""A line of a child's stderr that reports progress: ``::progress 0.4 fetching pages``."""

OutputKind = Literal["stdout", "stderr", "progress"]


class OutputLine(BaseModel):
    """One line: of the child's stdout or stderr, or a progress report (``fraction``
    from 0 to 1 and ``text`` its message)."""

    model_config = ConfigDict(frozen=True, extra="ignore", allow_inf_nan=False)

    kind: OutputKind
    text: str = ""
    fraction: float | None = Field(default=None, ge=0.0, le=1.0)


class TaskOutput(EventBase):
    """A batch of a running attempt's lines and its latest progress (EVENTSRC_OUTPUT)."""

    WRITTEN_BY = "node"
    type: Literal["TaskOutput"] = "TaskOutput"
    task_id: Token
    node_id: Token
    attempt: int = Field(ge=1)
    lines: tuple[OutputLine, ...] = ()
    progress: float | None = Field(default=None, ge=0.0, le=1.0)
    progress_message: str = ""
    dropped: int = Field(default=0, ge=0)
    """Lines the node dropped before this batch because they came faster than it sends."""

    @property
    def subject(self) -> str:
        return output_subject(self.task_id, self.node_id)


def parse_progress(line: str) -> OutputLine | None:
    """The progress report a stderr line makes, or None for any other line.

    ``::progress FRACTION [MESSAGE]`` with FRACTION a number from 0 to 1 (or a
    percentage ending in ``%``); a malformed one is an ordinary line.
    """
    if not line.startswith(PROGRESS_PREFIX):
        return None
    number, _, message = line[len(PROGRESS_PREFIX) :].strip().partition(" ")
    try:
        fraction = float(number[:-1]) / 100 if number.endswith("%") else float(number)
    except ValueError:
        return None
    if not 0.0 <= fraction <= 1.0:
        return None
    return OutputLine(kind="progress", text=message.strip(), fraction=fraction)

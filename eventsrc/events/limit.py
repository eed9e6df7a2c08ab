"""Cluster-wide limits: the rate format, the key limits' events (``evt.limit.<key>``)
and the evidence a placement under a limit carries.

A limit bounds the tasks it covers: ``max_running`` of them assigned or running at
once across the cluster, and at most ``count`` started per ``window_s`` seconds (the
rate, written ``30/m``). A skill's limit is in its metadata; a key's limit (the tasks
submitted with that ``limit_key``) is set and removed by these events.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from eventsrc.events.base import EventBase
from eventsrc.events.ids import Token
from eventsrc.events.subjects import limit_subject

MAX_RATE_COUNT = 1000
"""Starts a rate may allow per window: a placement's evidence lists up to this many."""

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([smhd])\s*$")


def parse_rate(text: str) -> tuple[int, float]:
    """``"30/m"`` -> (30, 60.0): starts allowed per window of seconds; also ``5/10s``.

    Raises ValueError with what is wrong and how to write it.
    """
    match = _RATE.match(text)
    if match is None:
        raise ValueError(f"rate {text!r} is not COUNT/UNIT (e.g. 30/m, 10/s, 5/10s; units s m h d)")
    count, multiple, unit = int(match[1]), int(match[2] or 1), match[3]
    if not 1 <= count <= MAX_RATE_COUNT:
        raise ValueError(f"rate {text!r}: the count must be 1 to {MAX_RATE_COUNT}")
    if multiple < 1:
        raise ValueError(f"rate {text!r}: the window must be at least one {unit}")
    return count, multiple * _UNITS[unit]


def check_rate(text: str | None) -> str | None:
    """A validator for rate fields: the text, stripped, if it parses."""
    if text is None:
        return None
    parse_rate(text)
    return text.strip()


class LimitUse(BaseModel):
    """One limit as a placement saw it: the evidence that it allowed one more start."""

    model_config = ConfigDict(frozen=True, extra="ignore", allow_inf_nan=False)

    name: str
    """``skill <name>`` for a skill's limit, else the key."""
    running: int = 0
    """Tasks under this limit assigned or running before this one (this pass included)."""
    max_running: int | None = None
    rate: str | None = None
    window_starts: tuple[datetime, ...] = ()
    """The starts the rate counted: those inside the window ending at the decision."""


class _LimitEvent(EventBase):
    key: Token

    @property
    def subject(self) -> str:
        return limit_subject(self.key)


class LimitSet(_LimitEvent):
    """A key's limit is set or changed (``eventsrc limit set``)."""

    type: Literal["LimitSet"] = "LimitSet"
    max_running: int | None = Field(default=None, ge=1)
    rate: str | None = None

    @field_validator("rate")
    @classmethod
    def _parses(cls, rate: str | None) -> str | None:
        return check_rate(rate)


class LimitRemoved(_LimitEvent):
    """A key's limit is removed: its tasks are no longer held by it."""

    type: Literal["LimitRemoved"] = "LimitRemoved"

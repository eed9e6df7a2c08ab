"""When a schedule fires: ``next_fire(timing, after)`` and the occurrences after a time,
pure (the time is passed in, never read).

Cron expressions are evaluated by cronsim in the schedule's time zone (zoneinfo), with
its rules for daylight saving time: a time skipped by a spring-forward change fires at
the first moment after the gap (02:30 -> 03:00), a time repeated by a fall-back change
fires once (at its first instance); expressions with an hour range or ``*`` fire in
both repeated hours. Intervals (``every_s``) are counted in UTC from the Unix epoch, so
``every 30s`` fires at :00 and :30 of each minute wherever it is decided.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from eventsrc.errors import InvalidRequestError
from eventsrc.events import ScheduleTiming

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_DURATION: Final = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_S: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0}


def parse_duration(text: str, *, what: str = "duration") -> float:
    """Seconds of ``30s``, ``5m``, ``2h``, ``1d`` or a plain number of seconds."""
    match = _DURATION.match(text)
    if match is None:
        raise InvalidRequestError(
            f"{what} {text!r} is not a duration; give e.g. 30s, 5m, 2h, 1d or seconds"
        )
    return float(match.group(1)) * _UNIT_S[match.group(2) or "s"]


def zone(name: str) -> ZoneInfo:
    """The time zone ``name`` (IANA, e.g. Europe/Berlin), or InvalidRequestError."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise InvalidRequestError(
            f"unknown time zone {name!r}; give an IANA name such as Europe/Berlin or UTC"
        ) from err


def check_timing(timing: ScheduleTiming) -> ScheduleTiming:
    """The timing, if its cron expression and time zone are valid; else one line."""
    zone(timing.tz)
    if timing.cron is not None:
        try:
            CronSim(timing.cron, _EPOCH)
        except CronSimError as err:
            raise InvalidRequestError(
                f"cron {timing.cron!r} is not valid ({err}); give five fields, e.g. "
                f'"0 9 * * 1-5" (minute hour day-of-month month day-of-week)'
            ) from err
    return timing


def next_fire(timing: ScheduleTiming, after: datetime) -> datetime:
    """The first occurrence of ``timing`` strictly after ``after`` (aware), in UTC."""
    if timing.every_s is not None:
        periods = (after - _EPOCH) // timedelta(seconds=timing.every_s)
        return _EPOCH + timedelta(seconds=timing.every_s * (periods + 1))
    assert timing.cron is not None  # one of the two, by ScheduleTiming's validator
    local = after.astimezone(zone(timing.tz))
    return next(CronSim(timing.cron, local)).astimezone(UTC)


@functools.lru_cache(maxsize=4096)
def first_due(timing: ScheduleTiming, cursor: datetime) -> datetime:
    # The leader asks this of every schedule five times a second, mostly of unchanged
    # cursors: remembered (pure, so caching changes nothing but the cost).
    return next_fire(timing, cursor)


def occurrences(timing: ScheduleTiming, after: datetime) -> Iterator[datetime]:
    """Every occurrence strictly after ``after``, in order, in UTC (endless)."""
    if timing.every_s is not None:
        at = next_fire(timing, after)
        step = timedelta(seconds=timing.every_s)
        while True:
            yield at
            at += step
    assert timing.cron is not None
    for local in CronSim(timing.cron, after.astimezone(zone(timing.tz))):
        yield local.astimezone(UTC)


def task_id_for(name: str, occurrence: datetime) -> str:
    """The id of the task a schedule starts for an occurrence: one id per occurrence, so
    the task's own aggregate refuses a second submission."""
    at = occurrence.astimezone(UTC)
    stamp = at.strftime("%Y%m%dT%H%M%S")
    if at.microsecond:
        stamp += f"{at.microsecond:06d}"
    return f"{name}-{stamp}Z"

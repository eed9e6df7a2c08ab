"""Waiting in tests: poll a condition with a generous deadline, never a bare sleep.

Every wait in the tests goes through here, under one rule: ask; if the answer is truthy,
return it; if the deadline has passed, fail naming what was awaited (and the last answer);
else pause ``interval`` seconds and ask again. Returning the answer lets one probe both
wait and fetch. ``what`` may be a function, for a message that needs the state at the
moment of failure (a log tail, the errors seen so far).

- ``until``: a plain condition, from async code (the event loop keeps running);
- ``until_awaited``: a condition that must be awaited (a request, a store read);
- ``until_blocking``: a plain condition, from sync code (fixtures, threads, sync tests).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import NoReturn, TypeVar

import pytest

T = TypeVar("T")

What = str | Callable[[], str]
"""What is awaited, for the failure message; a function is called only on failure."""

DEFAULT_TIMEOUT_S = 20.0
DEFAULT_INTERVAL_S = 0.02


class _Deadline:
    def __init__(self, what: What, timeout: float) -> None:
        self.what, self.timeout = what, timeout
        self.at = time.monotonic() + timeout

    def check(self, last: object) -> None:
        """Fail if the deadline has passed; ``last`` is the last (falsy) answer."""
        if time.monotonic() > self.at:
            self.fail(last)

    def fail(self, last: object) -> NoReturn:
        what = self.what() if callable(self.what) else self.what
        seen = "" if last is None or isinstance(last, bool) else f"; last: {last!r:.300}"
        pytest.fail(f"timed out after {self.timeout:g} s waiting for {what}{seen}")


async def until(
    condition: Callable[[], T],
    what: What = "the condition",
    timeout: float = DEFAULT_TIMEOUT_S,
    interval: float = DEFAULT_INTERVAL_S,
) -> T:
    """Poll ``condition`` until it returns something truthy and return that; fail naming
    ``what`` after ``timeout`` s."""
    deadline = _Deadline(what, timeout)
    while not (answer := condition()):
        deadline.check(answer)
        await asyncio.sleep(interval)
    return answer


async def until_awaited(
    probe: Callable[[], Awaitable[T]],
    what: What = "the condition",
    timeout: float = DEFAULT_TIMEOUT_S,
    interval: float = DEFAULT_INTERVAL_S,
) -> T:
    """Like ``until``, awaiting ``probe()`` each time."""
    deadline = _Deadline(what, timeout)
    while not (answer := await probe()):
        deadline.check(answer)
        await asyncio.sleep(interval)
    return answer


def until_blocking(
    condition: Callable[[], T],
    what: What = "the condition",
    timeout: float = DEFAULT_TIMEOUT_S,
    interval: float = DEFAULT_INTERVAL_S,
) -> T:
    """Like ``until``, for sync code: sleeps the thread between polls."""
    deadline = _Deadline(what, timeout)
    while not (answer := condition()):
        deadline.check(answer)
        time.sleep(interval)
    return answer

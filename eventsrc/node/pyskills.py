"""Skills shipped by Python packages, found through the ``eventsrc.skills`` entry points.

A package declares ``[project.entry-points."eventsrc.skills"] name = "pkg.module:skill"``
where ``skill`` is a ``PythonSkill`` (or a no-argument callable returning one). Like
every executable skill, it is advertised only when the node enables it (``--skill``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from eventsrc.events import SkillMetadata
from eventsrc.node.discovery import DiscoveredSkill
from eventsrc.node.executors import ExecutionResult

ENTRY_POINT_GROUP = "eventsrc.skills"
PYTHON_SOURCE = "entry-point"


@dataclass(frozen=True, slots=True)
class PythonSkill:
    """A skill implemented by an async function of the payload."""

    metadata: SkillMetadata
    run: Callable[[Any], Awaitable[Any]]


class CallableExecutor:
    """Runs an async function of the payload in the node's event loop, with the task's
    time limit and its cancel event (packaged skills and registered task handlers)."""

    def __init__(self, func: Callable[[Any], Awaitable[Any]]) -> None:
        self._func = func

    async def run(
        self, payload: Any, *, timeout: float, cancel: asyncio.Event | None = None
    ) -> ExecutionResult:
        if cancel is not None and cancel.is_set():
            return _cancelled()
        if not isinstance(cancel, CancelSignal):
            return await self._run_watched(payload, timeout=timeout, cancel=cancel)
        # Inline in the calling task (no task per run): a cancel request cancels it.
        current = asyncio.current_task()
        assert current is not None
        requested = False

        def on_cancel() -> None:
            nonlocal requested
            requested = True
            current.cancel()

        cancel.on_set(on_cancel)
        try:
            async with asyncio.timeout(timeout):
                result = await self._func(payload)
        except TimeoutError:
            return _timed_out(timeout)
        except asyncio.CancelledError:
            if not requested:
                raise  # the node is shutting down
            current.uncancel()
            return _cancelled()
        except Exception as error:  # the handler's failure is the task's result
            return _failed(error)
        finally:
            cancel.on_set(None)
        return ExecutionResult(ok=True, result=result)

    async def _run_watched(
        self, payload: Any, *, timeout: float, cancel: asyncio.Event | None
    ) -> ExecutionResult:
        work = asyncio.ensure_future(self._func(payload))
        waiters: set[asyncio.Future[Any]] = {work}
        stop = asyncio.ensure_future(cancel.wait()) if cancel is not None else None
        if stop is not None:
            waiters.add(stop)
        try:
            done, _ = await asyncio.wait(
                waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            if stop is not None:
                stop.cancel()
        if work not in done:
            work.cancel()
            return _cancelled() if stop is not None and stop in done else _timed_out(timeout)
        error = work.exception()
        if error is not None:
            return _failed(error)
        return ExecutionResult(ok=True, result=work.result())


class CancelSignal(asyncio.Event):
    """A task's cancel request: an Event (process executors wait on it) that can also
    call back, so an in-process handler is cancelled without a watcher task."""

    def __init__(self) -> None:
        super().__init__()
        self._callback: Callable[[], None] | None = None

    def on_set(self, callback: Callable[[], None] | None) -> None:
        self._callback = callback

    def set(self) -> None:
        already = self.is_set()
        super().set()
        if not already and self._callback is not None:
            self._callback()


def _cancelled() -> ExecutionResult:
    return ExecutionResult(
        ok=False, result=None, retryable=False, cancelled=True, error="cancelled"
    )


def _timed_out(timeout: float) -> ExecutionResult:
    return ExecutionResult(
        ok=False,
        result=None,
        retryable=False,
        timed_out=True,
        error=f"timed out after {timeout:g} s",
    )


def _failed(error: BaseException) -> ExecutionResult:
    return ExecutionResult(
        ok=False, result=None, retryable=False, error=f"{type(error).__name__}: {error}"
    )


def entry_point_skills(errors: list[str]) -> dict[str, PythonSkill]:
    """Installed PythonSkills by name; a broken entry point is one line in ``errors``."""
    found: dict[str, PythonSkill] = {}
    for point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = point.load()
            skill = loaded if isinstance(loaded, PythonSkill) else loaded()
        except Exception as err:
            errors.append(f"entry point {point.name} ({point.value}): {type(err).__name__}: {err}")
            continue
        if not isinstance(skill, PythonSkill):
            errors.append(f"entry point {point.name} ({point.value}) is not a PythonSkill")
            continue
        found.setdefault(skill.metadata.name, skill)
    return found


def as_discovered(skill: PythonSkill) -> DiscoveredSkill:
    """The discovery record of an entry-point skill."""
    return DiscoveredSkill(
        metadata=skill.metadata,
        folder=None,
        run=None,
        timeout_s=None,
        eligible=True,
        missing=None,
        source=PYTHON_SOURCE,
    )

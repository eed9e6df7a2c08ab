"""One attempt of a task on a node: which code runs it, and how its result is stored.

A handler registered for the task's type runs first, else the executor of its first
required skill. The result becomes ``TaskSucceeded`` or ``TaskFailed``; one that cannot
be stored (not JSON, too large) becomes a clear failure instead, and storing it is
retried while NATS is unreachable, so a server restart does not cost a redelivery, and
for as long as the store is full, so a full disk costs neither the result nor a rerun.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from eventsrc.errors import (
    DuplicateEventError,
    PayloadTooLargeError,
    ServerUnavailableError,
    StoreFullError,
)
from eventsrc.events import Event, TaskAssigned, TaskFailed, TaskSucceeded, canonical_json
from eventsrc.lineage import running_task
from eventsrc.metrics import attempt_ended
from eventsrc.node.executors import ExecutionResult, Executor, OpenClawExecutor
from eventsrc.node.pyskills import CallableExecutor

log = logging.getLogger(__name__)

TaskHandler = Callable[[dict[str, Any]], Awaitable[Any]]
"""A Python handler for a task type: gets the task (id, skills, payload), returns the result."""

RUN_TIMEOUT_GRACE_S = 5.0
"""The node's own time limit is the coordinator's run timeout plus this (a backstop)."""
RESULT_RETRY_S = 20.0
"""How long a node keeps trying to store a result while no NATS server answers, before
leaving it to redelivery. A full store is waited out without a limit."""
RESULT_BACKOFF_MAX_S = 5.0
"""The longest pause between two tries to store a result."""
STORE_FULL_LOG_S = 60.0
"""While a result waits for room, how often the node says so."""
DEFAULT_MAX_RESULT = 512 * 1024
MAX_ERROR_CHARS = 4000
"""An error text is cut to this, so a failure can always be reported."""


async def run_assignment(
    event: TaskAssigned,
    handlers: Mapping[str, TaskHandler],
    executors: Mapping[str, Executor],
    node_id: str,
    cancel: asyncio.Event,
) -> ExecutionResult:
    """Run with the handler of the task type, else the first skill's executor."""
    handler = handlers.get(event.task_type or "")
    executor: Executor | None
    if handler is not None:
        executor = CallableExecutor(handler)
        payload: Any = {"task_id": event.task_id, "skills": event.skills, "payload": event.payload}
    else:
        executor, payload = executors.get(event.skills[0]), event.payload
        if event.model and isinstance(executor, OpenClawExecutor):
            executor = executor.with_model(event.model)
    if executor is None:
        return ExecutionResult(
            ok=False,
            result=None,
            retryable=False,
            error=f"no executor for skill {event.skills[0]} on node {node_id}",
        )
    # The coordinator owns the run deadline (it cancels at it); the node's own limit
    # is a backstop a little later, so one timeout ends one way: timed_out.
    token = running_task.set(event.task_id)
    try:
        return await executor.run(
            payload, timeout=event.run_timeout_s + RUN_TIMEOUT_GRACE_S, cancel=cancel
        )
    finally:
        running_task.reset(token)


class ResultWriter:
    """Turns an attempt's outcome into its result event and stores it."""

    def __init__(
        self,
        append: Callable[[Event], Awaitable[int]],
        *,
        envelope: Callable[[], dict[str, Any]],
        node_id: str,
        max_bytes: int = DEFAULT_MAX_RESULT,
    ) -> None:
        self._append = append
        self._envelope = envelope
        self._node_id = node_id
        self._max_bytes = max_bytes

    async def report(self, event: TaskAssigned, outcome: ExecutionResult, elapsed: float) -> None:
        skill = event.skills[0] if event.skills else ""
        attempt_ended(self._node_id, skill, ok=outcome.ok, elapsed_ms=elapsed)
        common = {
            "task_id": event.task_id,
            "node_id": self._node_id,
            "attempt": event.attempt,
            "duration_ms": elapsed,
        }
        if outcome.ok:
            outcome = self._check(outcome)
        if outcome.ok:
            try:
                await self._store(
                    TaskSucceeded(
                        **self._envelope(), **common, result=outcome.result, agent=outcome.agent
                    )
                )
                return
            except PayloadTooLargeError:
                outcome = ExecutionResult(
                    ok=False,
                    result=None,
                    retryable=False,
                    error="result too large to store; return a reference instead of the data",
                )
        error = outcome.error or "failed"
        if len(error) > MAX_ERROR_CHARS:
            error = error[: MAX_ERROR_CHARS - 1] + "…"
        await self._store(
            TaskFailed(
                **self._envelope(),
                **common,
                error=error,
                retryable=outcome.retryable,
                agent=outcome.agent,
            )
        )

    async def _store(self, event: Event) -> None:
        """Append a result: the same event id on every try, so JetStream stores it once.
        While the store is full it waits for room without a limit (the keep-alive loop
        keeps the assignment from being redelivered meanwhile), so a result is never
        thrown away for a full disk. While no server answers (a restart, a stream leader
        election) it tries for ``RESULT_RETRY_S``, then raises, leaving the assignment
        unacked, so it is redelivered."""
        delay = 0.2
        loop = asyncio.get_running_loop()
        give_up: float | None = None  # when the current run of unavailability ends the wait
        next_full_log = loop.time()
        while True:
            try:
                await self._append(event)
                return
            except DuplicateEventError:
                return  # an earlier try was stored, its ack lost: stored once, as wanted
            except StoreFullError as err:
                give_up = None
                if loop.time() >= next_full_log:
                    next_full_log = loop.time() + STORE_FULL_LOG_S
                    log.warning("result of %s waits for room: %s", event.subject, err)
            except ServerUnavailableError as err:
                if give_up is None:
                    give_up = loop.time() + RESULT_RETRY_S
                if loop.time() + delay > give_up:
                    raise
                log.info("result of %s not stored yet (%s); retrying", event.subject, err)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RESULT_BACKOFF_MAX_S)

    def _check(self, outcome: ExecutionResult) -> ExecutionResult:
        """The outcome, or a non-retryable failure for a result that cannot be stored."""
        try:
            size = len(canonical_json(outcome.result))
        except TypeError as err:
            reason = f"the result cannot be stored as JSON ({err})"
        else:
            if size <= self._max_bytes:
                return outcome
            reason = (
                f"the result is {size} bytes as JSON; the limit is {self._max_bytes} "
                f"(max_result_bytes): return a reference to the data instead"
            )
        return ExecutionResult(ok=False, result=None, retryable=False, error=reason)

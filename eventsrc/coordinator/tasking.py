"""The coordinator's task desk: submit, run (submit and wait), wait, get, cancel, and
the control loop's reconcile passes.

Placements are decided concurrently (every request, and the control loop) without a
lock: each decision reads ``Reservations`` (slots promised but not yet applied) as the
planned load of each node and holds its own assignments there until they are applied.
Waiting requests are futures resolved as the projection applies the tasks' ends, so a
client needs one request from submission to result and no consumer of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from eventsrc.commands import api
from eventsrc.commands.base import Stamp
from eventsrc.commands.tasks import (
    CancelTask,
    Limits,
    SubmitTask,
    decide_cancel,
    decide_submit,
    reconcile,
)
from eventsrc.commands.views import SubmittedTask, TaskInfo, submitted_task, task_info
from eventsrc.coordinator.room import StoreRoom
from eventsrc.errors import (
    ConcurrencyError,
    DomainError,
    EventsrcError,
    InvalidRequestError,
    NotFoundError,
    PayloadTooLargeError,
    StoreError,
)
from eventsrc.events import Event, TaskAssigned
from eventsrc.events.subjects import task_filter
from eventsrc.history import fold_task
from eventsrc.projections.state import ClusterState
from eventsrc.runner import ProjectionRunner
from eventsrc.store import JetStreamEventStore
from eventsrc.writer import EventWriter, Reservations, expected_seqs


class TaskDesk:
    """Task commands of the leading coordinator."""

    def __init__(
        self,
        store: JetStreamEventStore,
        runner: ProjectionRunner,
        writer: EventWriter,
        *,
        limits: Limits | None = None,
        room: StoreRoom | None = None,
    ) -> None:
        self._store = store
        self._runner = runner
        self._writer = writer
        self._limits = limits or Limits()
        self._room = room
        self.reservations = Reservations()
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._newest_finished: str | None = None
        # Tasks whose first placement is decided and being stored: the pass run when
        # their submission alone is applied leaves them to the decision in flight.
        self._placing: set[str] = set()

    # -- requests ---------------------------------------------------------------------

    async def _check_room(self, adding: int = 1) -> None:
        if self._room is not None:
            await self._room.check(adding)

    async def submit(self, command: SubmitTask) -> TaskInfo:
        """Decide the task and its first placement; resubmitting the same request
        returns the existing task."""
        existing = await self._store_submission(command)
        return existing or await self.view(command.task_id)

    async def _store_submission(self, command: SubmitTask) -> TaskInfo | None:
        """Decide and store a submission (applied once this returns); the task as the
        stream has it when it is known there only (evicted from memory), else None."""
        # Reads that never await need no lock: the follower applies a batch without
        # yielding, so no coroutine can see half of one.
        state = self._runner.state
        in_memory = command.task_id in state.tasks
        has_history = task_filter(command.task_id) in state.aggregate_seq
        if not in_memory and has_history:
            # Events but no task in memory: finished long ago (evicted) or stray events.
            existing = await self._existing(command)
            if existing is not None:
                return existing
        if not in_memory:
            await self._check_room()

        def decide(
            state: ClusterState, command: SubmitTask, /, *, stamp: Stamp
        ) -> tuple[Event, ...]:
            events = decide_submit(
                state,
                command,
                stamp=stamp,
                limits=self._limits,
                planned=self.reservations.counts,
                one_event=True,
            )
            if events and isinstance(events[-1], TaskAssigned):
                self._placing.add(command.task_id)
            return events

        try:
            await self._writer.execute(decide, command, reservations=self.reservations)
        except StoreError:
            # Lost every race: most likely an evicted task id whose history is only in
            # the stream. Answer from there, or give up with the store's message.
            existing = await self._existing(command)
            if existing is None:
                raise
            return existing
        finally:
            self._placing.discard(command.task_id)
        return None

    async def submit_many(self, command: api.SubmitTasks) -> dict[str, list[SubmittedTask]]:
        """Decide every task as ``submit`` does, then store them all at once: in atomic
        batches (all of a batch's tasks or none, one commit each, up to 500 tasks a
        batch) where the store takes them, else pipelined (one round trip per event of a
        decision, not per task). A task refused refuses the whole call before anything
        is stored; tasks already stored with the same request change nothing."""
        _check_unique(command.tasks)
        known = self._runner.state.tasks
        if new := sum(task.task_id not in known for task in command.tasks):
            await self._check_room(new)
        state = self._runner.state  # decided without an await from here: no lock needed
        self._writer.check_leading(state.epoch)
        one_by_one: list[SubmitTask] = []
        batch: list[SubmitTask] = []
        chains: list[tuple[Event, ...]] = []
        held: list[str] = []
        placing: list[str] = []
        try:
            for number, task in enumerate(command.tasks, start=1):
                if task.task_id not in state.tasks and task_filter(task.task_id) in (
                    state.aggregate_seq
                ):
                    one_by_one.append(task)  # history but no task in memory: see submit
                    continue
                try:
                    events = decide_submit(
                        state,
                        task,
                        stamp=self._writer.stamp(),
                        limits=self._limits,
                        planned=self.reservations.counts,
                        one_event=True,
                    )
                except (DomainError, InvalidRequestError, PayloadTooLargeError) as err:
                    raise type(err)(f"task {number} ({task.task_id}): {err}") from err
                # Held at once, so the next task of the batch sees this one's slot taken.
                held += self.reservations.hold(events)
                if events and isinstance(events[-1], TaskAssigned):
                    placing.append(task.task_id)
                    self._placing.add(task.task_id)
                batch.append(task)
                chains.append(events)
            outcomes = await self._writer.append_chains(
                chains, [expected_seqs(state, events) for events in chains]
            )
            last = max((o for o in outcomes if isinstance(o, int)), default=0)
            if last:
                await self._runner.wait_for(last)
        finally:
            self.reservations.release(held)
            self._placing.difference_update(placing)
        for task, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, ConcurrencyError):
                one_by_one.append(task)  # stored meanwhile by another request: see submit
            elif not isinstance(outcome, int):
                raise outcome  # the rest is stored: the same batch again completes it
        for task in one_by_one:
            await self.submit(task)
        return {"tasks": [await self._submitted(task.task_id) for task in command.tasks]}

    async def _submitted(self, task_id: str) -> SubmittedTask:
        task = self._runner.state.tasks.get(task_id)
        if task is not None:
            return submitted_task(task)
        info = await self.view(task_id)
        return SubmittedTask(
            task_id=task_id, state=info.state, node_id=info.node_id, reason=info.reason
        )

    async def run(self, command: api.RunTask) -> TaskInfo:
        """Submit, then wait up to ``wait_s`` for the task to end."""
        existing = await self._store_submission(command)
        if existing is not None and (existing.terminal or command.wait_s <= 0):
            return existing
        if command.wait_s <= 0:
            return await self.view(command.task_id)
        # The answer is built once, when the task ended (or the wait did), not also here.
        return await self._wait(command.task_id, command.wait_s)

    async def wait(self, command: api.WaitTask) -> TaskInfo:
        """The task once it is terminal, or as it is when ``wait_s`` passed."""
        return await self._wait(command.task_id, command.wait_s)

    async def _wait(self, task_id: str, wait_s: float) -> TaskInfo:
        future = asyncio.get_running_loop().create_future()
        # Registered before looking, so an end applied in between is not missed.
        waiters = self._waiters.setdefault(task_id, [])
        waiters.append(future)
        try:
            task = self._runner.state.tasks.get(task_id)
            if task is not None and not task.terminal:
                # asyncio.timeout, not wait_for: no task or extra future per wait.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait_s):
                        await future
        finally:
            with contextlib.suppress(ValueError):
                waiters.remove(future)
            if not waiters and self._waiters.get(task_id) is waiters:
                del self._waiters[task_id]
        return await self.view(task_id)

    async def get(self, command: api.GetTask) -> TaskInfo:
        return await self.view(command.task_id)

    async def cancel(self, command: CancelTask) -> TaskInfo:
        await self._writer.execute(decide_cancel, command)
        return await self.view(command.task_id)

    async def view(self, task_id: str) -> TaskInfo:
        """The task from memory, else folded from its events in the stream."""
        task = self._runner.state.tasks.get(task_id)
        if task is not None:
            return task_info(task)
        folded = await fold_task(self._store, task_id)
        if folded is None:
            raise NotFoundError(f"no task {task_id}; check the id (eventsrc tasks --all)")
        return task_info(folded)

    async def _existing(self, command: SubmitTask) -> TaskInfo | None:
        """The stored task with this id, if the stream has its submission (idempotency)."""
        folded = await fold_task(self._store, command.task_id)
        if folded is None:
            return None
        if folded.spec != command.spec:
            raise DomainError(
                f"task {command.task_id} exists with a different request; use another task id"
            )
        return task_info(folded)

    # -- following the projection -----------------------------------------------------

    def on_applied(self, state: ClusterState) -> None:
        """After every applied batch: wake the requests whose task ended (or left)."""
        finished = state.finished
        seen, self._newest_finished = self._newest_finished, next(reversed(finished), None)
        if not self._waiters:
            return
        if seen is not None and seen in finished:
            # Finished tasks are kept, and evicted, in the order they ended: those after
            # the newest one of the last batch are exactly the ones that ended since.
            for task_id in reversed(finished):
                if task_id == seen:
                    return
                self._wake(task_id)
            return
        # No mark to go by (nothing had ended, or it was evicted since): look at all.
        for task_id in list(self._waiters):
            task = state.tasks.get(task_id)
            if task is None or task.terminal:
                self._wake(task_id)

    def _wake(self, task_id: str) -> None:
        for future in self._waiters.get(task_id, ()):
            if not future.done():
                future.set_result(None)

    # -- control loop -----------------------------------------------------------------

    async def reconcile(self, *, full: bool) -> None:
        """One pass: decide what moves unfinished tasks along and store it, the tasks'
        appends pipelined or in atomic batches (each still guarded by its own last
        sequence).

        ``full=False`` only looks at waiting tasks: what a newly applied event can
        unblock. Deadlines and lost nodes are the full pass's (on the tick).
        """
        state = self._runner.state  # decided without an await: no lock needed
        self._writer.check_leading(state.epoch)
        if not full and not state.waiting:
            return
        decisions = reconcile(
            state,
            stamp=self._writer.stamp(),
            planned=self.reservations.counts,
            full=full,
            placing=self._placing,
        )
        held = self.reservations.hold([e for _, events in decisions for e in events])
        try:
            chains = [events for _, events in decisions]
            outcomes = await self._writer.append_chains(
                chains, [expected_seqs(state, events) for events in chains]
            )
            last = max((o for o in outcomes if isinstance(o, int)), default=0)
            if last:
                await self._runner.wait_for(last)
        finally:
            self.reservations.release(held)
        for outcome in outcomes:
            # A conflict: the task moved on meanwhile; the next pass decides again.
            if isinstance(outcome, EventsrcError) and not isinstance(outcome, ConcurrencyError):
                raise outcome


def _check_unique(tasks: Sequence[SubmitTask]) -> None:
    """One task id once per batch (twice is a mistake in the list, not a resubmission)."""
    first: dict[str, int] = {}
    for number, task in enumerate(tasks, start=1):
        seen = first.setdefault(task.task_id, number)
        if seen != number:
            raise InvalidRequestError(
                f"task {number}: task id {task.task_id} is also task {seen} of the batch; "
                f"give each task its own id"
            )

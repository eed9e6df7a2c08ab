"""Deciding and appending: commands against the local projection, guarded by JetStream.

Each event is appended with ``Nats-Expected-Last-Subject-Sequence`` of its aggregate as
the state showed it when deciding; consecutive events of one aggregate chain on the
sequence of the previous. A lost race re-reads and decides again. Many decisions at once
(``append_chains``) go in atomic batches when the store takes them: one commit for all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Final, Protocol, TypeVar

from eventsrc.commands.base import Command, Origin, Stamp
from eventsrc.errors import (
    BatchRefusedError,
    ConcurrencyError,
    DuplicateEventError,
    EventsrcError,
    NotLeaderError,
    StoreError,
)
from eventsrc.events import Event, TaskAssigned
from eventsrc.ports import MAX_ATOMIC_BATCH, EventStore
from eventsrc.projections.state import ClusterState
from eventsrc.runner import ProjectionRunner

log = logging.getLogger(__name__)

CommandT = TypeVar("CommandT", bound=Command, contravariant=True)


class Decide(Protocol[CommandT]):
    """A decide function: the events a command leads to in a state, their origin, time
    and ids given by the stamp, never read (so decisions replay)."""

    def __call__(
        self, state: ClusterState, command: CommandT, /, *, stamp: Stamp
    ) -> tuple[Event, ...]: ...


C = TypeVar("C", bound=Command)

MAX_CONFLICT_RETRIES = 5

WRITER_STOPPED: Final = "the writer stopped before storing this decision; retry"

ATOMIC_MIN_EVENTS: Final = 16
"""The fewest events of many decisions stored as an atomic batch. nats-server 2.15 stages
every batch in a store of its own (files made, flushed and removed: about 2 ms here), so
a batch of a few events takes longer than their appends pipelined; from about 16 events
on it is faster when every append is flushed to disk (the default), up to 10 times at
1,000. (Measured on decisions of two events; the cost is the server's per batch and
per event, not per decision.)"""


def utc_now() -> datetime:
    """The decision clock (the coordinator's; server timestamps are the evidence)."""
    return datetime.now(UTC)


def expected_seqs(state: ClusterState, events: Iterable[Event]) -> dict[str, int]:
    """What the appends of ``events`` expect: the last sequence of each one's aggregate
    as ``state`` shows it (``append_chain`` moves it along their own appends)."""
    return {
        event.aggregate_subject: state.expected_seq(event.aggregate_subject) for event in events
    }


class Reservations:
    """Node slots promised by decisions whose events the projection has not applied yet.

    Placement decisions run concurrently (each request, and the control loop); they
    read ``counts`` as the ``planned`` load of each node, so two decisions in flight
    never hand out the same free slot. A decision holds its assignments from the
    moment it is made until its events are applied (or failed to store).
    """

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def hold(self, events: Sequence[Event]) -> list[str]:
        """Count the assignments among ``events``; returns what ``release`` takes."""
        nodes = [event.node_id for event in events if isinstance(event, TaskAssigned)]
        self.counts.update(nodes)
        return nodes

    def release(self, nodes: Sequence[str]) -> None:
        self.counts.subtract(nodes)
        for node_id in nodes:
            if self.counts[node_id] <= 0:
                del self.counts[node_id]


class EventWriter:
    """Runs decide functions against a runner's state and appends their events."""

    def __init__(
        self,
        store: EventStore,
        runner: ProjectionRunner,
        *,
        origin: Origin | None = None,
        clock: Callable[[], datetime] = utc_now,
        holds_lease: Callable[[], bool] | None = None,
    ) -> None:
        self.store = store
        self.runner = runner
        self.origin = origin or Origin()
        self.clock = clock
        self._revoked = False
        self._holds_lease = holds_lease
        self._appending = 0
        self._queued: list[tuple[Sequence[Event], dict[str, int], asyncio.Future[int]]] = []
        self._flusher: asyncio.Task[None] | None = None

    def revoke(self) -> None:
        """Refuse every further decision and append (the leader lease was lost)."""
        self._revoked = True

    async def execute(
        self,
        decide: Decide[C],
        command: C,
        *,
        reservations: Reservations | None = None,
    ) -> tuple[Event, ...]:
        """Decide, append, and return once the local projection has applied the events.

        With ``reservations``, the assignments decided are held there until applied.
        """
        for _ in range(MAX_CONFLICT_RETRIES):
            held: list[str] = []
            # Decided without an await in between, so without the reader lock: the
            # follower applies a batch without yielding, no coroutine sees half of one.
            state = self.runner.state
            self.check_leading(state.epoch)
            events = decide(state, command, stamp=self.stamp())
            expected = expected_seqs(state, events)
            if reservations is not None:
                held = reservations.hold(events)
            try:
                last = await self._commit(events, expected)
                await self.runner.wait_for(last)
            except ConcurrencyError:
                # Someone else wrote to the aggregate: catch up and decide again.
                await self.runner.wait_for(await self.store.last_seq())
                continue
            finally:
                if reservations is not None:
                    reservations.release(held)
            return events
        raise StoreError(
            f"{type(command).__name__} kept losing races after {MAX_CONFLICT_RETRIES} tries; "
            f"try again"
        )

    async def _commit(self, events: Sequence[Event], expected: dict[str, int]) -> int:
        """Store one decision's events: at once when no other decision is being stored
        (a lone decision waits for nothing), else queued, and the decisions queued
        meanwhile stored together by ``append_chains`` (an atomic batch when they are
        many): group commit, one flush for many decisions under load."""
        if not self._appending and not self._queued:
            self._appending += 1
            try:
                return await self.append_chain(events, expected)
            finally:
                self._appending -= 1
        stored: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        entry = (events, expected, stored)
        self._queued.append(entry)
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush())
        try:
            return await asyncio.shield(stored)
        except asyncio.CancelledError:
            if entry in self._queued:  # nothing sent: it is never stored
                self._queued.remove(entry)
                stored.cancel()
                raise
            # Being stored: the caller releases its reservations once we return, so only
            # after the events are stored and applied (or failed to store).
            await _outlast(self._settle(stored))
            raise

    async def _settle(self, stored: asyncio.Future[int]) -> None:
        """Wait until a decision being stored is stored and applied, or failed."""
        try:
            last = await stored
        except Exception:
            return
        await self.runner.wait_for(last)

    async def _flush(self) -> None:
        group: list[tuple[Sequence[Event], dict[str, int], asyncio.Future[int]]] = []
        try:
            while self._queued:
                group, self._queued = self._queued, []
                self._appending += 1
                try:
                    outcomes: list[int | EventsrcError] | BaseException = await self.append_chains(
                        [events for events, _, _ in group], [expected for _, expected, _ in group]
                    )
                except Exception as err:  # raised before storing any: all of them hear it
                    outcomes = err
                finally:
                    self._appending -= 1
                for index, (_, _, stored) in enumerate(group):
                    if stored.done():
                        continue  # its request was cancelled meanwhile
                    outcome = outcomes if isinstance(outcomes, BaseException) else outcomes[index]
                    if isinstance(outcome, BaseException):
                        stored.set_exception(outcome)
                    else:
                        stored.set_result(outcome)
        finally:
            # Cancelled or died: no caller waits forever for a decision never stored.
            self._flusher = None
            left, self._queued = [*group, *self._queued], []
            for _, _, stored in left:
                if not stored.done():
                    stored.set_exception(StoreError(WRITER_STOPPED))

    def stamp(self) -> Stamp:
        """The stamp of a decision made now: our origin, the clock's time, fresh ids."""
        return self.origin.stamp(self.clock())

    def check_leading(self, epoch: int) -> None:
        """Refuse to decide once revoked or past the lease, or once the state shows a newer
        leader than our origin's epoch."""
        if self._revoked or (self._holds_lease is not None and not self._holds_lease()):
            raise NotLeaderError(
                f"{self.origin.producer} no longer holds the leader lease; retry: the "
                f"current leader answers"
            )
        if self.origin.epoch is not None and epoch > self.origin.epoch:
            raise NotLeaderError(
                f"{self.origin.producer} was deposed (leader epoch {epoch} > "
                f"{self.origin.epoch}); retry: the current leader answers"
            )

    async def append_chains(
        self, chains: Sequence[Sequence[Event]], expected: Sequence[dict[str, int]]
    ) -> list[int | EventsrcError]:
        """Append many chains (each the events of one decision, in order), each event
        guarded as ``append_chain`` guards it. Per chain the sequence of its last event,
        or the error that stopped it (a duplicate counts as stored).

        With ``ATOMIC_MIN_EVENTS`` events or more and a store that takes atomic batches,
        whole chains go in atomic batches of at most ``MAX_ATOMIC_BATCH`` events: one
        commit (one flush) per batch instead of one per event. A batch refused (a guard
        failed, an event was stored already, the server refuses batches) stores none of
        its chains; they are then appended pipelined, which tells which of them lost.
        Pipelined: the first event of every chain in one round trip, then the second of
        each, and so on. Never raises: an error that stops chains (the lead lost, the
        store failing) is the result of each chain it left incomplete."""
        results: list[int | EventsrcError] = [0] * len(chains)
        going = [index for index, chain in enumerate(chains) if chain]
        if self.store.atomic_batches and sum(map(len, chains)) >= ATOMIC_MIN_EVENTS:
            groups, going = _atomic_groups(chains, going)
            refused = await asyncio.gather(
                *(self._append_atomic(chains, expected, group, results) for group in groups),
                return_exceptions=True,
            )
            for group, outcome in zip(groups, refused, strict=True):
                if isinstance(outcome, BaseException):
                    error = _as_store_error(outcome)
                    for index in group:
                        results[index] = error
                else:
                    going.extend(outcome)
            going.sort()
        await self._append_pipelined(chains, expected, going, results)
        return results

    async def _append_atomic(
        self,
        chains: Sequence[Sequence[Event]],
        expected: Sequence[dict[str, int]],
        group: Sequence[int],
        results: list[int | EventsrcError],
    ) -> Sequence[int]:
        """Append the chains ``group`` names as one atomic batch, the first event of
        each aggregate guarded (the batch is atomic: the later ones need no guard). Their
        results go to ``results``; returns the chains to append pipelined instead."""
        events: list[Event] = []
        guards: list[int | None] = []
        for index in group:
            guarded: set[str] = set()
            for event in chains[index]:
                aggregate = event.aggregate_subject
                guards.append(None if aggregate in guarded else expected[index].get(aggregate, 0))
                guarded.add(aggregate)
                events.append(event)
        self.check_leading(self.runner.state.epoch)
        try:
            last = await self.store.append_batch(events, guards)
        except (ConcurrencyError, BatchRefusedError):
            return group  # none of it stored: appended one by one, which tells who lost
        except EventsrcError as err:  # a timeout too: stored or not, unknown
            if not self.store.atomic_batches:
                return group  # the server refused atomic batches: pipelined from now on
            for index in group:
                results[index] = err
            return ()
        seq = last - len(events)
        for index in group:
            seq += len(chains[index])
            results[index] = seq
        return ()

    async def _append_pipelined(
        self,
        chains: Sequence[Sequence[Event]],
        expected: Sequence[dict[str, int]],
        going: list[int],
        results: list[int | EventsrcError],
    ) -> None:
        """Append the chains ``going`` names pipelined, position by position. An error
        that stops them all is the result of each chain not stored completely."""
        position = 0
        while going:
            events = [chains[index][position] for index in going]
            seqs: list[int | None] = [
                expected[index].get(event.aggregate_subject, 0)
                for index, event in zip(going, events, strict=True)
            ]
            try:
                self.check_leading(self.runner.state.epoch)
                outcomes = await self.store.append_guarded(events, seqs)
            except Exception as err:
                error = _as_store_error(err)
                for index in going:
                    results[index] = error
                return
            position += 1
            still: list[int] = []
            for index, event, outcome in zip(going, events, outcomes, strict=True):
                if isinstance(outcome, DuplicateEventError):
                    outcome = outcome.seq
                results[index] = outcome
                if isinstance(outcome, int):
                    expected[index][event.aggregate_subject] = outcome
                    if position < len(chains[index]):
                        still.append(index)
            going = still

    async def append_chain(self, events: Sequence[Event], expected: dict[str, int]) -> int:
        """Append in order; each aggregate's expectation moves with our own appends."""
        last = 0
        for event in events:
            # The state's epoch too: a newer leader's election applied while this chain
            # awaited its appends stops it here, before any other object hears of it.
            self.check_leading(self.runner.state.epoch)
            aggregate = event.aggregate_subject
            try:
                last = await self.store.append(event, expected_seq=expected.get(aggregate, 0))
            except DuplicateEventError as dup:
                last = dup.seq
            expected[aggregate] = last
        return last


def _atomic_groups(
    chains: Sequence[Sequence[Event]], indexes: Sequence[int]
) -> tuple[list[list[int]], list[int]]:
    """The chains ``indexes`` names, grouped for atomic batches (whole chains, at most
    ``MAX_ATOMIC_BATCH`` events a group), and those left to append pipelined: a chain on
    an aggregate an earlier chain of the call writes too (decided without that one's
    events, its guard must be checked after them, not against the stream before the
    batch)."""
    groups: list[list[int]] = []
    group: list[int] = []
    size = 0
    written: set[str] = set()
    rest: list[int] = []
    for index in indexes:
        chain = chains[index]
        aggregates = {event.aggregate_subject for event in chain}
        if len(chain) > MAX_ATOMIC_BATCH or not aggregates.isdisjoint(written):
            rest.append(index)
            continue
        written |= aggregates
        if size + len(chain) > MAX_ATOMIC_BATCH:
            groups.append(group)
            group, size = [], 0
        group.append(index)
        size += len(chain)
    if group:
        groups.append(group)
    return groups, rest


def _as_store_error(err: BaseException) -> EventsrcError:
    """What a chain stopped by ``err`` is told: ours as it is, anything else a store
    error (its outcome is unknown: retry, idempotently)."""
    if isinstance(err, EventsrcError):
        return err
    # Not one of ours: a defect or a failing store. Each decision hears "retry"; the
    # operator needs the cause once, with its traceback (a cancellation is no failure).
    if isinstance(err, Exception):
        log.error("storing decisions failed unexpectedly", exc_info=err)
    return StoreError(f"storing a decision failed ({type(err).__name__}: {err}); retry")


async def _outlast(work: Awaitable[None]) -> None:
    """Await ``work`` to its end, however often the awaiting task is cancelled meanwhile."""
    task = asyncio.ensure_future(work)
    while not task.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(task)

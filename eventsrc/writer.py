"""Deciding and appending: commands against the local projection, guarded by JetStream.

Each event is appended with ``Nats-Expected-Last-Subject-Sequence`` of its aggregate as
the state showed it when deciding; consecutive events of one aggregate chain on the
sequence of the previous. A lost race re-reads and decides again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from eventsrc.commands.base import Command, Origin, Stamp
from eventsrc.errors import (
    ConcurrencyError,
    DuplicateEventError,
    EventsrcError,
    NotLeaderError,
    StoreError,
)
from eventsrc.events import Event, TaskAssigned
from eventsrc.ports import EventStore
from eventsrc.projections.state import ClusterState
from eventsrc.runner import ProjectionRunner

CommandT = TypeVar("CommandT", bound=Command, contravariant=True)


class Decide(Protocol[CommandT]):
    """A decide function: the events a command leads to in a state, their origin, time
    and ids given by the stamp, never read (so decisions replay)."""

    def __call__(
        self, state: ClusterState, command: CommandT, /, *, stamp: Stamp
    ) -> tuple[Event, ...]: ...


C = TypeVar("C", bound=Command)

MAX_CONFLICT_RETRIES = 5


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
                last = await self.append_chain(events, expected)
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
        """Append many chains (each the events of one decision, in order) pipelined: the
        first event of every chain in one round trip, then the second of each, and so
        on, each guarded as ``append_chain`` guards it. Per chain the sequence of its
        last event, or the error that stopped it (a duplicate counts as stored)."""
        results: list[int | EventsrcError] = [0] * len(chains)
        going = [index for index, chain in enumerate(chains) if chain]
        position = 0
        while going:
            self.check_leading(self.runner.state.epoch)
            events = [chains[index][position] for index in going]
            seqs: list[int | None] = [
                expected[index].get(event.aggregate_subject, 0)
                for index, event in zip(going, events, strict=True)
            ]
            outcomes = await self.store.append_guarded(events, seqs)
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
        return results

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

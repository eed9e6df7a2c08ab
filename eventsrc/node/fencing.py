"""Fencing at the node: work stamped by a deposed leader is not run.

Projections already ignore coordinator events of an older epoch than the newest
``LeaderElected`` stored before them (``is_fenced``). A node applies the same rule to
every event on its assignment subject before it acts on it, keyed on the envelope's
epoch, whatever the event's type: an assignment (or a cancel request, or any other
event placed there) that a zombie leader stored after a newer leader was elected is
acked, logged and not acted on. The projections keep it for audit as fenced, and the
task's real leader places the attempt itself, so nothing waits on it.

"Before it" is stream order, as in the projections: an assignment stored just before a
new election is still valid (the new leader's state has that attempt placed here) and
runs. So the fence keeps the epochs of the elections it read with their sequences, and
learns of new ones in stream order together with the node's own assignments: once it
has passed an assignment's sequence, every election stored before it is known. That
closes the start-up race (nothing runs before the elections are read) and the race with
a fresh election whose event the fence has not seen yet.

Two ways to pass an assignment's sequence, as the node's work consumer allows:

- in band (``observe``): the work consumer also carries ``evt.cluster``, so elections
  arrive on it, in stream order, ahead of any assignment stored after them. A first
  delivery whose consumer sequence follows the previous one has nothing unseen before
  it; no second read of the assignment, no wait.
- a follower of its own (a work consumer made before elections were on it): an ordered
  read of ``evt.cluster`` and the assignment filter, which the assignment waits for.

Either way, a fence that cannot vouch for an assignment (the follower lags: a poll
interval in secure mode, a reconnect; or a consumer sequence skipped: a message lost in
transit) reads the elections between its position and the assignment from the stream.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
from typing import Final

from eventsrc.errors import EventsrcError
from eventsrc.events import Event, LeaderElected, is_fenced, is_newer_election
from eventsrc.events.subjects import CLUSTER_SUBJECT, assignments_filter
from eventsrc.ports import Record, StoredEvent
from eventsrc.store import JetStreamEventStore

log = logging.getLogger(__name__)

FOLLOWER_WAIT_S: Final = 0.1
"""How long an assignment waits for the follower to pass it before the elections
before it are read from the stream directly."""
RETRY_S: Final = 1.0


class LeaderFence:
    """The leader epochs this node knows, by stream position; ``start`` before taking
    work, ``close`` when done."""

    def __init__(self, store: JetStreamEventStore, *, node_id: str) -> None:
        self._store = store
        self._node_id = node_id
        self._seqs: list[int] = []
        self._epochs: list[int] = []
        self._through = 0
        self._moved = asyncio.Event()
        self._follower: asyncio.Task[None] | None = None
        self._consumer_seq = 0
        """The newest consumer sequence ``observe`` saw (0: none yet)."""
        self._unsure_from = 0
        """After a skipped consumer sequence, the sequence of the delivery that showed it
        (the missing message is older): deliveries do not move the fence until the
        stream was read up to there (0: nothing missing)."""

    @property
    def epoch(self) -> int:
        """The newest leader epoch known (0 before any election)."""
        return self._epochs[-1] if self._epochs else 0

    async def start(self, *, in_band: bool = False) -> None:
        """Read every election stored so far, then follow them: ``in_band`` when the work
        consumer carries them (every delivery goes through ``observe``), else with a
        follower of its own. Raises EventsrcError when the stream cannot be read."""
        through = await self._store.last_seq()
        async for record in self._store.read(subjects=CLUSTER_SUBJECT, until_seq=through):
            self._note(record)
        self._through = through
        if not in_band:
            self._follower = asyncio.create_task(self._follow(), name="leader-fence")

    def observe(self, event: Event, *, seq: int, consumer_seq: int, delivered: int) -> None:
        """A delivery of the work consumer, before anything acts on it (in-band mode).

        An election is noted. A first delivery right after the previous consumer
        sequence moves the fence to its sequence: the consumer delivers in stream order,
        so every election before it came earlier. A skipped consumer sequence (a message
        lost in transit, or a redelivery's reordering) stops that until ``admits`` read
        the stream past it.
        """
        if isinstance(event, LeaderElected):
            self._add_election(seq, event.epoch)
        if self._consumer_seq and consumer_seq != self._consumer_seq + 1:
            self._unsure_from = max(self._unsure_from, seq)
        self._consumer_seq = max(self._consumer_seq, consumer_seq)
        if delivered == 1 and seq > self._through and not self._unsure_from:
            self._through = seq

    async def close(self) -> None:
        """Stop following; idempotent."""
        follower, self._follower = self._follower, None
        if follower is not None:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower

    async def admits(self, event: Event, seq: int) -> bool:
        """Whether ``event``, stored at ``seq`` on this node's assignment subject, may be
        acted on: False when its epoch is older than the newest election stored before
        it (then it is logged here). Raises EventsrcError when the elections before it
        cannot be read."""
        leader = await self._epoch_before(seq)
        if not is_fenced(event.epoch, leader):
            return True
        log.warning(
            "fenced: %s at seq %d carries leader epoch %s, but epoch %d was elected before "
            "it; acked and not acted on (a deposed leader wrote it)",
            event.type,
            seq,
            event.epoch,
            leader,
        )
        return False

    async def _epoch_before(self, seq: int) -> int:
        if self._through < seq and self._follower is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(FOLLOWER_WAIT_S):
                    while self._through < seq:
                        self._moved.clear()
                        await self._moved.wait()
        known = self._known_before(seq)
        if self._through >= seq:
            return known
        # The follower lags, or a delivery went missing: read the elections between our
        # position and ``seq`` ourselves.
        start = self._through
        async for record in self._store.read(
            subjects=CLUSTER_SUBJECT, from_seq=start + 1, until_seq=seq - 1
        ):
            if isinstance(record, StoredEvent) and isinstance(record.event, LeaderElected):
                known = max(known, record.event.epoch or 0)
                if self._follower is None:
                    self._add_election(record.seq, record.event.epoch)
        if self._follower is None and self._through == start:
            # In band, every election before ``seq`` is known now (read, or delivered).
            self._through = seq - 1
            if seq >= self._unsure_from:
                self._unsure_from = 0
        return known

    def _known_before(self, seq: int) -> int:
        at = bisect.bisect_left(self._seqs, seq)
        return self._epochs[at - 1] if at else 0

    def _note(self, record: Record) -> None:
        if isinstance(record, StoredEvent) and isinstance(record.event, LeaderElected):
            self._add_election(record.seq, record.event.epoch)

    def _add_election(self, seq: int, epoch: int | None) -> None:
        """Count the election stored at ``seq`` as the projections do, in stream order,
        wherever it falls among those known (a read can bring one from before them): one
        not newer than the elections before it changes nothing, and it makes those after
        it that are not newer than it count for nothing. The epochs stay increasing with
        the sequences, for the lookup."""
        at = bisect.bisect_left(self._seqs, seq)
        if at < len(self._seqs) and self._seqs[at] == seq:
            return  # known already (a resubscription, or read and delivered)
        if not is_newer_election(epoch, self._epochs[at - 1] if at else 0):
            return
        end = at
        while end < len(self._epochs) and not is_newer_election(self._epochs[end], epoch or 0):
            end += 1
        self._seqs[at:end] = [seq]
        self._epochs[at:end] = [epoch or 0]

    async def _follow(self) -> None:
        subjects = [CLUSTER_SUBJECT, assignments_filter(self._node_id)]
        while True:
            try:
                async for record in self._store.subscribe(
                    subjects=subjects, from_seq=self._through + 1
                ):
                    self._note(record)
                    if record.seq > self._through:
                        self._through = record.seq
                        self._moved.set()
            except EventsrcError as err:
                log.warning("following leader elections: %s; again in %g s", err, RETRY_S)
            await asyncio.sleep(RETRY_S)

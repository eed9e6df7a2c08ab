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
follows ``evt.cluster`` together with the node's own assignment filter: once the follower
has passed an assignment's sequence, every election stored before it is known. That
closes the start-up race (nothing runs before the elections are read) and the race with
a fresh election whose event the follower has not seen yet. A follower that lags (a
poll interval in secure mode, a reconnect) is not waited on for long: the elections
between its position and the assignment are then read from the stream directly.
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

    @property
    def epoch(self) -> int:
        """The newest leader epoch known (0 before any election)."""
        return self._epochs[-1] if self._epochs else 0

    async def start(self) -> None:
        """Read every election stored so far, then follow; raises EventsrcError when the
        stream cannot be read."""
        through = await self._store.last_seq()
        async for record in self._store.read(subjects=CLUSTER_SUBJECT, until_seq=through):
            self._note(record)
        self._through = through
        self._follower = asyncio.create_task(self._follow(), name="leader-fence")

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
        if self._through < seq:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(FOLLOWER_WAIT_S):
                    while self._through < seq:
                        self._moved.clear()
                        await self._moved.wait()
        known = self._known_before(seq)
        if self._through >= seq:
            return known
        # The follower lags: read the elections between it and ``seq`` ourselves.
        async for record in self._store.read(
            subjects=CLUSTER_SUBJECT, from_seq=self._through + 1, until_seq=seq - 1
        ):
            if isinstance(record, StoredEvent) and isinstance(record.event, LeaderElected):
                known = max(known, record.event.epoch or 0)
        return known

    def _known_before(self, seq: int) -> int:
        at = bisect.bisect_left(self._seqs, seq)
        return self._epochs[at - 1] if at else 0

    def _note(self, record: Record) -> None:
        if not isinstance(record, StoredEvent):
            return
        event = record.event
        # A fenced election (not newer) changes nothing, as in the projections; the
        # sequences stay sorted for the lookup, whatever a resubscription repeats.
        newer = isinstance(event, LeaderElected) and is_newer_election(event.epoch, self.epoch)
        if newer and (not self._seqs or record.seq > self._seqs[-1]):
            self._seqs.append(record.seq)
            self._epochs.append(event.epoch or 0)

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

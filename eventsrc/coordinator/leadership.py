"""Who leads: a lease in JetStream KV decides, a ``LeaderElected`` epoch records it.

Every coordinator runs a ``Leadership``. A standby contests the lease every
``retry_every`` seconds (its projection keeps following the stream meanwhile). The
winner appends ``LeaderElected(epoch + 1)`` guarded by the last sequence of
``evt.cluster`` and starts serving; it renews the lease every ``lease_s / 3`` seconds
with the revision it last wrote. It stops deciding as soon as it cannot be sure the
lease is still its own: a renewal refused (the key moved on), or no successful renewal
for ``lease_s - margin`` seconds counted from when the last one was *sent* (the server
cannot have stored it earlier, so the key cannot expire earlier), or its projection
applied a newer epoch (another leader was elected: it watches its own epoch). It then
goes back to standby. The coordinator serves each ``Term`` that ``terms()`` hands out
until the term ends; nothing calls back into it. Safety does not rest on clocks: a
deposed leader's late appends either fail their aggregate's expected-sequence check or
are fenced by projections as an older epoch (``projections.apply``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any

from eventsrc.errors import ConcurrencyError, LeaseLostError, StoreError
from eventsrc.events import ClusterSettingsChanged, LeaderElected, Origin
from eventsrc.events.subjects import CLUSTER_SUBJECT
from eventsrc.runner import ProjectionRunner
from eventsrc.store import JetStreamEventStore
from eventsrc.store.lease import KvLease, LeaseHolder, encode_holder
from eventsrc.writer import expected_seqs, utc_now

log = logging.getLogger(__name__)

ELECT_TRIES = 5
HAND_BACK_S = 30.0
"""How long a term's end waits for its service to stop before the lease is released."""


@dataclass(frozen=True, slots=True)
class LeaseTiming:
    """The schedule derived from the lease time (pure: times in, times out)."""

    lease_s: float

    @property
    def renew_every(self) -> float:
        """Three renewals per lease: two may fail before it is in danger."""
        return self.lease_s / 3

    @property
    def margin(self) -> float:
        """How long before the earliest possible expiry a holder stops deciding."""
        return self.lease_s / 6

    @property
    def retry_every(self) -> float:
        """How often a standby contests, and a holder retries a failed renewal."""
        return min(1.0, max(0.1, self.lease_s / 6))

    def valid_until(self, sent_at: float) -> float:
        """Until when a holder whose last successful write was sent at ``sent_at`` may
        decide."""
        return sent_at + self.lease_s - self.margin


async def elect(
    store: JetStreamEventStore,
    runner: ProjectionRunner,
    *,
    coordinator_id: str,
    settings: dict[str, Any],
    holds_lease: Callable[[], bool],
) -> int:
    """Append ``LeaderElected`` with the next epoch (and the liveness settings if they
    changed); return the epoch. ``holds_lease`` is asked before every append: a
    coordinator stalled past its lease must not depose the one that holds it now.

    Raises LeaseLostError when the lease is no longer ours, StoreError when
    ``evt.cluster`` keeps moving under us.
    """
    for _ in range(ELECT_TRIES):
        # Catch up first: the epoch and the expectation come from the projection.
        await runner.wait_for(await store.last_seq())
        async with runner.reading() as state:
            epoch = state.epoch + 1
            stamp = Origin(producer=coordinator_id, epoch=epoch).stamp(utc_now())
            elected = LeaderElected(**stamp.envelope(), coordinator_id=coordinator_id)
            expected = expected_seqs(state, (elected,))[elected.aggregate_subject]
        _check_lease(holds_lease, coordinator_id)
        try:
            seq = await store.append(elected, expected_seq=expected)
        except ConcurrencyError:
            continue
        await runner.wait_for(seq)
        await _record_settings(store, runner, coordinator_id, epoch, settings, holds_lease)
        log.info("%s leads from epoch %d", coordinator_id, epoch)
        return epoch
    raise StoreError(f"{CLUSTER_SUBJECT} kept moving while {coordinator_id} was electing; retrying")


async def _record_settings(
    store: JetStreamEventStore,
    runner: ProjectionRunner,
    coordinator_id: str,
    epoch: int,
    settings: dict[str, Any],
    holds_lease: Callable[[], bool],
) -> None:
    """Put the liveness settings in the history, so replays (what-if) know them."""
    async with runner.reading() as state:
        if all(state.settings.get(key) == value for key, value in settings.items()):
            return
        stamp = Origin(producer=coordinator_id, epoch=epoch).stamp(utc_now())
        event = ClusterSettingsChanged(**stamp.envelope(), settings=settings)
        expected = expected_seqs(state, (event,))[event.aggregate_subject]
    _check_lease(holds_lease, coordinator_id)
    await runner.wait_for(await store.append(event, expected_seq=expected))


def _check_lease(holds_lease: Callable[[], bool], coordinator_id: str) -> None:
    if not holds_lease():
        raise LeaseLostError(
            f"{coordinator_id} no longer holds the leader lease; it appends nothing and "
            f"contests again"
        )


async def _wait_at_most(event: asyncio.Event, seconds: float) -> None:
    """Until ``event`` is set or ``seconds`` pass. asyncio.timeout, not wait_for: on 3.11
    wait_for can swallow a cancellation that arrives as the event is set."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(max(0.0, seconds)):
            await event.wait()


class Term:
    """One term as leader: its epoch, and when and why it ended.

    The leadership ends it (the lease is, or may be, lost; a newer epoch was applied;
    this coordinator stops) and fences the writer before anyone awaits ``ended()``:
    ``holds_lease()`` is False from that moment, and writers refuse a state showing a
    newer epoch by themselves.
    """

    __slots__ = ("_done", "_ended", "epoch", "reason")

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch
        self.reason = ""
        self._ended = asyncio.Event()
        self._done = asyncio.Event()

    @property
    def over(self) -> bool:
        """Whether the term has ended."""
        return self._ended.is_set()

    async def ended(self) -> str:
        """Wait until the term ends; returns why."""
        await self._ended.wait()
        return self.reason

    def _end(self, reason: str) -> None:
        if not self._ended.is_set():
            self.reason = reason
            self._ended.set()


class Leadership:
    """Standby until the lease is ours, then lead until it is not; an async context
    manager.

    While it holds the lease it elects the next epoch and hands out a ``Term``
    (``terms()``); it watches the lease (renewals) and the epoch (the runner's state)
    itself and ends the term when either moves on. The lease is released only after
    the consumer of ``terms()`` asked for the next one (it has stopped serving).
    """

    def __init__(
        self,
        lease: KvLease,
        store: JetStreamEventStore,
        runner: ProjectionRunner,
        *,
        coordinator_id: str,
        settings: dict[str, Any],
    ) -> None:
        self._lease = lease
        self._store = store
        self._runner = runner
        self._id = coordinator_id
        self._settings = settings
        self.timing = LeaseTiming(1.0)
        self.leading = False
        self.epoch = 0
        self.holder: LeaseHolder | None = None
        self._revision = 0
        self._valid_until = 0.0
        self._end_term = asyncio.Event()
        self._end_reason = ""
        self._settled = asyncio.Event()
        self._renew_now = asyncio.Event()
        self._terms: asyncio.Queue[Term | None] = asyncio.Queue()
        self._closing = False
        self._holding = False
        self._pause = 0.0
        self._announced_at: float | None = None
        self._loop_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Open the lease bucket and contest once, so a lone coordinator has its term by
        the time this returns; then keep contesting (or holding) in the background."""
        self.timing = LeaseTiming(await self._lease.open())
        won = await self._contest()
        self._loop_task = asyncio.create_task(self._run(first_won=won), name="leadership")
        if won:
            await self._settled.wait()
        elif self.holder is not None:
            log.info(
                "standby: %s leads (epoch %d); taking over if its %g s lease runs out",
                self.holder.coordinator_id,
                self.holder.epoch,
                self.timing.lease_s,
            )

    def holds_lease(self) -> bool:
        """Whether the lease is certainly still ours now (checked before every append, so
        a leader woken from a long pause does not decide on a lapsed lease)."""
        return bool(self._revision) and asyncio.get_running_loop().time() < self._valid_until

    def abdicate(self, reason: str) -> None:
        """End the current term; the lease is released."""
        if not self._end_term.is_set():
            self._end_reason = reason
            self._end_term.set()

    def give_up(self, reason: str) -> None:
        """End the current term because this coordinator cannot serve it; it contests
        again only after a lease time, so another standby tries first."""
        if not self._end_term.is_set():
            self._pause = self.timing.lease_s
        self.abdicate(reason)

    async def terms(self) -> AsyncGenerator[Term, None]:
        """Each term this coordinator wins, as it begins; ends when the leadership
        closes. Asking for the next term says the last one is no longer served."""
        while (term := await self._terms.get()) is not None:
            try:
                yield term
            finally:
                term._done.set()

    async def close(self) -> None:
        """Stop leading (release the lease) or contesting; idempotent."""
        self._closing = True
        self.abdicate("this coordinator stops")
        task, self._loop_task = self._loop_task, None
        if task is not None:
            await asyncio.wait({task}, timeout=30)
            if not task.done():
                log.warning("leadership did not end in time")
                task.cancel()

    async def __aenter__(self) -> Leadership:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _run(self, *, first_won: bool) -> None:
        won = first_won
        try:
            while not self._closing:
                pause = self.timing.retry_every
                if won:
                    try:
                        await self._term()
                    # The loop must survive: a standby that stops contesting is lost.
                    except Exception:
                        log.exception("leadership term failed; contesting again")
                    # A term ended on purpose (deposed) contests again at once, one that
                    # could not be served after a lease time.
                    if self._end_term.is_set():
                        pause = 0.0
                    if not self._closing:
                        self._end_term.clear()
                pause, self._pause = self._pause or pause, 0.0
                await _wait_at_most(self._end_term, pause)
                if self._closing:
                    return
                won = await self._contest()
        finally:
            self._terms.put_nowait(None)

    async def _contest(self) -> bool:
        """One try at the lease; True when it is ours now."""
        loop = asyncio.get_running_loop()
        sent = loop.time()
        try:
            async with asyncio.timeout(self.timing.renew_every):
                revision = await self._lease.acquire(encode_holder(self._id, 0))
                if revision is None:
                    await self._note_holder()
                    await self._announce(sent)
                    return False
        except (StoreError, TimeoutError) as err:
            log.debug("contesting the leader lease: %s", err or "timeout")
            return False
        except Exception:
            log.exception("contesting the leader lease failed unexpectedly")
            return False
        self._revision = revision
        self._valid_until = self.timing.valid_until(sent)
        self._end_term.clear()
        self._settled.clear()
        if self._closing:
            await self._release()
            return False
        return True

    async def _announce(self, now: float) -> None:
        """Renew this standby's word (``KvLease.standbys``) every ``renew_every``; it ages
        out a lease time after the last, so a standby that is gone drops out of the list."""
        if self._announced_at is None or now - self._announced_at >= self.timing.renew_every:
            await self._lease.announce_standby(self._id)
            self._announced_at = now

    async def standbys(self) -> tuple[str, ...]:
        """The other coordinators standing by now (for ``eventsrc status``); raises
        StoreError when the bucket cannot be read."""
        return tuple(one for one in await self._lease.standbys() if one != self._id)

    async def _note_holder(self) -> None:
        holder = await self._lease.holder()
        if holder is not None and holder.coordinator_id == self._id:
            # Our own create whose reply was lost (e.g. across a reconnect): we cannot
            # tell when it was stored, so give it up rather than lead on a guess.
            await self._lease.release(holder.revision)
            return
        if holder is not None and (
            self.holder is None or holder.coordinator_id != self.holder.coordinator_id
        ):
            log.debug("the leader lease is held by %s", holder.coordinator_id)
        self.holder = holder

    async def _term(self) -> None:
        """Hold the lease while leading; end the term when it is (or may be) lost, or
        when the state shows a newer epoch."""
        self.epoch = 0
        self._renew_now.clear()
        self._holding = True
        hold = asyncio.create_task(self._hold(), name="leader-lease")
        lead = asyncio.create_task(self._elect(), name="take-the-lead")
        ended = asyncio.create_task(self._end_term.wait(), name="term-end")
        tasks = {hold, lead, ended}
        term: Term | None = None
        reason, lost = "this coordinator stops", False
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if lead.done() and not (hold.done() or ended.done()):
                if lead.exception() is None:
                    self.epoch = lead.result()
                    self.leading = True
                    self.holder = LeaseHolder(self._id, self.epoch, self._revision)
                    term = Term(self.epoch)
                    self._terms.put_nowait(term)
                    tasks.add(asyncio.create_task(self._watch_epoch(), name="epoch-watch"))
                    self._settled.set()
                    self._renew_now.set()  # so the lease shows the epoch
                    await asyncio.wait({hold, ended}, return_when=asyncio.FIRST_COMPLETED)
                else:
                    reason = f"could not take the lead: {lead.exception()}"
                    self._pause = self.timing.lease_s  # let another standby try first
            if hold.done():
                reason, lost = hold.result(), True
            elif ended.done():
                reason = self._end_reason
        finally:
            # Stop deciding before anything else is awaited: appends check the deadline.
            self.leading = False
            self._holding = False
            self._valid_until = 0.0
            if not self._closing:
                # Said when it stops deciding: stopping the service may take seconds more
                # (a cut-off network makes it wait for its timeouts).
                log.error("%s stopped leading: %s; back to standby", self._id, reason)
            for task in tasks:
                task.cancel()
            if term is not None:
                term._end(reason)
                # The lease goes only once the term is no longer served.
                await _wait_at_most(term._done, HAND_BACK_S)
            await asyncio.wait(tasks, timeout=10)
            if not lost:
                await self._release()
            self._revision = 0
            self._settled.set()

    async def _elect(self) -> int:
        return await elect(
            self._store,
            self._runner,
            coordinator_id=self._id,
            settings=self._settings,
            holds_lease=self.holds_lease,
        )

    async def _watch_epoch(self) -> None:
        """End the term once the state shows a newer leader's election."""
        epoch = self.epoch
        await self._runner.until(lambda state: state.epoch > epoch)
        self.abdicate(f"deposed by leader epoch {self._runner.state.epoch}")

    async def _hold(self) -> str:
        """Renew until the lease is (or may be) lost or the term ends; return why.

        Checks ``_holding`` besides cancellation: on 3.11 a cancel that meets a NATS
        reply can be swallowed inside nats-py (its ``wait_for``).
        """
        loop = asyncio.get_running_loop()
        timing = self.timing
        next_try = loop.time() + timing.renew_every
        while self._holding:
            await _wait_at_most(self._renew_now, next_try - loop.time())
            self._renew_now.clear()
            sent = loop.time()
            budget = min(self._valid_until - sent, timing.renew_every)
            if budget <= 0:
                return f"the lease was not renewed within {timing.lease_s - timing.margin:g} s"
            try:
                async with asyncio.timeout(budget):
                    self._revision = await self._lease.renew(
                        self._revision, encode_holder(self._id, self.epoch)
                    )
            except LeaseLostError as err:
                return str(err)
            except (StoreError, TimeoutError) as err:
                log.warning("renewing the leader lease failed (%s); retrying", err or "timeout")
                # Never sleep past the deadline: stepping down then must not wait.
                next_try = min(loop.time() + timing.retry_every, self._valid_until)
                continue
            if self._holding:
                self._valid_until = timing.valid_until(sent)
            next_try = sent + timing.renew_every
        return "the term ended"

    async def _release(self) -> None:
        revision, self._revision = self._revision, 0
        if not revision:
            return
        try:
            async with asyncio.timeout(2.0):
                await self._lease.release(revision)
        except (StoreError, TimeoutError) as err:
            log.warning("could not release the leader lease (%s); it expires by itself", err)

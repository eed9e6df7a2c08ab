"""The runner: keeps a ClusterState current from the streams, behind an aiorwlock.

Start-up is newest sound snapshot + replay of the tail. Then it follows the events
stream (and, for liveness, the heartbeat stream from the newest heartbeat per node).
Records are applied in batches under the writer lock — one acquisition per batch, never
across a NATS await — so readers never see half an event and rebuilds stay fast.

The locking rule, the one for every reader of the state:

- Code that awaits while it reads (an API answer built over several steps, a snapshot
  copy, a registry query) reads inside ``reading()``: the state cannot change there.
- Code that reads and decides with no await in between (the writer's decide, the
  control loop's reconcile) reads ``state`` directly: a batch is applied without
  yielding to the event loop, so no coroutine can see half of one, and taking the lock
  would only make decisions wait behind readers.
- Nothing holds the writer lock across an await; only this runner takes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import heapq
import itertools
import logging
from collections.abc import Callable, Iterator
from typing import Final

import aiorwlock

from eventsrc.errors import NotCaughtUpError, UndecodableEventError
from eventsrc.events import Heartbeat
from eventsrc.ports import HEARTBEATS_STREAM, EventStore, Record, SnapshotPort, StoredEvent
from eventsrc.projections.apply import (
    apply_heartbeat,
    apply_record,
    apply_undecodable_heartbeat,
)
from eventsrc.projections.snapshot import encode_snapshot, restore_snapshot, snapshot_document
from eventsrc.projections.state import ClusterState, Retention

log = logging.getLogger(__name__)

DEFAULT_BATCH: Final = 1000
CATCH_UP_GC_THRESHOLD: Final = (50_000, 20, 100)
"""Collector thresholds while catching up with ``tune_gc``: a rebuild allocates millions
of long-lived objects, and the default thresholds walk them over and over (a sixth of
a rebuild's time here)."""


@contextlib.contextmanager
def _relaxed_gc() -> Iterator[None]:
    """Fewer collections while the block runs; afterwards one full collection (cyclic
    garbage of the catch-up must not be frozen), then the survivors (the state) are
    frozen out of future collections, which then only walk what is new."""
    previous = gc.get_threshold()
    gc.set_threshold(*CATCH_UP_GC_THRESHOLD)
    try:
        yield
    finally:
        gc.set_threshold(*previous)
        gc.collect()
        gc.freeze()


class ProjectionRunner:
    """Owns one ClusterState and keeps it current; an async context manager."""

    def __init__(
        self,
        store: EventStore,
        *,
        snapshots: SnapshotPort | None = None,
        retention: Retention | None = None,
        follow_heartbeats: bool = True,
        batch_size: int = DEFAULT_BATCH,
        on_applied: Callable[[ClusterState], None] | None = None,
        tune_gc: bool = False,
    ) -> None:
        """``tune_gc``: relax Python's collector while catching up (a process-wide
        setting, so for programs that own their process: the coordinator, replay_tools)."""
        self._store = store
        self._tune_gc = tune_gc
        self._snapshots = snapshots
        self._retention = retention or Retention()
        self._state = ClusterState(retention=self._retention)
        self._follow_heartbeats = follow_heartbeats
        self._batch_size = batch_size
        self._on_applied = on_applied
        # fast: no extra yield after each acquire (readers and the writer never nest).
        self._lock = aiorwlock.RWLock(fast=True)
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._watchers: list[tuple[Callable[[ClusterState], bool], asyncio.Future[None]]] = []
        self._tiebreak = itertools.count()
        self._tasks: list[asyncio.Task[None]] = []
        self._failure: BaseException | None = None
        self.restored_from_snapshot = False
        self.snapshot_refused = ""

    @property
    def state(self) -> ClusterState:
        """The live state. Read it inside ``reading()`` if you await while reading; read
        it directly only to decide with no await in between (the rule above)."""
        return self._state

    def reading(self) -> _Reading:
        """``async with runner.reading() as state``: hold the reader lock; the state does
        not change inside the block."""
        return _Reading(self)

    async def start(self, *, timeout: float = 120.0) -> None:
        """Restore the newest sound snapshot, replay the tail, then keep following.

        ``timeout`` bounds a catch-up that stalls (no event applied for that long), not
        a long one: a big history without a snapshot takes what it takes."""
        with _relaxed_gc() if self._tune_gc else contextlib.nullcontext():
            await self._catch_up(timeout)

    async def _catch_up(self, timeout: float) -> None:
        if self._snapshots is not None:
            raw = await self._snapshots.load()
            if raw is not None:
                restored, why = restore_snapshot(raw, retention=self._retention)
                if restored is None:
                    self.snapshot_refused = why
                    log.warning("ignoring snapshot: %s; replaying the whole stream", why)
                else:
                    self._state = restored
                    self.restored_from_snapshot = True
        target = await self._store.last_seq()
        self._tasks.append(asyncio.create_task(self._follow_events(), name="follow-events"))
        if self._follow_heartbeats:
            self._tasks.append(
                asyncio.create_task(self._follow_heartbeats_stream(), name="follow-heartbeats")
            )
        while True:
            position = self._state.last_seq
            try:
                await self.wait_for(target, timeout=timeout)
                return
            except NotCaughtUpError:
                if self._failure is not None or self._state.last_seq == position:
                    raise

    async def wait_for(self, seq: int, *, timeout: float = 10.0) -> None:
        """Return once the state has applied stream sequence ``seq`` (read your write)."""
        if self._state.last_seq >= seq:
            return
        if self._failure is not None:
            raise NotCaughtUpError(f"the projection stopped: {self._failure}") from self._failure
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (seq, next(self._tiebreak), future))
        try:
            # asyncio.timeout on the future itself (it is this caller's alone): woken in
            # one step of the loop, where wait_for over a shield takes three.
            async with asyncio.timeout(timeout):
                await future
        except TimeoutError as err:
            raise NotCaughtUpError(
                f"the projection did not reach event {seq} within {timeout:g} s (it is at "
                f"{self._state.last_seq}); check the NATS connection"
            ) from err

    async def until(self, condition: Callable[[ClusterState], bool]) -> None:
        """Return once ``condition(state)`` holds: looked at now and after every applied
        batch of events (e.g. the leadership watching for a newer epoch). The condition
        is called on the follower's path, so it must be cheap and must not raise."""
        if condition(self._state):
            return
        watcher = (condition, asyncio.get_running_loop().create_future())
        self._watchers.append(watcher)
        try:
            await watcher[1]
        finally:
            self._watchers.remove(watcher)

    async def snapshot(self) -> int:
        """Write a snapshot of the current state; returns the sequence it covers."""
        if self._snapshots is None:
            return 0
        async with self._lock.reader:
            document = snapshot_document(self._state)
        await self._snapshots.save(encode_snapshot(document))
        return int(document["seq"])

    async def close(self) -> None:
        """Stop following; idempotent."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        if tasks:
            # asyncio.wait, not `await task`: it waits through done-callbacks, which
            # behaves the same from whatever task (or test finalizer) calls close().
            await asyncio.wait(tasks, timeout=10)

    async def __aenter__(self) -> ProjectionRunner:
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _follow_events(self) -> None:
        batch: list[Record] = []
        try:
            async for record in self._store.subscribe(from_seq=self._state.last_seq + 1):
                batch.append(record)
                caught_up = not isinstance(record, StoredEvent) or record.pending == 0
                if caught_up or len(batch) >= self._batch_size:
                    async with self._lock.writer:
                        for item in batch:
                            apply_record(self._state, item)
                        if self._on_applied is not None:
                            self._on_applied(self._state)
                    batch.clear()
                    self._release_waiters()
                    if self._watchers:
                        self._release_watchers()
        except asyncio.CancelledError:
            raise
        except BaseException as err:
            self._failure = err
            log.exception("the events follower stopped")
            raise

    async def _follow_heartbeats_stream(self) -> None:
        batch: list[Record] = []
        async for record in self._store.subscribe(stream=HEARTBEATS_STREAM, last_per_subject=True):
            batch.append(record)
            if isinstance(record, UndecodableEventError):
                log.warning("%s", record)
            elif record.pending and len(batch) < self._batch_size:
                continue
            async with self._lock.writer:
                for item in batch:
                    if isinstance(item, UndecodableEventError):
                        apply_undecodable_heartbeat(self._state, item)
                    elif isinstance(item.event, Heartbeat):
                        apply_heartbeat(self._state, item.event, seq=item.seq, time=item.time)
            batch.clear()

    def _release_waiters(self) -> None:
        position = self._state.last_seq
        while self._waiters and self._waiters[0][0] <= position:
            future = heapq.heappop(self._waiters)[2]
            if not future.done():
                future.set_result(None)

    def _release_watchers(self) -> None:
        # Checked here rather than by waking every watcher after each batch: a leader
        # watches its epoch all the time, and most batches change nothing it watches.
        for condition, future in self._watchers:
            if not future.done() and condition(self._state):
                future.set_result(None)


class _Reading:
    """The reader lock handing out the state: a plain object, not a generator-based
    context manager, because every request and decision reads (half the cost)."""

    __slots__ = ("_runner",)

    def __init__(self, runner: ProjectionRunner) -> None:
        self._runner = runner

    async def __aenter__(self) -> ClusterState:
        await self._runner._lock.reader.acquire()
        return self._runner._state

    async def __aexit__(self, *exc_info: object) -> None:
        self._runner._lock.reader.release()

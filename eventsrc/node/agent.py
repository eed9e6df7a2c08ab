"""The worker: joins, advertises its skills, heartbeats, and runs what it is assigned.

Work arrives on the durable pull consumer ``node-<id>`` (filters
``evt.task.*.to.<id>`` and ``evt.cluster``, whose leader elections feed the node's
fence) that the coordinator creates on ``node_hello``, as deliveries the store has
already decoded (``eventsrc.store.assignments``). For each assignment the
node runs the executor (appending ``TaskStarted`` once it has run for
``STARTED_AFTER_S``, if it can be stored), appends the result and only then acks, so a
crash before the result means a redelivery, never a loss. A redelivered assignment
whose attempt already ended is not run again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import eventsrc
from eventsrc.api_client import ApiClient
from eventsrc.commands import api
from eventsrc.errors import (
    ConcurrencyError,
    EventsrcError,
    NodeIdInUseError,
    ServerUnavailableError,
    UndecodableEventError,
)
from eventsrc.events import (
    EVENT_SCHEMA,
    Event,
    LeaderElected,
    NodeCapabilitiesReported,
    NodeExpired,
    NodeLeft,
    SkillInstanceRegistered,
    SkillInstanceUnregistered,
    TaskAssigned,
    TaskCancelRequested,
    TaskStarted,
)
from eventsrc.events.subjects import node_subject
from eventsrc.history import fold_task
from eventsrc.node.attempts import (
    DEFAULT_MAX_RESULT,
    ResultWriter,
    TaskHandler,
    run_assignment,
)
from eventsrc.node.discovery import DiscoveredSkill
from eventsrc.node.executors import Executor
from eventsrc.node.fencing import LeaderFence
from eventsrc.node.host import (
    envelope,
    heartbeat_event,
    joined_event,
    prime_cpu_meter,
    process_is_gone,
)
from eventsrc.node.output import OutputSink, current_output
from eventsrc.node.pyskills import CancelSignal
from eventsrc.node.setup import NodeSkills
from eventsrc.ports import StoredEvent
from eventsrc.store import Connection, JetStreamEventStore
from eventsrc.store.assignments import ASSIGNMENT_ACK_WAIT_S, AssignmentFeed, Delivery

log = logging.getLogger(__name__)

STARTED_AFTER_S = 0.1
"""A task still running after this long gets a TaskStarted; quicker ones do not."""
KEEP_ALIVE_S = ASSIGNMENT_ACK_WAIT_S / 3
"""How often running tasks' assignments are marked in progress, well within the ack
wait."""
DONE_MEMORY = 10_000


def _now() -> datetime:
    return datetime.now(UTC)


JOIN_ATTEMPTS = 5
"""Hellos before a node gives up on an id that other processes keep joining under."""


class NodeAgent:
    """One node process's membership and work; an async context manager."""

    def __init__(
        self,
        nc: Connection,
        store: JetStreamEventStore,
        *,
        node_id: str,
        skills: dict[str, DiscoveredSkill],
        executors: dict[str, Executor],
        unavailable: tuple[Any, ...] = (),
        capacity: int = 4,
        heartbeat_interval: float = 5.0,
        labels: dict[str, str] | None = None,
        drain_timeout: float = 30.0,
        rescan: Callable[[], NodeSkills] | None = None,
        rescan_interval: float = 60.0,
        max_result_bytes: int = DEFAULT_MAX_RESULT,
    ) -> None:
        self.node_id = node_id
        self.incarnation = uuid.uuid4().hex[:12]
        self._nc = nc
        self._store = store
        self._api = ApiClient(nc)
        self._skills = skills
        self._executors = executors
        self._unavailable = unavailable
        self.capacity = capacity
        self._heartbeat_interval = heartbeat_interval
        self._labels = labels or {}
        self._drain_timeout = drain_timeout
        self._rescan = rescan
        self._rescan_interval = rescan_interval
        self._rescan_wanted = asyncio.Event()
        self._results = ResultWriter(
            self._append, envelope=self._envelope, node_id=node_id, max_bytes=max_result_bytes
        )
        self.handlers: dict[str, TaskHandler] = {}
        self._running: dict[tuple[str, int], asyncio.Task[None]] = {}
        self._cancels: dict[tuple[str, int], CancelSignal] = {}
        self._done: OrderedDict[tuple[str, int], None] = OrderedDict()
        self._slots = asyncio.Semaphore(capacity)
        self._executing = 0
        self._loops: list[asyncio.Task[None]] = []
        self._accepting = True
        self._feed: AssignmentFeed | None = None
        self._fence = LeaderFence(store, node_id=node_id)
        self._unacked: dict[tuple[str, int], Delivery] = {}
        self._joined = False
        self._elections_in_band = False
        self.producer = f"node:{node_id}"

    @property
    def running(self) -> int:
        """Tasks executing now (assignments waiting for a slot not counted)."""
        return self._executing

    def _envelope(self) -> dict[str, Any]:
        return envelope(self.producer)

    async def start(self) -> None:
        """Introduce ourselves, join, advertise, then heartbeat and take work."""
        reply, joined_seq = await self._hello_and_join()
        self._joined = True
        # Knows the leader epoch before anything runs; learns of new elections on the
        # work consumer when it carries them (a coordinator that says so made it).
        self._elections_in_band = bool(reply.get("elections"))
        await self._fence.start(in_band=self._elections_in_band)
        # Fetching is not gated on free slots: a cancel request arrives on the same
        # consumer and must be seen while every slot is busy. The coordinator never
        # assigns more than the capacity, so waiting assignments stay few.
        self._feed = AssignmentFeed(
            self._nc,
            consumer=str(reply["consumer"]),
            on_delivery=self.deliver,
            batch=max(2 * self.capacity, 16),
        )
        await self._feed.start()
        self._loops.append(asyncio.create_task(self._keep_alive_loop(), name="keep-alive"))
        self._loops.append(asyncio.create_task(self._heartbeat_loop(), name="heartbeats"))
        if self._rescan is not None:
            self._loops.append(asyncio.create_task(self._rescan_loop(), name="rescan"))
        self._loops.append(
            asyncio.create_task(self._watch_membership(joined_seq + 1), name="membership")
        )
        log.info("node %s joined with %s", self.node_id, ", ".join(sorted(self._skills)))

    async def _hello_and_join(self) -> tuple[Any, int]:
        """Say hello and join, the join guarded by the sequence of our node's subject that
        the hello was decided on: a process that joined under our id in between makes it
        fail, and the next hello sees that process. The hello's reply and the join's
        sequence."""
        for attempt in range(1, JOIN_ATTEMPTS + 1):
            reply = await self._hello()  # waits for a coordinator to answer
            if attempt == 1 and (own := [s.metadata for s in self._skills.values()]):
                await self._api.call("register_skills", {"skills": [m.model_dump() for m in own]})
            try:
                return reply, await self._join(expected_seq=reply.get("node_seq"))
            except ConcurrencyError:
                log.info(
                    "node id %s was written meanwhile (try %d); asking again", self.node_id, attempt
                )
        raise NodeIdInUseError(
            f"node id {self.node_id} keeps being taken by another process while this one "
            f"joins; give this node its own id with --node-id NAME"
        )

    async def _hello(self) -> Any:
        """Introduce ourselves; refused (NodeIdInUseError) while a live process holds our
        id, except a predecessor on this host whose process is gone, which we replace."""
        hello = api.NodeHello(
            node_id=self.node_id,
            incarnation=self.incarnation,
            event_schema=EVENT_SCHEMA,
            eventsrc_version=eventsrc.__version__,
            answers_in_use=True,
        )
        reply = await self._call_until_answered("node_hello", hello)
        holder = reply.get("in_use")
        if holder is None:
            return reply
        gone = process_is_gone(
            host_id=str(holder.get("host_id") or ""),
            pid=int(holder.get("pid") or 0),
            started=float(holder.get("process_started") or 0.0),
        )
        if not gone:
            raise NodeIdInUseError(str(reply.get("message")))
        log.warning(
            "node id %s was held by pid %s on this host, which is gone; replacing it",
            self.node_id,
            holder.get("pid"),
        )
        replacing = hello.model_copy(update={"replaces": str(holder.get("incarnation", ""))})
        reply = await self._call_until_answered("node_hello", replacing)
        if "in_use" in reply:
            raise NodeIdInUseError(str(reply.get("message")))
        return reply

    async def _join(self, *, expected_seq: int | None = None) -> int:
        """Append NodeJoined (guarded by ``expected_seq`` of our node's subject when given),
        our instances and what we cannot run; the join's sequence."""
        joined_seq = await self._store.append(
            joined_event(
                self.producer,
                node_id=self.node_id,
                incarnation=self.incarnation,
                capacity=self.capacity,
                labels=self._labels,
            ),
            expected_seq=expected_seq,
        )
        for name in sorted(self._skills):
            await self._append(
                SkillInstanceRegistered(
                    **self._envelope(),
                    node_id=self.node_id,
                    skill=name,
                    incarnation=self.incarnation,
                )
            )
        if self._unavailable:
            await self._append(
                NodeCapabilitiesReported(
                    **self._envelope(), node_id=self.node_id, unavailable=self._unavailable
                )
            )
        return joined_seq

    async def _watch_membership(self, from_seq: int) -> None:
        """Rejoin as a new incarnation when the coordinator expired us (e.g. after an
        outage longer than stale_after): an expired member would never get work again."""
        subject = node_subject(self.node_id)
        async for record in self._store.subscribe(subjects=subject, from_seq=from_seq):
            if not isinstance(record, StoredEvent):
                continue
            event = record.event
            if isinstance(event, NodeExpired) and event.incarnation == self.incarnation:
                self.incarnation = uuid.uuid4().hex[:12]
                log.warning("the coordinator expired this node; rejoining as %s", self.incarnation)
                try:
                    await self._join()
                except EventsrcError as err:
                    log.warning("rejoin failed: %s", err)

    async def _call_until_answered(self, endpoint: str, request: Any) -> Any:
        delay = 0.2
        while True:
            try:
                return await self._api.call(endpoint, request)
            except ServerUnavailableError as err:
                log.warning("%s; retrying in %.1f s", err, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _append(self, event: Event) -> int:
        return await self._store.append(event)

    async def drain(self) -> None:
        """Stop taking work, let running tasks finish (up to the drain timeout), leave."""
        self._accepting = False
        running = list(self._running.values())
        if running:
            log.info("draining: waiting for %d running task(s)", len(running))
            await asyncio.wait(running, timeout=self._drain_timeout or None)
        await self.close(leave=True)

    async def close(self, *, leave: bool = False) -> None:
        """Stop loops and tasks; with ``leave`` append NodeLeft (tasks left are requeued)."""
        self._accepting = False
        if self._feed is not None:
            await self._feed.stop()
        await self._fence.close()
        loops, self._loops = self._loops, []
        for task in [*loops, *self._running.values()]:
            task.cancel()
        pending = [*loops, *self._running.values()]
        if pending:
            await asyncio.wait(pending, timeout=10)
        if leave and self._joined:
            self._joined = False
            with contextlib.suppress(EventsrcError):
                await self._append(
                    NodeLeft(
                        **self._envelope(),
                        node_id=self.node_id,
                        incarnation=self.incarnation,
                        reason="stopped",
                    )
                )

    async def __aenter__(self) -> NodeAgent:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close(leave=True)

    async def _heartbeat_loop(self) -> None:
        prime_cpu_meter()
        while True:
            beat = heartbeat_event(
                self.producer,
                node_id=self.node_id,
                incarnation=self.incarnation,
                running=self.running,
                capacity=self.capacity,
                skills=tuple(sorted(self._skills)),
            )
            try:
                await self._append(beat)
            except EventsrcError as err:
                log.warning("heartbeat not stored: %s", err)
            await asyncio.sleep(self._heartbeat_interval)

    def rescan_now(self) -> None:
        """Rescan the skills at once (SIGHUP), whatever the interval."""
        self._rescan_wanted.set()

    async def _rescan_loop(self) -> None:
        assert self._rescan is not None
        while True:
            # An interval of 0 turns the timer off; a rescan_now() still wakes the loop.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._rescan_wanted.wait(), self._rescan_interval or None)
            self._rescan_wanted.clear()
            try:
                await self.apply_rescan(await asyncio.to_thread(self._rescan))
            except EventsrcError as err:
                log.warning("rescan: %s", err)

    async def apply_rescan(self, found: NodeSkills) -> None:
        """Register skills that appeared or became eligible, unregister those gone."""
        added = sorted(set(found.skills) - set(self._skills))
        gone = sorted(set(self._skills) - set(found.skills))
        if added:
            metadata = [found.skills[name].metadata.model_dump() for name in added]
            await self._api.call("register_skills", {"skills": metadata})
        self._skills = dict(found.skills)
        self._executors = dict(found.executors)
        for name in added:
            await self._append(
                SkillInstanceRegistered(
                    **self._envelope(),
                    node_id=self.node_id,
                    skill=name,
                    incarnation=self.incarnation,
                )
            )
        for name in gone:
            await self._append(
                SkillInstanceUnregistered(
                    **self._envelope(),
                    node_id=self.node_id,
                    skill=name,
                    reason="no longer found or no longer eligible",
                )
            )
        if found.unavailable != self._unavailable:
            self._unavailable = found.unavailable
            await self._append(
                NodeCapabilitiesReported(
                    **self._envelope(), node_id=self.node_id, unavailable=found.unavailable
                )
            )
        if added or gone:
            log.info("rescan: +%s -%s", ",".join(added) or "none", ",".join(gone) or "none")

    async def deliver(self, delivery: Delivery) -> None:
        """Handle one delivery of this node's work consumer, as the feed does for each:
        an assignment starts running (acked once its result is stored), a cancel request
        stops its attempt, a leader election is noted by the fence, anything else is
        acked and dropped. An event a deposed leader
        stored is acked and not acted on (``LeaderFence``). An attempt already run
        here, running, or over according to the stream is acked and not run again;
        while draining an assignment is left unacked."""
        event = delivery.event
        if isinstance(event, UndecodableEventError):
            log.warning("%s", event)
            await delivery.ack()
            return
        if self._elections_in_band:
            self._fence.observe(
                event,
                seq=delivery.seq,
                consumer_seq=delivery.consumer_seq,
                delivered=delivery.delivered,
            )
            if isinstance(event, LeaderElected):
                await delivery.ack()  # noted: nothing to run
                return
        try:
            admitted = await self._fence.admits(event, delivery.seq)
        except EventsrcError as err:
            log.warning("%s at seq %d: %s; left for redelivery", event.type, delivery.seq, err)
            return
        if not admitted:
            await delivery.ack()
            return
        if isinstance(event, TaskCancelRequested):
            cancel = self._cancels.get((event.task_id, event.attempt))
            if cancel is not None:
                cancel.set()
            await delivery.ack()
            return
        if not isinstance(event, TaskAssigned):
            await delivery.ack()
            return
        if not self._accepting:
            return  # draining: unacked, so the coordinator requeues it once we left
        key = (event.task_id, event.attempt)
        if key in self._done or key in self._running or not await self._still_live(delivery, event):
            await delivery.ack()
            return
        self._cancels[key] = CancelSignal()
        self._running[key] = asyncio.create_task(self._run(delivery, event), name=f"task-{key}")

    async def _still_live(self, delivery: Delivery, event: TaskAssigned) -> bool:
        """On a redelivery or a late delivery (after an outage), check the stream: has
        this attempt ended or moved on? Fresh first deliveries skip the lookup."""
        if delivery.delivered <= 1 and event.run_deadline > _now():
            return True
        task = await fold_task(self._store, event.task_id)
        return (
            task is not None
            and not task.terminal
            and task.attempt == event.attempt
            and task.node_id == self.node_id
        )

    async def _run(self, delivery: Delivery, event: TaskAssigned) -> None:
        key = (event.task_id, event.attempt)
        self._unacked[key] = delivery
        try:
            async with self._slots:
                await self._attempt(delivery, event, key)
        except asyncio.CancelledError:
            raise  # shutting down: no ack, so the assignment is redelivered or requeued
        except EventsrcError as err:
            log.warning("task %s attempt %d: result not stored: %s", *key, err)
        finally:
            self._unacked.pop(key, None)
            self._running.pop(key, None)
            self._cancels.pop(key, None)

    async def _attempt(self, delivery: Delivery, event: TaskAssigned, key: tuple[str, int]) -> None:
        if self._cancels[key].is_set():
            await delivery.ack()  # cancelled before it started: the coordinator already ended it
            return
        self._executing += 1
        started = time.perf_counter()
        # A task still running after STARTED_AFTER_S gets a TaskStarted; a quick one goes
        # straight to its result (Temporal, likewise, stores an activity's start with its
        # end): one event and one round trip fewer per task.
        recording: list[asyncio.Future[None]] = []
        timer = asyncio.get_running_loop().call_later(
            STARTED_AFTER_S, lambda: recording.append(asyncio.ensure_future(self._started(event)))
        )
        output = OutputSink(
            self._store.append,
            envelope=self._envelope,
            task_id=event.task_id,
            node_id=self.node_id,
            attempt=event.attempt,
        )
        output.start()
        token = current_output.set(output)
        try:
            try:
                outcome = await run_assignment(
                    event, self.handlers, self._executors, self.node_id, self._cancels[key]
                )
            finally:
                current_output.reset(token)
                await output.close()  # its last lines go out before the result
            timer.cancel()
            if recording:
                await recording[0]  # tried before the result; never raises
            elapsed = (time.perf_counter() - started) * 1000
            await self._results.report(event, outcome, elapsed)
            # Stored: never run this attempt again, even if the ack is lost (a server
            # restart can also redeliver what was acked just before it).
            self._remember_done(key)
            try:
                await delivery.ack()
            except ServerUnavailableError as err:
                log.info("task %s attempt %d: ack not sent (%s); stored anyway", *key, err)
        finally:
            self._executing -= 1
            timer.cancel()

    async def _started(self, event: TaskAssigned) -> None:
        """Store a TaskStarted once; if that fails (a full store, a leader election) the
        task runs on and its result is stored without it, as a quick task's is: losing
        the result over its TaskStarted would run the task again."""
        try:
            await self._append(
                TaskStarted(
                    **self._envelope(),
                    task_id=event.task_id,
                    node_id=self.node_id,
                    attempt=event.attempt,
                )
            )
        except EventsrcError as err:
            log.warning(
                "task %s attempt %d: TaskStarted not stored (%s); its result will be",
                event.task_id,
                event.attempt,
                err,
            )

    def _remember_done(self, key: tuple[str, int]) -> None:
        # Bounded: older attempts are caught by the stream check on redelivery anyway.
        self._done[key] = None
        if len(self._done) > DONE_MEMORY:
            self._done.popitem(last=False)

    async def _keep_alive_loop(self) -> None:
        # Long tasks: tell JetStream we are still on them, well within the ack wait (one
        # loop for all, not a timer per task).
        while True:
            await asyncio.sleep(KEEP_ALIVE_S)
            for delivery in list(self._unacked.values()):
                with contextlib.suppress(ServerUnavailableError):
                    await delivery.in_progress()

"""The leading coordinator: the command API, the control loop, the stale sweep.

One instance per leader term (``leadership`` elects and decides when it ends); it
decides with its term's epoch and stops deciding at once when closed. Its writer needs
no word from anyone to stop: it refuses once the lease may have lapsed
(``holds_lease``) or once the state shows a newer epoch.

- API: a NATS micro service (``$SRV.PING/INFO/STATS`` work with standard tooling);
  handlers validate, run a pure decide function, append, and reply after the local
  projection applied the result.
- Control loop: after every applied batch (and on a short tick, for deadlines) it runs
  ``reconcile`` and appends its decisions, each guarded by its task's last sequence.
- Sweep: every ``sweep_interval`` nodes silent for ``stale_after`` expire by event.
- Schedules: a short tick fires their due occurrences (``coordinator.schedules``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel

import eventsrc
from eventsrc.commands import api
from eventsrc.commands.base import Command, Origin
from eventsrc.commands.limits import (
    RemoveLimit,
    SetLimit,
    decide_remove_limit,
    decide_set_limit,
    list_limits,
)
from eventsrc.commands.registry import (
    ExpireStale,
    RegisterInstance,
    RegisterSkill,
    UnregisterInstance,
    decide_expire_stale,
    decide_register_instance,
    decide_register_skill,
    decide_unregister_instance,
    in_use_message,
    live_holder,
)
from eventsrc.commands.schedules import AddSchedule, ScheduleCommand, ShowSchedule
from eventsrc.commands.tasks import (
    CancelTask,
    DrainNode,
    Limits,
    SubmitTask,
    decide_drain,
)
from eventsrc.commands.views import (
    list_nodes,
    list_skill_infos,
    list_tasks,
    node_info,
    status_info,
)
from eventsrc.coordinator.endpoints import Handler, endpoint
from eventsrc.coordinator.room import StoreRoom
from eventsrc.coordinator.schedules import ScheduleDesk
from eventsrc.coordinator.tasking import TaskDesk
from eventsrc.errors import DomainError, EventsrcError, StoreError
from eventsrc.events import EVENT_SCHEMA
from eventsrc.events.subjects import node_subject
from eventsrc.ports import EVENTS_STREAM, HEARTBEATS_STREAM, OUTPUT_STREAM
from eventsrc.projections.state import ClusterState
from eventsrc.runner import ProjectionRunner
from eventsrc.store import Connection, JetStreamEventStore
from eventsrc.store.assignments import (
    assignment_consumer,
    assignment_consumer_name,
    carries_elections,
)
from eventsrc.store.lease import LEADER_BUCKET_STREAM
from eventsrc.store.streams import ensure_consumer, stream_leaders
from eventsrc.store.transport import MicroService
from eventsrc.writer import EventWriter

log = logging.getLogger(__name__)

TICK_S = 0.5
MAX_CONCURRENT_REQUESTS = 256
MAX_WAITING_REQUESTS = 10_000
SNAPSHOT_EVERY_S = 60.0


T = TypeVar("T")
STATUS_ASK_S = 1.0
"""How long status waits for the servers' part of its answer (the rest is local)."""


async def _unless_unavailable(asking: Awaitable[T] | None) -> T | None:
    """The answer, or None (not known) when the servers cannot give it now: status must
    answer while a stream elects a leader, that is when it is read most."""
    if asking is None:
        return None
    try:
        async with asyncio.timeout(STATUS_ASK_S):
            return await asking
    except (StoreError, TimeoutError) as err:
        log.debug("status: %s", err or "no answer in time")
        return None


class CoordinatorService:
    """Leads the cluster while running; an async context manager."""

    def __init__(
        self,
        nc: Connection,
        store: JetStreamEventStore,
        runner: ProjectionRunner,
        *,
        coordinator_id: str,
        epoch: int,
        stale_after: float,
        sweep_interval: float,
        limits: Limits | None = None,
        holds_lease: Callable[[], bool] | None = None,
        standbys: Callable[[], Awaitable[tuple[str, ...]]] | None = None,
    ) -> None:
        self._store = store
        self._runner = runner
        self._id = coordinator_id
        self._stale_after = stale_after
        self._sweep_interval = sweep_interval
        self._limits = limits or Limits()
        self._writer = EventWriter(
            store,
            runner,
            origin=Origin(producer=coordinator_id, epoch=epoch),
            holds_lease=holds_lease,
        )
        self._room = StoreRoom(store, runner)
        self._desk = TaskDesk(store, runner, self._writer, limits=self._limits, room=self._room)
        self._schedules = ScheduleDesk(runner, self._writer, self._desk, limits=self._limits)
        self._standbys = standbys
        self._dirty = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._api = MicroService(
            nc,
            name=api.SERVICE_NAME,
            version=eventsrc.__version__,
            description="eventsrc coordinator command API",
            prefix=api.API_PREFIX,
        )
        self._inflight = asyncio.Semaphore(MAX_CONCURRENT_REQUESTS)
        # run/wait requests are held until their task ends: a bound of their own, so
        # they never starve the other requests.
        self._waiting = asyncio.Semaphore(MAX_WAITING_REQUESTS)
        self._deposed = False
        self.epoch = epoch

    @property
    def deposed(self) -> bool:
        """Whether this service has stopped deciding (deposed or stepped down); final."""
        return self._deposed

    def mark_dirty(self, state: ClusterState | None = None) -> None:
        """Called after every applied batch: the control loop should look again, and
        requests waiting for a task's end may be answered."""
        self._dirty.set()
        if state is not None:
            self._desk.on_applied(state)

    def _halt(self) -> None:
        """Stop deciding now, before any await: refuse appends, cancel the loops. Requests
        in flight may finish: their writes are refused, so callers hear "retry"."""
        self._deposed = True
        self._writer.revoke()
        for task in self._tasks:
            if task is not asyncio.current_task():
                task.cancel()

    async def start(self) -> None:
        """Serve the API and start the loops; the caller elected ``epoch`` already."""
        await self._api.start()
        endpoints: dict[str, tuple[type[BaseModel], Handler]] = {
            "submit": (SubmitTask, self._desk.submit),
            "submit_many": (api.SubmitTasks, self._desk.submit_many),
            "run": (api.RunTask, self._desk.run),
            "wait": (api.WaitTask, self._desk.wait),
            "get": (api.GetTask, self._desk.get),
            "cancel": (CancelTask, self._desk.cancel),
            "tasks": (api.ListTasks, self._tasks_list),
            "nodes": (api.Empty, self._nodes),
            "skills": (api.Empty, self._skills),
            "status": (api.Empty, self._status),
            "drain": (DrainNode, self._drain),
            "limit_set": (SetLimit, self._key_limit_write(decide_set_limit)),
            "limit_remove": (RemoveLimit, self._key_limit_write(decide_remove_limit)),
            "limits": (api.Empty, self._limits_list),
            "register_skills": (api.RegisterSkills, self._register_skills),
            "register_skill": (RegisterSkill, self._registry_write(decide_register_skill)),
            "register_instance": (RegisterInstance, self._registry_write(decide_register_instance)),
            "unregister_instance": (
                UnregisterInstance,
                self._registry_write(decide_unregister_instance),
            ),
            "expire_stale": (ExpireStale, self._registry_write(decide_expire_stale)),
            "node_hello": (api.NodeHello, self._node_hello),
            "schedule_add": (AddSchedule, self._schedules.add),
            "schedule_list": (api.Empty, self._schedules.list),
            "schedule_pause": (ScheduleCommand, self._schedules.pause),
            "schedule_resume": (ScheduleCommand, self._schedules.resume),
            "schedule_remove": (ScheduleCommand, self._schedules.remove),
            "schedule_next": (ShowSchedule, self._schedules.next),
        }
        for name, (model, handler) in endpoints.items():
            limit = self._waiting if name in ("run", "wait") else self._inflight
            await self._api.add_endpoint(name, endpoint(model, handler), limit=limit)
        self._tasks.append(asyncio.create_task(self._control_loop(), name="control-loop"))
        self._tasks.append(asyncio.create_task(self._sweep_loop(), name="sweep-loop"))
        self._tasks.append(asyncio.create_task(self._snapshot_loop(), name="snapshot-loop"))
        self._tasks.append(asyncio.create_task(self._room.watch(), name="room-watch"))
        fire = self._schedules.fire_loop(lambda: self._deposed)
        self._tasks.append(asyncio.create_task(fire, name="schedule-loop"))

    async def close(self) -> None:
        """Stop deciding at once, then stop serving; idempotent."""
        self._halt()
        await self._api.stop()
        tasks, self._tasks = self._tasks, []
        tasks = [t for t in tasks if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=10)

    async def __aenter__(self) -> CoordinatorService:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _control_loop(self) -> None:
        # Waiting tasks are looked at after every applied batch; the full pass (run and
        # queue deadlines, tasks of lost nodes) runs on the tick.
        loop = asyncio.get_running_loop()
        next_full = loop.time()
        while not self._deposed:  # not only cancellation: nats-py may swallow one (3.11)
            with contextlib.suppress(TimeoutError):
                # asyncio.timeout: 3.11's wait_for can swallow the cancel of a step-down.
                async with asyncio.timeout(max(0.0, next_full - loop.time())):
                    await self._dirty.wait()
            self._dirty.clear()
            full = loop.time() >= next_full
            if full:
                next_full = loop.time() + TICK_S
            if self._deposed:
                continue
            try:
                await self._desk.reconcile(full=full)
            except asyncio.CancelledError:
                raise
            except EventsrcError as err:
                log.warning("control loop: %s", err)
            except Exception:
                log.exception("control loop failed; retrying")

    async def _sweep_loop(self) -> None:
        # A fixed period (not sleep-after-work), so expiry stays within
        # stale_after + sweep_interval however long a sweep takes.
        loop = asyncio.get_running_loop()
        next_sweep = loop.time() + self._sweep_interval
        while True:
            await asyncio.sleep(max(0.0, next_sweep - loop.time()))
            next_sweep += self._sweep_interval
            if self._deposed:
                return
            try:
                await self._writer.execute(
                    decide_expire_stale, ExpireStale(stale_after_s=self._stale_after)
                )
            except asyncio.CancelledError:
                raise
            except EventsrcError as err:
                log.warning("stale sweep: %s", err)

    async def _snapshot_loop(self) -> None:
        while True:
            await asyncio.sleep(SNAPSHOT_EVERY_S)
            try:
                await self._runner.snapshot()
            except Exception as err:  # a failed snapshot costs replay time, nothing else
                log.warning("snapshot not written: %s", err)

    async def _tasks_list(self, command: api.ListTasks) -> Any:
        async with self._runner.reading() as state:
            return {"tasks": list_tasks(state, include_finished=command.all, limit=command.limit)}

    async def _nodes(self, command: api.Empty) -> Any:
        async with self._runner.reading() as state:
            return {"nodes": list_nodes(state)}

    async def _skills(self, command: api.Empty) -> Any:
        async with self._runner.reading() as state:
            return {"skills": list_skill_infos(state)}

    async def _status(self, command: api.Empty) -> Any:
        async with self._runner.reading() as state:
            info = status_info(state)
        names = (EVENTS_STREAM, HEARTBEATS_STREAM, OUTPUT_STREAM, LEADER_BUCKET_STREAM)
        leaders, stream_seq, standbys = await asyncio.gather(
            stream_leaders(self._store.js, names),
            _unless_unavailable(self._store.last_seq()),
            _unless_unavailable(self._standbys() if self._standbys else None),
        )
        update = {"stream_leaders": leaders, "stream_seq": stream_seq, "standbys": standbys}
        return info.model_copy(update=update)

    async def _drain(self, command: DrainNode) -> Any:
        events = await self._writer.execute(decide_drain, command)
        async with self._runner.reading() as state:
            info = node_info(state, state.nodes[command.node_id])
        return {**info.model_dump(mode="json"), "changed": bool(events)}

    async def _register_skills(self, command: api.RegisterSkills) -> Any:
        changed = []
        for metadata in command.skills:
            if await self._writer.execute(decide_register_skill, RegisterSkill(metadata=metadata)):
                changed.append(metadata.name)
        return {"changed": changed}

    def _key_limit_write(self, decide: Any) -> Handler:
        async def write(command: Command) -> Any:
            events = await self._writer.execute(decide, command)
            return {"changed": bool(events), "limits": await self._limits_list(api.Empty())}

        return write

    async def _limits_list(self, command: api.Empty) -> Any:
        async with self._runner.reading() as state:
            return list_limits(state)

    def _registry_write(self, decide: Any) -> Handler:
        async def write(command: Command) -> Any:
            events = await self._writer.execute(decide, command)
            return {
                "events": [event.model_dump(mode="json") for event in events],
                "last_seq": self._runner.state.last_seq,
            }

        return write

    async def _node_hello(self, command: api.NodeHello) -> Any:
        if command.event_schema > EVENT_SCHEMA:
            raise DomainError(
                f"node {command.node_id} writes event schema {command.event_schema}, newer "
                f"than this coordinator's {EVENT_SCHEMA}; upgrade the coordinator first"
            )
        # Decide on the state up to the newest event of this node id, and hand the node
        # that sequence: its join is appended only if nothing was written there since.
        node_seq = await self._store.last_subject_seq(node_subject(command.node_id))
        await self._runner.wait_for(node_seq)
        holder = live_holder(
            self._runner.state,
            node_id=command.node_id,
            incarnation=command.incarnation,
            replaces=command.replaces,
            now=datetime.now(UTC),
            stale_after_s=self._stale_after,
        )
        if holder is not None:
            message = in_use_message(self._runner.state, holder, stale_after_s=self._stale_after)
            if not command.answers_in_use:  # a node too old to read the answer below
                raise DomainError(message)
            # The node decides: a holder on its own host whose pid is gone is a crashed
            # predecessor it may replace; anything else refuses this process.
            return {
                "in_use": {
                    "host_id": holder.host_id,
                    "pid": holder.pid,
                    "process_started": holder.process_started,
                    "incarnation": holder.incarnation,
                },
                "message": message,
            }
        name = assignment_consumer_name(command.node_id)
        # A returning node keeps its consumer: unacked assignments are redelivered.
        config = await ensure_consumer(
            self._store.js, EVENTS_STREAM, assignment_consumer(command.node_id)
        )
        return {
            "stream": EVENTS_STREAM,
            "consumer": name,
            "epoch": self.epoch,
            "node_seq": node_seq,
            # The node's fence then follows elections on the consumer, not on its own.
            "elections": carries_elections(config),
        }

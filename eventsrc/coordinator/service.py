"""The leading coordinator: the command API, the control loop, the stale sweep.

One instance per leader term (``leadership`` elects and decides when it ends); it
decides with its term's epoch and stops deciding at once when closed or deposed.

- API: a NATS micro service (``$SRV.PING/INFO/STATS`` work with standard tooling);
  handlers validate, run a pure decide function, append, and reply after the local
  projection applied the result.
- Control loop: after every applied batch (and on a short tick, for deadlines) it runs
  ``reconcile`` and appends its decisions, each guarded by its task's last sequence.
- Sweep: every ``sweep_interval`` nodes silent for ``stale_after`` expire by event.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import nats.js.errors
from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.micro import add_service
from nats.micro.request import Request
from nats.micro.service import Service
from pydantic import BaseModel

import eventsrc
from eventsrc.commands import api
from eventsrc.commands.base import Command, Origin
from eventsrc.commands.registry import (
    ExpireStale,
    RegisterInstance,
    RegisterSkill,
    UnregisterInstance,
    decide_expire_stale,
    decide_register_instance,
    decide_register_skill,
    decide_unregister_instance,
)
from eventsrc.commands.tasks import (
    CancelTask,
    DrainNode,
    Limits,
    SubmitTask,
    decide_cancel,
    decide_drain,
    decide_submit,
    reconcile,
)
from eventsrc.commands.views import (
    list_nodes,
    list_skill_infos,
    list_tasks,
    node_info,
    status_info,
    task_info,
)
from eventsrc.coordinator.endpoints import Handler, endpoint
from eventsrc.errors import (
    ConcurrencyError,
    DomainError,
    EventsrcError,
    NotFoundError,
    StoreError,
)
from eventsrc.events import CURRENT_SCHEMA_VERSIONS, new_event_id
from eventsrc.history import fold_task
from eventsrc.ports import EVENTS_STREAM
from eventsrc.projections.runner import ProjectionRunner
from eventsrc.store import JetStreamEventStore
from eventsrc.writer import EventWriter, utc_now

log = logging.getLogger(__name__)

EVENT_SCHEMA = max(CURRENT_SCHEMA_VERSIONS.values())
"""The newest event schema this coordinator reads; nodes writing newer are refused."""

TICK_S = 0.5
MAX_CONCURRENT_REQUESTS = 256
SNAPSHOT_EVERY_S = 60.0


def consumer_name(node_id: str) -> str:
    """The durable pull consumer a node takes its work from."""
    return f"node-{node_id}"


class CoordinatorService:
    """Leads the cluster while running; an async context manager."""

    def __init__(
        self,
        nc: Client,
        store: JetStreamEventStore,
        runner: ProjectionRunner,
        *,
        coordinator_id: str,
        epoch: int,
        stale_after: float,
        sweep_interval: float,
        limits: Limits | None = None,
        on_deposed: Callable[[str], None] | None = None,
        holds_lease: Callable[[], bool] | None = None,
    ) -> None:
        self._nc = nc
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
        self._on_deposed = on_deposed
        self._dirty = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._service: Service | None = None
        self._placement = asyncio.Lock()
        self._inflight = asyncio.Semaphore(MAX_CONCURRENT_REQUESTS)
        self._requests: set[asyncio.Task[None]] = set()
        self._deposed = False
        self.epoch = epoch

    def mark_dirty(self, *_: object) -> None:
        """Called after every applied batch: the control loop should look again."""
        self._dirty.set()
        if self._runner.state.epoch > self.epoch and not self._deposed:
            # A newer leader's LeaderElected was applied: stop deciding at once.
            reason = f"deposed by leader epoch {self._runner.state.epoch}"
            self._halt()
            if self._on_deposed is not None:
                self._on_deposed(reason)
            else:
                log.error("%s; this coordinator stops serving", reason)
                self._tasks.append(asyncio.create_task(self.close(), name="step-down"))

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
        self._service = await add_service(
            self._nc,
            name=api.SERVICE_NAME,
            version=eventsrc.__version__,
            description="eventsrc coordinator command API",
        )
        group = self._service.add_group(name=api.API_PREFIX)
        endpoints: dict[str, tuple[type[BaseModel], Handler]] = {
            "submit": (SubmitTask, self._submit),
            "get": (api.GetTask, self._get),
            "cancel": (CancelTask, self._cancel),
            "tasks": (api.ListTasks, self._tasks_list),
            "nodes": (api.Empty, self._nodes),
            "skills": (api.Empty, self._skills),
            "status": (api.Empty, self._status),
            "drain": (DrainNode, self._drain),
            "register_skills": (api.RegisterSkills, self._register_skills),
            "register_skill": (RegisterSkill, self._registry_write(decide_register_skill)),
            "register_instance": (RegisterInstance, self._registry_write(decide_register_instance)),
            "unregister_instance": (
                UnregisterInstance,
                self._registry_write(decide_unregister_instance),
            ),
            "expire_stale": (ExpireStale, self._registry_write(decide_expire_stale)),
            "node_hello": (api.NodeHello, self._node_hello),
        }
        for name, (model, handler) in endpoints.items():
            await group.add_endpoint(name=name, handler=self._concurrent(endpoint(model, handler)))
        self._tasks.append(asyncio.create_task(self._control_loop(), name="control-loop"))
        self._tasks.append(asyncio.create_task(self._sweep_loop(), name="sweep-loop"))
        self._tasks.append(asyncio.create_task(self._snapshot_loop(), name="snapshot-loop"))

    def _concurrent(
        self, serve: Callable[[Request], Awaitable[None]]
    ) -> Callable[[Request], Awaitable[None]]:
        """nats micro awaits a handler before reading the next request of its endpoint;
        run each in its own task (bounded) so a slow request does not hold up others."""

        async def spawn(request: Request) -> None:
            await self._inflight.acquire()
            task = asyncio.ensure_future(serve(request))
            self._requests.add(task)
            task.add_done_callback(self._request_done)

        return spawn

    def _request_done(self, task: asyncio.Task[None]) -> None:
        self._requests.discard(task)
        self._inflight.release()

    async def close(self) -> None:
        """Stop deciding at once, then stop serving; idempotent."""
        self._halt()
        if self._service is not None:
            service, self._service = self._service, None
            with contextlib.suppress(Exception):
                await service.stop()
        tasks, self._tasks = self._tasks, []
        tasks = [t for t in [*tasks, *self._requests] if t is not asyncio.current_task()]
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
        while not self._deposed:  # not only cancellation: nats-py may swallow one (3.11)
            with contextlib.suppress(TimeoutError):
                # asyncio.timeout: 3.11's wait_for can swallow the cancel of a step-down.
                async with asyncio.timeout(TICK_S):
                    await self._dirty.wait()
            self._dirty.clear()
            try:
                await self._reconcile_once()
            except asyncio.CancelledError:
                raise
            except EventsrcError as err:
                log.warning("control loop: %s", err)
            except Exception:
                log.exception("control loop failed; retrying")

    async def _reconcile_once(self) -> None:
        if self._deposed:
            return
        # Placements by submit and by reconcile read the same free slots: one at a time.
        async with self._placement:
            await self._reconcile_locked()

    async def _reconcile_locked(self) -> None:
        async with self._runner.reading() as state:
            self._writer.check_leading(state.epoch)
            decisions = reconcile(
                state, now=utc_now(), new_id=new_event_id, origin=self._writer.origin
            )
            expected = {
                task_id: state.aggregate_seq.get(f"evt.task.{task_id}.>", 0)
                for task_id, _ in decisions
            }
        last = 0
        for task_id, events in decisions:
            aggregate = f"evt.task.{task_id}.>"
            try:
                last = await self._writer.append_chain(events, {aggregate: expected[task_id]})
            except ConcurrencyError:
                continue  # the task moved on meanwhile; the next round decides again
        if last:
            await self._runner.wait_for(last)

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

    async def _run(self, decide: Any, command: Command, **options: Any) -> None:
        await self._writer.execute(functools.partial(decide, **options), command)

    async def _submit(self, command: SubmitTask) -> Any:
        async with self._runner.reading() as state:
            in_memory = command.task_id in state.tasks
            has_history = f"evt.task.{command.task_id}.>" in state.aggregate_seq
        if not in_memory and has_history:
            # Events but no task in memory: finished long ago (evicted) or stray events.
            existing = await self._existing(command)
            if existing is not None:
                return existing
        try:
            async with self._placement:
                await self._run(decide_submit, command, limits=self._limits)
        except StoreError:
            # Lost every race: most likely an evicted task id whose history is only in
            # the stream. Answer from there, or give up with the store's message.
            existing = await self._existing(command)
            if existing is None:
                raise
            return existing
        return await self._task_view(command.task_id)

    async def _existing(self, command: SubmitTask) -> Any:
        """The stored task with this id, if the stream has its submission (idempotency)."""
        folded = await fold_task(self._store, command.task_id)
        if folded is None:
            return None
        if folded.spec != command.spec:
            raise DomainError(
                f"task {command.task_id} exists with a different request; use another task id"
            )
        return task_info(folded)

    async def _task_view(self, task_id: str) -> Any:
        async with self._runner.reading() as state:
            task = state.tasks.get(task_id)
            if task is not None:
                return task_info(task)
        folded = await fold_task(self._store, task_id)
        if folded is None:
            raise NotFoundError(f"no task {task_id}; check the id (eventsrc tasks --all)")
        return task_info(folded)

    async def _get(self, command: api.GetTask) -> Any:
        return await self._task_view(command.task_id)

    async def _cancel(self, command: CancelTask) -> Any:
        await self._run(decide_cancel, command)
        return await self._task_view(command.task_id)

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
            return status_info(state)

    async def _drain(self, command: DrainNode) -> Any:
        await self._run(decide_drain, command)
        async with self._runner.reading() as state:
            return node_info(state, state.nodes[command.node_id])

    async def _register_skills(self, command: api.RegisterSkills) -> Any:
        changed = []
        for metadata in command.skills:
            if await self._writer.execute(decide_register_skill, RegisterSkill(metadata=metadata)):
                changed.append(metadata.name)
        return {"changed": changed}

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
        name = consumer_name(command.node_id)
        config = ConsumerConfig(
            durable_name=name,
            filter_subject=f"evt.task.*.to.{command.node_id}",
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.NEW,
            ack_wait=30,
            max_deliver=-1,
        )
        try:
            # A returning node keeps its consumer: unacked assignments are redelivered.
            await self._store.js.consumer_info(EVENTS_STREAM, name)
        except nats.js.errors.NotFoundError:
            await self._store.js.add_consumer(EVENTS_STREAM, config)
        return {"stream": EVENTS_STREAM, "consumer": name, "epoch": self.epoch}

"""``eventsrc.connect``: the Python entry point for programs that use a cluster.

Reads come from a local projection (or, for one task, straight from its events);
writes are commands to the leading coordinator's API, and return once the local
projection has applied their events (read your own write).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any

from pydantic import ValidationError

from eventsrc.api_client import ApiClient, CoordinatorUnavailableError, RequestTimeoutError
from eventsrc.commands import api
from eventsrc.commands.api import SubmitTasks
from eventsrc.commands.base import Command
from eventsrc.commands.limits import RemoveLimit, SetLimit
from eventsrc.commands.registry import (
    decide_expire_stale,
    decide_register_instance,
    decide_register_skill,
    decide_unregister_instance,
)
from eventsrc.commands.schedules import AddSchedule, ScheduleCommand, ShowSchedule
from eventsrc.commands.tasks import CancelTask, DrainNode, SubmitTask
from eventsrc.commands.views import SubmittedTask, TaskInfo, task_info
from eventsrc.config import connection_config, nats_options
from eventsrc.errors import (
    InvalidRequestError,
    NotFoundError,
    NotPermittedError,
    ServerUnavailableError,
    first_problem,
)
from eventsrc.events import (
    EVENT_ADAPTER,
    CatchUp,
    Event,
    ScheduleTiming,
    TaskOutput,
    TaskSpec,
    validate_token,
)
from eventsrc.events.subjects import output_subject
from eventsrc.history import (
    fold_task,
    follow_task,
    follow_task_output,
    follow_tasks,
    watch_task,
)
from eventsrc.lineage import running_task
from eventsrc.ports import OUTPUT_STREAM, StoredEvent
from eventsrc.registry import SkillRegistry
from eventsrc.runner import ProjectionRunner
from eventsrc.store import JetStreamEventStore, NatsOptions, connect_nats, resolve_servers
from eventsrc.store.getreads import event_store
from eventsrc.writer import C, Decide

REPLY_MARGIN_S = 2.0
"""How much longer than a run/wait request's own wait its reply may take."""
WAIT_FIRST_S = 2.0
"""The first wait request's wait: a frozen coordinator costs no more before the stream
is followed instead."""
WAIT_CHUNK_S = 20.0
PATIENCE_S = 30.0
"""How long a submission keeps asking while the cluster cannot take it yet: a NATS
stream elects a new leader within about 10 s of losing one, a coordinator lease
within its lease time."""
"""The longest one run/wait request is held open; a longer wait asks again."""

# The command API route behind which the coordinator runs each registry decide function.
_ROUTES: dict[Decide[Any], str] = {
    decide_register_skill: "register_skill",
    decide_register_instance: "register_instance",
    decide_unregister_instance: "unregister_instance",
    decide_expire_stale: "expire_stale",
}


class ApiRegistryWriter:
    """Registry writes as commands to the coordinator (only it writes the catalog)."""

    def __init__(self, api: ApiClient, runner: ProjectionRunner) -> None:
        self._api = api
        self._runner = runner

    async def execute(self, decide: Decide[C], command: C) -> tuple[Event, ...]:
        """Have the coordinator run ``decide`` on ``command``; the events it stored."""
        data = await self._api.call(_ROUTES[decide], command)
        await self._runner.wait_for(int(data["last_seq"]))
        return tuple(EVENT_ADAPTER.validate_python(event) for event in data["events"])


class Cluster:
    """A connection to an eventsrc cluster; ``async with eventsrc.connect(url) as c:``."""

    def __init__(self, options: NatsOptions, *, project: bool = True) -> None:
        self._options = options
        self._project = project
        self._stack = AsyncExitStack()
        self._registry: SkillRegistry | None = None
        self._runner: ProjectionRunner | None = None
        self._store: JetStreamEventStore | None = None
        self._api: ApiClient | None = None

    @property
    def registry(self) -> SkillRegistry:
        """The week-5 SkillRegistry over this cluster."""
        assert self._registry is not None, "connect with project=True to use the registry"
        return self._registry

    @property
    def runner(self) -> ProjectionRunner:
        """The local projection (state, reader lock, wait_for)."""
        assert self._runner is not None, "connect with project=True for a local projection"
        return self._runner

    @property
    def role(self) -> str | None:
        """The secure-mode role of the credentials (``submitter``, ``reader``, ...), or None
        without a role-marked credentials file; raises ConfigError for an unusable file."""
        credentials = self._options.credentials()
        return credentials.role if credentials is not None else None

    @property
    def store(self) -> JetStreamEventStore:
        assert self._store is not None, "use `async with eventsrc.connect(...)` first"
        return self._store

    @property
    def api(self) -> ApiClient:
        assert self._api is not None, "use `async with eventsrc.connect(...)` first"
        return self._api

    async def open(self) -> Cluster:
        """Connect (failing fast with one line if NATS is not there) and catch up."""
        nc = await connect_nats(self._options, long_running=False)
        self._stack.push_async_callback(nc.close)
        self._store = event_store(nc, consumers=self._options.may_create_consumers())
        self._api = ApiClient(nc)
        if self._project:
            self._runner = ProjectionRunner(self._store)
            await self._stack.enter_async_context(self._runner)
            self._registry = SkillRegistry(self._runner, ApiRegistryWriter(self._api, self._runner))
        return self

    async def submit(
        self,
        skills: str | list[str] | tuple[str, ...],
        payload: Any = None,
        *,
        task_id: str | None = None,
        submitted_by: str = "",
        parent_task_id: str | None = None,
        broadcast_id: str | None = None,
        **options: Any,
    ) -> TaskInfo:
        """Submit a task needing ``skills``; options are TaskSpec fields (priority, labels,
        node_id, run_timeout_s, queue_timeout_s, max_attempts, backoff_s, task_type, model,
        after, not_before, delay_s, deadline, limit_key); an unknown one raises
        InvalidRequestError. ``after=TASK_ID`` starts it once that task succeeded, with
        that task's result in its payload under ``after`` (``{"task_id", "result"}``).

        Inside a task's attempt on a node, ``parent_task_id`` defaults to that task: the
        new task is its sub-task."""
        command = SubmitTask(
            task_id=_task_id(task_id),
            spec=_spec(skills, payload, options),
            submitted_by=submitted_by,
            parent_task_id=parent_task_id or running_task.get(),
            broadcast_id=broadcast_id,
        )
        return TaskInfo.model_validate(await self._patiently("submit", command))

    async def submit_many(self, specs: Iterable[Mapping[str, Any]]) -> list[SubmittedTask]:
        """Submit many tasks in one request; each spec holds ``submit``'s arguments
        (``skills``, ``payload``, ``task_id``, ``submitted_by``, ``parent_task_id``,
        ``broadcast_id`` and the task options). All are checked first: a bad spec
        raises InvalidRequestError naming its number (from 1) and nothing is submitted;
        so does a task the coordinator refuses. At most ``api.MAX_BATCH`` per call.
        Idempotent per task id as ``submit`` is: the same batch again changes nothing.
        Returns each task's short form (id, state, node, reason) in order."""
        return await self.submit_batch(submit_tasks(specs, parent_task_id=running_task.get()))

    async def submit_batch(self, command: SubmitTasks) -> list[SubmittedTask]:
        """``submit_many`` of a request built already (``submit_tasks``)."""
        reply = await self._patiently("submit_many", command, timeout=BATCH_TIMEOUT_S)
        return [SubmittedTask.model_validate(task) for task in reply["tasks"]]

    async def _patiently(
        self, endpoint: str, command: Command, *, timeout: float | None = None
    ) -> Any:
        """Call ``endpoint``; while the cluster cannot answer yet (no reply, or "not now"
        while a stream elects a leader or a leader changes) ask again, for up to
        PATIENCE_S. Safe for submissions: the task id is fixed, so a repeat returns the
        stored task instead of a second one."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PATIENCE_S
        delay = 0.25
        while True:
            try:
                return await self.api.call(endpoint, command, timeout=timeout)
            except (RequestTimeoutError, CoordinatorUnavailableError):
                if loop.time() + delay >= deadline:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def run(
        self,
        skills: str | list[str] | tuple[str, ...],
        payload: Any = None,
        *,
        timeout: float = 60.0,
        task_id: str | None = None,
        submitted_by: str = "",
        parent_task_id: str | None = None,
        **options: Any,
    ) -> TaskInfo:
        """Submit and wait for the result in one request; returns the last state (not
        terminal if ``timeout`` passed). The coordinator answers when the task ends."""
        command = api.RunTask(
            task_id=_task_id(task_id),
            spec=_spec(skills, payload, options),
            submitted_by=submitted_by,
            parent_task_id=parent_task_id or running_task.get(),
            wait_s=min(max(timeout, 0.0), WAIT_CHUNK_S),
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout, 0.0)
        while True:
            try:
                reply = await self.api.call("run", command, timeout=command.wait_s + REPLY_MARGIN_S)
                break
            except (RequestTimeoutError, CoordinatorUnavailableError):
                # No answer, or "not now" (a coordinator frozen or failing over, a stream
                # electing a leader): the same request again is safe, resubmitting is
                # idempotent; another may answer.
                if loop.time() >= deadline:
                    return await self.get(command.task_id)
                await asyncio.sleep(0.25)
        info = TaskInfo.model_validate(reply)
        if info.terminal or loop.time() >= deadline:
            return info
        return await self.wait(command.task_id, deadline - loop.time())

    async def get(self, task_id: str) -> TaskInfo:
        """A task's current state, read from its events (no coordinator needed)."""
        task = await fold_task(self.store, validate_token(task_id, what="task id"))
        if task is None:
            raise NotFoundError(f"no task {task_id}; check the id (eventsrc tasks --all)")
        return task_info(task)

    async def follow(self, task_id: str) -> AsyncIterator[TaskInfo]:
        """The task now, then each change to it as it happens, until it ends; read from
        its events (no coordinator needed). Raises NotFoundError for an unknown task."""
        shown: TaskInfo | None = None
        async for task in follow_task(self.store, validate_token(task_id, what="task id")):
            info = task_info(task)
            if info != shown:
                shown = info
                yield info
        if shown is None:
            raise NotFoundError(f"no task {task_id}; check the id (eventsrc tasks --all)")

    async def follow_output(self, task_id: str) -> AsyncIterator[TaskInfo | TaskOutput]:
        """Like ``follow``, with the task's progress and output as it runs: each
        ``TaskOutput`` batch (``lines``: stdout, stderr and progress lines; ``progress``:
        the latest fraction) as it arrives, between the task's changes. The retained
        output of a task already running comes first; the final change comes last."""
        shown: TaskInfo | None = None
        checked = validate_token(task_id, what="task id")
        async for item in follow_task_output(self.store, checked):
            if isinstance(item, TaskOutput):
                yield item
                continue
            info = task_info(item)
            if info != shown:
                shown = info
                yield info
        if shown is None:
            raise NotFoundError(f"no task {task_id}; check the id (eventsrc tasks --all)")

    async def latest_output(self, task_id: str, node_id: str) -> TaskOutput | None:
        """The newest output batch of a task from the node running it (its ``progress``
        and ``progress_message`` are the latest reported), or None: one message get."""
        subject = output_subject(
            validate_token(task_id, what="task id"), validate_token(node_id, what="node id")
        )
        record = await self.store.latest(OUTPUT_STREAM, subject)
        if isinstance(record, StoredEvent) and isinstance(record.event, TaskOutput):
            return record.event
        return None

    async def watch_tasks(self, *, from_seq: int | None = None) -> AsyncIterator[TaskInfo]:
        """Each change to any task as it happens, from stream sequence ``from_seq`` on
        (default: what comes after now), until cancelled."""
        if from_seq is None:
            from_seq = await self.store.last_seq() + 1
        shown: dict[str, TaskInfo] = {}
        async for task in follow_tasks(self.store, from_seq=from_seq):
            info = task_info(task)
            if shown.get(task.task_id) != info:
                shown[task.task_id] = info
                yield info
            if info.terminal:
                shown.pop(task.task_id, None)

    async def wait(self, task_id: str, timeout: float = 60.0) -> TaskInfo:
        """Wait until the task ends or ``timeout`` passes; returns its last state.

        The coordinator answers when the task ends (asked again every ``WAIT_CHUNK_S``;
        the first request is short, ``WAIT_FIRST_S``). When no coordinator answers (none
        reachable, or one frozen or failing over), the task's events are followed
        straight from the stream for the time left.
        """
        task_id = validate_token(task_id, what="task id")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout, 0.0)
        chunk = WAIT_FIRST_S
        while True:
            left = max(0.0, deadline - loop.time())
            command = api.WaitTask(task_id=task_id, wait_s=min(left, chunk))
            chunk = WAIT_CHUNK_S
            try:
                reply = await self.api.call(
                    "wait", command, timeout=command.wait_s + REPLY_MARGIN_S
                )
            except (ServerUnavailableError, NotPermittedError):
                return await self._follow(task_id, max(0.0, deadline - loop.time()))
            info = TaskInfo.model_validate(reply)
            if info.terminal or loop.time() >= deadline:
                return info

    async def _follow(self, task_id: str, timeout: float) -> TaskInfo:
        task = await watch_task(self.store, task_id, timeout=timeout)
        if task is None:
            raise NotFoundError(f"no task {task_id}; check the id (eventsrc tasks --all)")
        return task_info(task)

    async def cancel(self, task_id: str, reason: str = "cancelled by user") -> TaskInfo:
        command = CancelTask(task_id=validate_token(task_id, what="task id"), reason=reason)
        return TaskInfo.model_validate(await self.api.call("cancel", command))

    async def drain(self, node_id: str, *, off: bool = False) -> Any:
        """Drain a node (no new work placed there, in force across its re-joins) or, with
        ``off``, undo that. The node's view, with ``changed`` False when it already was so."""
        command = DrainNode(node_id=validate_token(node_id, what="node id"), off=off)
        if off:
            command = command.model_copy(update={"reason": "undrain requested"})
        return await self.api.call("drain", command)

    async def set_limit(
        self, key: str, *, max_running: int | None = None, rate: str | None = None
    ) -> Any:
        """Limit the tasks submitted with ``limit_key=key`` cluster-wide: at most
        ``max_running`` assigned or running at once, at most ``rate`` (``30/m``) started.
        Returns ``changed`` and every limit in force."""
        try:
            command = SetLimit(
                key=validate_token(key, what="limit key"), max_running=max_running, rate=rate
            )
        except ValidationError as err:
            raise InvalidRequestError(f"limit {key}: {first_problem(err)}") from err
        return await self.api.call("limit_set", command)

    async def remove_limit(self, key: str) -> Any:
        """Remove a key's limit (its tasks are no longer held by it)."""
        command = RemoveLimit(key=validate_token(key, what="limit key"))
        return await self.api.call("limit_remove", command)

    async def limits(self) -> list[dict[str, Any]]:
        """Every limit in force (keys' and skills'), with the tasks running under each."""
        rows: list[dict[str, Any]] = await self.api.call("limits")
        return rows

    async def undrain(self, node_id: str) -> Any:
        """Place work on a drained node again."""
        return await self.drain(node_id, off=True)

    # -- schedules --------------------------------------------------------------------

    async def add_schedule(
        self,
        name: str,
        skills: str | list[str] | tuple[str, ...],
        payload: Any = None,
        *,
        cron: str | None = None,
        tz: str = "UTC",
        every_s: int | None = None,
        catch_up: CatchUp = "skip",
        grace_s: float = 60.0,
        **options: Any,
    ) -> Any:
        """Add a schedule that submits a task needing ``skills`` at every occurrence of
        ``cron`` (in time zone ``tz``) or every ``every_s`` seconds; options are TaskSpec
        fields as for ``submit``. Adding the same schedule again changes nothing; the
        schedule's view, with ``changed``."""
        command = AddSchedule(
            name=validate_token(name, what="schedule name"),
            timing=ScheduleTiming(
                cron=cron, tz=tz, every_s=every_s, catch_up=catch_up, grace_s=grace_s
            ),
            task=_spec(skills, payload, options),
            added_by="api",
        )
        return await self._patiently("schedule_add", command)

    async def schedules(self) -> list[Any]:
        """Every schedule: its timing, state, next occurrence and counts."""
        schedules: list[Any] = (await self.api.call("schedule_list"))["schedules"]
        return schedules

    async def pause_schedule(self, name: str, reason: str = "") -> Any:
        return await self._schedule("schedule_pause", name, reason)

    async def resume_schedule(self, name: str) -> Any:
        """Fire again from now on (occurrences while paused never fire)."""
        return await self._schedule("schedule_resume", name, "")

    async def remove_schedule(self, name: str, reason: str = "") -> Any:
        return await self._schedule("schedule_remove", name, reason)

    async def next_fires(self, name: str, count: int = 5) -> Any:
        """The schedule and its next ``count`` occurrences (none while paused)."""
        command = ShowSchedule(name=validate_token(name, what="schedule name"), count=count)
        return await self.api.call("schedule_next", command)

    async def _schedule(self, endpoint: str, name: str, reason: str) -> Any:
        command = ScheduleCommand(name=validate_token(name, what="schedule name"), reason=reason)
        return await self._patiently(endpoint, command)

    async def close(self) -> None:
        """Disconnect; idempotent."""
        await self._stack.aclose()

    async def __aenter__(self) -> Cluster:
        try:
            return await self.open()
        except BaseException:
            await self.close()
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


BATCH_TIMEOUT_S = 60.0
"""How long a ``submit_many`` request may take (a full batch is well under a second)."""

_SUBMIT_ARGS = frozenset(
    {"skills", "payload", "task_id", "submitted_by", "parent_task_id", "broadcast_id"}
)


def submit_tasks(
    specs: Iterable[Mapping[str, Any]], *, parent_task_id: str | None = None
) -> SubmitTasks:
    """The batch request for ``specs`` (``submit``'s arguments each); InvalidRequestError
    naming the first bad one (``task N: ...``, N from 1), or for too many or none."""
    tasks: list[SubmitTask] = []
    for number, spec in enumerate(specs, start=1):
        if len(tasks) == api.MAX_BATCH:
            raise InvalidRequestError(
                f"more than {api.MAX_BATCH} tasks in one batch; split them into batches of "
                f"at most {api.MAX_BATCH}"
            )
        try:
            tasks.append(submission(spec, parent_task_id=parent_task_id))
        except InvalidRequestError as err:
            raise InvalidRequestError(f"task {number}: {err}") from err
    if not tasks:
        raise InvalidRequestError("no tasks to submit; give at least one")
    return SubmitTasks.model_construct(tasks=tuple(tasks))


def submission(spec: Mapping[str, Any], *, parent_task_id: str | None = None) -> SubmitTask:
    """One task of a batch (``submit``'s arguments); InvalidRequestError saying what is
    wrong with it."""
    try:
        return _submission(spec, parent_task_id)
    except TypeError as err:
        raise InvalidRequestError(str(err)) from err
    except ValidationError as err:
        raise InvalidRequestError(str(first_problem(err, root="task"))) from err


def _submission(spec: Mapping[str, Any], parent_task_id: str | None) -> SubmitTask:
    if not isinstance(spec, Mapping):
        raise InvalidRequestError(f"a task is a mapping of submit's arguments, not {spec!r:.60}")
    if "skills" not in spec:
        raise InvalidRequestError("no skills; give the skills the task needs")
    options = {key: value for key, value in spec.items() if key not in _SUBMIT_ARGS}
    return SubmitTask(
        task_id=_task_id(spec.get("task_id")),
        spec=_spec(spec["skills"], spec.get("payload"), options),
        submitted_by=spec.get("submitted_by", ""),
        parent_task_id=spec.get("parent_task_id") or parent_task_id,
        broadcast_id=spec.get("broadcast_id"),
    )


def _task_id(task_id: str | None) -> str:
    return validate_token(uuid.uuid4().hex if task_id is None else task_id, what="task id")


def _spec(
    skills: str | list[str] | tuple[str, ...], payload: Any, options: dict[str, Any]
) -> TaskSpec:
    unknown = sorted(set(options) - set(TaskSpec.model_fields))
    if unknown:
        known = ", ".join(sorted(set(TaskSpec.model_fields) - {"skills", "payload"}))
        raise InvalidRequestError(
            f"unknown task option(s) {', '.join(unknown)}; the options are {known}"
        )
    names = (skills,) if isinstance(skills, str) else tuple(skills)
    # Ids become subject tokens: refuse a bad one here with the one-line error.
    for name in names:
        validate_token(name, what="skill name")
    if options.get("node_id") is not None:
        validate_token(options["node_id"], what="node id")
    return TaskSpec(skills=names, payload=payload, **options)


def connect(
    url: str | None = None,
    *,
    creds: str | None = None,
    tls_ca: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    project: bool = True,
) -> Cluster:
    """A Cluster for ``url`` (else ``EVENTSRC_NATS_URL``, ``./.eventsrc/url``, default).

    ``creds`` and the TLS files (the CA of the servers' certificates; a client
    certificate and key for mutual TLS) default to ``EVENTSRC_NATS_CREDS``,
    ``EVENTSRC_TLS_CA``, ``EVENTSRC_TLS_CERT`` and ``EVENTSRC_TLS_KEY``.
    ``project=False`` skips the local projection (no registry reads): what one-shot
    commands use, so they do not replay the whole history.
    """
    servers = resolve_servers(url, os.environ)
    given = {"creds": creds, "tls_ca": tls_ca, "tls_cert": tls_cert, "tls_key": tls_key}
    options = nats_options(connection_config(given, os.environ), servers, "eventsrc-client")
    return Cluster(options, project=project)

"""The week-5 messaging API, built on the event store and the coordinator.

``TaskMessaging`` sends tasks as commands (pinned to a node, or one per eligible node
for a broadcast) and gathers results by following the tasks' events; handlers
registered on it run on this node's agent. ``TaskRequestResponse`` is plain NATS
request/reply to a node for quick questions — deliberately not event-sourced.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from eventsrc.client import Cluster
from eventsrc.commands.views import TaskInfo
from eventsrc.errors import EventsrcError, InvalidRequestError

# Raised by TaskRequestResponse.request; importable from here as documented.
from eventsrc.errors import RequestTimeoutError as RequestTimeoutError
from eventsrc.events import Heartbeat, validate_token
from eventsrc.events.subjects import node_rpc_subject
from eventsrc.node.agent import NodeAgent
from eventsrc.node.attempts import TaskHandler
from eventsrc.node.host import envelope
from eventsrc.projections.state import NodeState
from eventsrc.store import Connection
from eventsrc.store.transport import Answering, answer, ask

log = logging.getLogger(__name__)

ResultCallback = Callable[[TaskInfo], Awaitable[None] | None]
RequestHandler = Callable[[Any], Awaitable[Any]]


class TaskMessaging:
    """Send tasks to nodes and gather results; register this node's task handlers."""

    def __init__(self, cluster: Cluster, *, node: NodeAgent | None = None) -> None:
        self._cluster = cluster
        self._node = node
        self._watchers: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Nothing to open beyond the cluster connection (kept for the week-5 API)."""

    async def stop(self) -> None:
        """Stop result watchers; idempotent."""
        watchers, self._watchers = self._watchers, set()
        for watcher in watchers:
            watcher.cancel()
        if watchers:
            await asyncio.wait(watchers, timeout=5)

    def register_task_handler(self, task_type: str, handler: TaskHandler) -> None:
        """Run ``handler(task)`` on this node for tasks whose ``task_type`` matches."""
        self._require_node().handlers[task_type] = handler

    def unregister_task_handler(self, task_type: str) -> None:
        self._require_node().handlers.pop(task_type, None)

    def _require_node(self) -> NodeAgent:
        if self._node is None:
            raise InvalidRequestError("task handlers need a node: TaskMessaging(cluster, node=...)")
        return self._node

    async def send_task(
        self, task: dict[str, Any], target_node: str, timeout: float = 30.0
    ) -> TaskInfo:
        """Submit ``task`` pinned to ``target_node`` and wait for its result."""
        info = await self._submit(task, node_id=validate_token(target_node, what="node id"))
        return await self.wait_for_result(info.task_id, timeout)

    async def broadcast_task(
        self, task: dict[str, Any], timeout: float = 30.0
    ) -> dict[str, TaskInfo]:
        """One task per live node holding the task's skills, results gathered by node."""
        skills = set(_skills_of(task))
        nodes = (await self._cluster.api.call("nodes"))["nodes"]
        targets = sorted(
            n["node_id"]
            for n in nodes
            if n["state"] == NodeState.ALIVE and skills <= set(n["skills"])
        )
        broadcast_id = uuid.uuid4().hex
        infos = [
            await self._submit(
                task,
                node_id=node_id,
                broadcast_id=broadcast_id,
                task_id=f"{broadcast_id}-{node_id}",
            )
            for node_id in targets
        ]
        results = await asyncio.gather(
            *(self.wait_for_result(info.task_id, timeout) for info in infos)
        )
        return {info.node_id or target: info for target, info in zip(targets, results, strict=True)}

    def register_result_callback(
        self, task_id: str, callback: ResultCallback, timeout: float = 3600.0
    ) -> None:
        """Call ``callback(result)`` once the task ends (or with its state at ``timeout``)."""

        async def watch() -> None:
            info = await self.wait_for_result(task_id, timeout)
            outcome = callback(info)
            if asyncio.iscoroutine(outcome):
                await outcome

        watcher = asyncio.create_task(watch(), name=f"result-{task_id}")
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)

    async def wait_for_result(self, task_id: str, timeout: float = 30.0) -> TaskInfo:
        """The task once it ends, or its state when ``timeout`` passes."""
        return await self._cluster.wait(task_id, timeout=timeout)

    async def send_heartbeat(
        self,
        cpu_usage: float,
        memory_usage: float,
        running_tasks: int,
        skills: list[str] | tuple[str, ...],
    ) -> None:
        """An explicit heartbeat for this node (the agent also sends its own)."""
        node = self._require_node()
        await self._cluster.store.append(
            Heartbeat(
                **envelope(node.producer),
                node_id=node.node_id,
                incarnation=node.incarnation,
                cpu_percent=cpu_usage,
                memory_percent=memory_usage,
                running_tasks=running_tasks,
                capacity=node.capacity,
                skills=tuple(skills),
            )
        )

    async def _submit(self, task: dict[str, Any], **extra: Any) -> TaskInfo:
        options = {
            k: v for k, v in task.items() if k not in {"skills", "skill", "payload", "task_id"}
        }
        return await self._cluster.submit(
            _skills_of(task),
            task.get("payload"),
            task_id=extra.pop("task_id", None) or task.get("task_id"),
            **{**options, **extra},
        )


def _skills_of(task: dict[str, Any]) -> tuple[str, ...]:
    skills = task.get("skills") or task.get("skill")
    if isinstance(skills, str):
        return (skills,)
    if not skills:
        raise InvalidRequestError("a task needs 'skills' (a list of skill names)")
    return tuple(skills)


class TaskRequestResponse:
    """Plain NATS request/reply between nodes: quick questions, not event-sourced."""

    def __init__(self, nc: Connection, node_id: str) -> None:
        self._nc = nc
        self._node_id = validate_token(node_id, what="node id")
        self._subs: dict[str, Answering] = {}

    async def register_handler(self, action: str, handler: RequestHandler) -> None:
        """Answer ``action`` requests to this node with ``await handler(data)``."""
        validate_token(action, what="action")

        async def respond(body: bytes) -> bytes:
            try:
                data = orjson.loads(body) if body else None
                reply: dict[str, Any] = {"ok": True, "data": await handler(data)}
            except Exception as err:
                reply = {"ok": False, "error": f"{type(err).__name__}: {err}"}
            return orjson.dumps(reply, default=str)

        old = self._subs.pop(action, None)
        if old is not None:
            await old.close()
        self._subs[action] = await answer(
            self._nc, node_rpc_subject(self._node_id, action), respond
        )

    async def request(
        self, target_node: str, action: str, data: Any = None, timeout: float = 5
    ) -> Any:
        """Ask ``target_node``; raises RequestTimeoutError when it does not answer."""
        subject = node_rpc_subject(
            validate_token(target_node, what="node id"), validate_token(action, what="action")
        )
        try:
            body = await ask(self._nc, subject, orjson.dumps(data), timeout=timeout)
        except RequestTimeoutError as err:
            raise RequestTimeoutError(
                f"node {target_node} did not answer {action!r} within {timeout:g} s "
                f"(is it running and does it handle {action!r}?)"
            ) from err
        reply = orjson.loads(body)
        if not reply.get("ok"):
            raise EventsrcError(f"node {target_node} failed {action!r}: {reply.get('error')}")
        return reply.get("data")

    async def close(self) -> None:
        subs, self._subs = self._subs, {}
        for sub in subs.values():
            await sub.close()

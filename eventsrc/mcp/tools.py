"""What the MCP tools do, over one lazily opened cluster connection.

Every method returns plain JSON-able data (or text) and raises ``EventsrcError`` with a
one-line message for anything that goes wrong; the server turns those into tool errors.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from eventsrc.client import Cluster
from eventsrc.commands.views import TaskInfo
from eventsrc.errors import NotPermittedError
from eventsrc.events import validate_token
from eventsrc.store.credentials import ROLE_READER
from replay_tools import tree

MAX_WAIT_S = 600.0
"""The longest one run_task or wait_task call waits; past it the task id comes back."""
DEFAULT_WAIT_S = 30.0
"""Below the 60 s an MCP client (OpenClaw among them) waits for one call by default."""


class ClusterTools:
    """The tools' behaviour; ``connect`` makes the (not yet opened) Cluster.

    The connection is opened on the first call and kept (it reconnects by itself once
    up); a cluster that cannot be reached makes that call fail, the next one tries again.
    ``parent_task_id`` is given to every submission: set when this server runs inside a
    task on a node, so what it submits is a sub-task of that task.
    """

    def __init__(
        self, connect: Callable[[], Cluster], *, parent_task_id: str | None = None
    ) -> None:
        self._connect = connect
        self._cluster: Cluster | None = None
        self._lock = asyncio.Lock()
        self._parent = parent_task_id

    async def cluster(self) -> Cluster:
        async with self._lock:
            if self._cluster is None:
                cluster = self._connect()
                await cluster.__aenter__()
                self._cluster = cluster
            return self._cluster

    async def close(self) -> None:
        """Disconnect; idempotent."""
        async with self._lock:
            cluster, self._cluster = self._cluster, None
        if cluster is not None:
            await cluster.close()

    async def list_skills(self) -> dict[str, Any]:
        data: dict[str, Any] = await (await self.cluster()).api.call("skills")
        return data

    async def list_nodes(self) -> dict[str, Any]:
        data: dict[str, Any] = await (await self.cluster()).api.call("nodes")
        return data

    async def status(self) -> dict[str, Any]:
        data: dict[str, Any] = await (await self.cluster()).api.call("status")
        return data

    async def run_task(
        self, skills: list[str], payload: Any, *, wait_s: float, **options: Any
    ) -> dict[str, Any]:
        cluster = await self._submitter("run_task")
        task = await cluster.run(
            skills,
            payload,
            timeout=_bounded(wait_s),
            submitted_by="mcp",
            parent_task_id=self._parent,
            **_options(options),
        )
        return _task(task, waited=wait_s)

    async def submit_task(self, skills: list[str], payload: Any, **options: Any) -> dict[str, Any]:
        cluster = await self._submitter("submit_task")
        task = await cluster.submit(
            skills, payload, submitted_by="mcp", parent_task_id=self._parent, **_options(options)
        )
        return _task(task)

    async def get_task(self, task_id: str) -> dict[str, Any]:
        return _task(await (await self.cluster()).get(task_id))

    async def wait_task(self, task_id: str, wait_s: float) -> dict[str, Any]:
        task = await (await self.cluster()).wait(task_id, _bounded(wait_s))
        return _task(task, waited=wait_s)

    async def cancel_task(self, task_id: str, reason: str) -> dict[str, Any]:
        cluster = await self._submitter("cancel_task")
        return _task(await cluster.cancel(task_id, reason or "cancelled by an MCP client"))

    async def audit_task(self, task_id: str) -> str:
        task_id = validate_token(task_id, what="task id")
        store = (await self.cluster()).store
        return await tree.task_tree_text(store, task_id)

    async def _submitter(self, tool: str) -> Cluster:
        cluster = await self.cluster()
        if cluster.role == ROLE_READER:
            raise NotPermittedError(
                f"{tool} needs submitter credentials; this server runs with reader "
                f"credentials (read-only): restart it with --creds DIR/creds/submitter.nk"
            )
        return cluster


def _bounded(wait_s: float) -> float:
    return min(max(wait_s, 0.0), MAX_WAIT_S)


def _options(options: dict[str, Any]) -> dict[str, Any]:
    """TaskSpec fields from the tool arguments, the unset ones left out."""
    return {key: value for key, value in options.items() if value is not None}


def _task(task: TaskInfo, *, waited: float | None = None) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(task.model_dump_json())
    data["done"] = task.terminal
    if waited is not None and not task.terminal:
        data["note"] = (
            f"still {task.state} after waiting {_bounded(waited):g} s; call wait_task or "
            f"get_task with task_id {task.task_id} later"
        )
    return data

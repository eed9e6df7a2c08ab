"""The MCP server: tool schemas and descriptions, the status resource, the transports.

A tool that fails answers with a tool error carrying the one-line message (what is
wrong, what to do); the server itself keeps serving.
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypeVar

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field

import eventsrc
from eventsrc.errors import EventsrcError, InvalidRequestError
from eventsrc.mcp.tools import DEFAULT_WAIT_S, MAX_WAIT_S, ClusterTools
from eventsrc.runtime import parse_host_port

T = TypeVar("T")

STATUS_URI = "eventsrc://cluster/status"

READS = ToolAnnotations(read_only_hint=True, open_world_hint=True)
WRITES = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=True)
"""Hints for clients that gate tool calls: reading tools change nothing; the others add
a task (or stop one) and never delete data."""

INSTRUCTIONS = """\
eventsrc runs work on a cluster of machines (nodes), each advertising the skills it can
run. Hand a task to the cluster when it needs a skill or a machine you do not have here,
or should run somewhere else. list_skills shows which nodes hold each skill and what the
others lack; run_task runs a task and returns its result; for long tasks use submit_task
and wait_task/get_task with the task id. The built-in skill `python` takes the payload
{"code": "<python source>"} and returns stdout, stderr and exit_code."""

Skills = Annotated[
    list[str],
    Field(
        min_length=1,
        description='skills the task needs, e.g. ["python"]; one node must hold all',
    ),
]
Payload = Annotated[
    dict[str, Any] | None,
    Field(description='the task input as a JSON object; for `python`: {"code": "print(6*7)"}'),
]
TaskId = Annotated[str, Field(description="the task id returned by run_task or submit_task")]
Priority = Annotated[int, Field(description="higher runs first among waiting tasks")]
Labels = Annotated[
    dict[str, str] | None, Field(description='labels a node must carry, e.g. {"zone": "a"}')
]
NodeId = Annotated[str | None, Field(description="run only on this node")]
RunTimeout = Annotated[
    float | None, Field(gt=0, description="seconds one attempt may run (cluster default 300)")
]
QueueTimeout = Annotated[
    float | None,
    Field(ge=0, description="seconds it may wait for a free node; 0 = fail at once if none"),
]
MaxAttempts = Annotated[int | None, Field(ge=1, description="attempts for retryable failures")]
TaskIdOption = Annotated[
    str | None, Field(description="your own id for the task (resubmitting it is idempotent)")
]
After = Annotated[
    str | None,
    Field(
        description="start once this task succeeded, with its result in the payload's "
        "'after' key (ends cancelled if that task fails or is cancelled)"
    ),
]
DelayS = Annotated[
    float | None, Field(ge=0, description="start no earlier than this many seconds from now")
]
LimitKey = Annotated[
    str | None,
    Field(description="held by the cluster-wide limit of this key (eventsrc limit set KEY)"),
]
WaitS = Annotated[
    float,
    Field(
        ge=0,
        le=MAX_WAIT_S,
        description=f"seconds to wait for the result (at most {MAX_WAIT_S:g}); if the task "
        "is not done by then, its id and state come back",
    ),
]


async def _guarded(call: Awaitable[T]) -> T:
    """A user-facing failure as a tool error with its one line."""
    try:
        return await call
    except EventsrcError as err:
        raise ToolError(str(err)) from err


def build_server(tools: ClusterTools) -> MCPServer[Any]:
    """The MCP server over ``tools``; closes the cluster connection when it stops."""

    @asynccontextmanager
    async def lifespan(_: MCPServer[Any]) -> AsyncIterator[None]:
        try:
            yield None
        finally:
            await tools.close()

    server: MCPServer[Any] = MCPServer(
        "eventsrc",
        title="eventsrc cluster",
        instructions=INSTRUCTIONS,
        version=eventsrc.__version__,
        lifespan=lifespan,
        log_level="WARNING",
    )

    @server.tool(annotations=READS)
    async def list_skills() -> dict[str, Any]:
        """List the cluster's skills. Per skill: `holders` (nodes that can run it now),
        `would_be_holders` (nodes that found it but lack something, with `lacks`: bins,
        env, config or os to install), dependencies and category. Use it to find out
        whether the cluster can run a skill before run_task."""
        return await _guarded(tools.list_skills())

    @server.tool(annotations=READS)
    async def list_nodes() -> dict[str, Any]:
        """List the cluster's nodes: state (alive, draining, expired, left), running
        tasks against capacity, skills, labels, cpu and memory load, last heartbeat."""
        return await _guarded(tools.list_nodes())

    @server.tool(annotations=WRITES)
    async def run_task(
        skills: Skills,
        payload: Payload = None,
        wait_s: WaitS = DEFAULT_WAIT_S,
        priority: Priority = 0,
        labels: Labels = None,
        node_id: NodeId = None,
        run_timeout_s: RunTimeout = None,
        queue_timeout_s: QueueTimeout = None,
        max_attempts: MaxAttempts = None,
        task_id: TaskIdOption = None,
        after: After = None,
        delay_s: DelayS = None,
        limit_key: LimitKey = None,
    ) -> dict[str, Any]:
        """Run a task on the cluster and wait for its result. The cluster picks a node
        holding every skill. Returns the task: `state` (succeeded, failed, rejected,
        timed_out, ... or still queued/running when `done` is false), `node_id`,
        `result` (for `python`: stdout, stderr, exit_code), `error` and `reason`. When
        it is not done within wait_s, call wait_task with the returned task_id."""
        return await _guarded(
            tools.run_task(
                skills,
                payload,
                wait_s=wait_s,
                priority=priority,
                labels=labels,
                node_id=node_id,
                run_timeout_s=run_timeout_s,
                queue_timeout_s=queue_timeout_s,
                max_attempts=max_attempts,
                task_id=task_id,
                after=after,
                delay_s=delay_s,
                limit_key=limit_key,
            )
        )

    @server.tool(annotations=WRITES)
    async def submit_task(
        skills: Skills,
        payload: Payload = None,
        priority: Priority = 0,
        labels: Labels = None,
        node_id: NodeId = None,
        run_timeout_s: RunTimeout = None,
        queue_timeout_s: QueueTimeout = None,
        max_attempts: MaxAttempts = None,
        task_id: TaskIdOption = None,
        after: After = None,
        delay_s: DelayS = None,
        limit_key: LimitKey = None,
    ) -> dict[str, Any]:
        """Submit a task without waiting; returns its `task_id` and first state
        (assigned, queued with the reason, or rejected naming missing skills). Follow it
        with wait_task or get_task."""
        return await _guarded(
            tools.submit_task(
                skills,
                payload,
                priority=priority,
                labels=labels,
                node_id=node_id,
                run_timeout_s=run_timeout_s,
                queue_timeout_s=queue_timeout_s,
                max_attempts=max_attempts,
                task_id=task_id,
                after=after,
                delay_s=delay_s,
                limit_key=limit_key,
            )
        )

    @server.tool(annotations=READS)
    async def get_task(task_id: TaskId) -> dict[str, Any]:
        """A task's current state, node, attempts, result or error, and why it waits."""
        return await _guarded(tools.get_task(task_id))

    @server.tool(annotations=READS)
    async def wait_task(task_id: TaskId, wait_s: WaitS = DEFAULT_WAIT_S) -> dict[str, Any]:
        """Wait until a task ends (or wait_s passes) and return it as get_task does."""
        return await _guarded(tools.wait_task(task_id, wait_s))

    @server.tool(annotations=WRITES)
    async def cancel_task(
        task_id: TaskId,
        reason: Annotated[str, Field(max_length=500, description="why, kept in the log")] = "",
    ) -> dict[str, Any]:
        """Cancel a task that has not ended; a running attempt is stopped on its node."""
        return await _guarded(tools.cancel_task(task_id, reason))

    @server.tool(annotations=READS)
    async def audit_task(task_id: TaskId) -> str:
        """The task's timeline as text: every event (submitted, assigned, started,
        succeeded or failed, retries, requeues) with time, producer and cause; and the
        tree of tasks it belongs to (its parent task and the sub-tasks it started)."""
        return await _guarded(tools.audit_task(task_id))

    @server.resource(
        STATUS_URI,
        name="cluster-status",
        description="leader, epoch, node and task counts, problems",
        mime_type="application/json",
    )
    async def cluster_status() -> str:
        return json.dumps(await _guarded(tools.status()))

    return server


def parse_http(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (port 0 picks a free one); InvalidRequestError otherwise."""
    return parse_host_port(text, flag="--http")


async def serve(server: MCPServer[Any], http: tuple[str, int] | None) -> None:
    """Serve on stdio, or streamable HTTP at ``http://HOST:PORT/mcp`` (printed on stdout
    once listening, with the port a 0 picked)."""
    if http is None:
        await server.run_stdio_async()
        return
    import uvicorn

    host, port = http
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise InvalidRequestError(f"--http {host}:{port}: cannot listen there ({err})") from err
    bound = sock.getsockname()[1]
    app = server.streamable_http_app(host=host)
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    where = f"[{host}]" if family == socket.AF_INET6 else host
    print(f"eventsrc mcp: serving http://{where}:{bound}/mcp", flush=True)
    try:
        await uvicorn.Server(config).serve(sockets=[sock])
    finally:
        sock.close()

"""Which task the running code works for, so what it submits becomes a sub-task.

On a node, each attempt runs with ``running_task`` set to its task id (a context
variable: concurrent attempts each see their own), and the child processes it starts
get the id in ``EVENTSRC_TASK_ID``. ``Cluster.submit``/``run`` take the id as the
default ``parent_task_id``, and so do the ``eventsrc`` programs from the environment:
a Python handler, a ``run`` command or an OpenClaw agent turn that hands work to the
cluster makes sub-tasks without saying so.

MCP clients start stdio servers with a minimal environment (OpenClaw and the MCP SDKs
pass HOME, PATH and a few more), so ``eventsrc mcp`` inside an agent turn would not see
the variable: ``inherited_task_id`` also looks in the environments of the processes
above this one (the agent the node started has it).
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from typing import Final

import psutil

TASK_ID_ENV: Final = "EVENTSRC_TASK_ID"
"""Set by the node in the environment of the processes a task's attempt starts."""

running_task: ContextVar[str | None] = ContextVar("eventsrc_running_task", default=None)
"""The id of the task whose attempt this code runs in, or None."""


MAX_ANCESTORS = 16
"""How far up the process tree ``inherited_task_id`` looks."""


def inherited_task_id(env: Mapping[str, str]) -> str | None:
    """The task this process works for: ``EVENTSRC_TASK_ID`` in ``env``, else in the
    nearest ancestor process whose environment this user may read, else None."""
    if env.get(TASK_ID_ENV):
        return env[TASK_ID_ENV]
    try:
        ancestors = psutil.Process().parents()[:MAX_ANCESTORS]
    except psutil.Error:
        return None
    for process in ancestors:
        try:
            value = process.environ().get(TASK_ID_ENV)
        except psutil.Error:  # another user's process, or gone meanwhile
            continue
        if value:
            return value
    return None

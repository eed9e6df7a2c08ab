"""Which task the running code works for, so what it submits becomes a sub-task.

On a node, each attempt runs with ``running_task`` set to its task id (a context
variable: concurrent attempts each see their own), and the child processes it starts
get the id in ``EVENTSRC_TASK_ID``. ``Cluster.submit``/``run`` take the id as the
default ``parent_task_id``, and so do the ``eventsrc`` programs from the environment:
a Python handler, a ``run`` command or an OpenClaw agent turn that hands work to the
cluster makes sub-tasks without saying so.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Final

TASK_ID_ENV: Final = "EVENTSRC_TASK_ID"
"""Set by the node in the environment of the processes a task's attempt starts."""

running_task: ContextVar[str | None] = ContextVar("eventsrc_running_task", default=None)
"""The id of the task whose attempt this code runs in, or None."""

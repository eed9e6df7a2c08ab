"""The week-5 ``communication.task_messaging`` names (defined in ``eventsrc.node.messaging``)."""

from __future__ import annotations

from eventsrc.node.messaging import TaskMessaging, TaskRequestResponse

__all__ = ["TaskMessaging", "TaskRequestResponse"]

"""Recorded histories for the replay_tools tests, built from the projection builders."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from eventsrc.events import Event, Heartbeat, NodeExpired
from tests.factories import envelope
from tests.projections.builders import (
    assigned,
    coord,
    instance,
    joined,
    leader,
    requeued,
    skill_registered,
    started,
    submitted,
    succeeded,
)


def caused(event: Event, by: Event) -> Event:
    """``event`` with ``by`` as its causation."""
    return event.model_copy(update={"causation_id": by.event_id})


def heartbeat(node_id: str, incarnation: str = "i1", **load: Any) -> Heartbeat:
    return Heartbeat(
        **envelope(f"node:{node_id}"), node_id=node_id, incarnation=incarnation, **load
    )


def expired(
    node_id: str,
    *,
    swept_at: datetime,
    stale_after: float = 2.0,
    last_heartbeat_at: datetime | None = None,
    incarnation: str = "i1",
) -> NodeExpired:
    return NodeExpired(
        **coord(),
        node_id=node_id,
        incarnation=incarnation,
        last_heartbeat_at=last_heartbeat_at,
        swept_at=swept_at,
        stale_after_s=stale_after,
    )


def cluster_start() -> list[Event]:
    """A leader, the python skill, and nodes n1 and n2 holding it."""
    return [
        leader(1),
        skill_registered("python"),
        joined("n1"),
        instance("python", "n1"),
        joined("n2"),
        instance("python", "n2"),
    ]


def requeued_task(task_id: str = "t1", *, expiry: NodeExpired) -> list[Event]:
    """t1 runs on n1, n1 expires, t1 is requeued and succeeds on n2; n1's late result."""
    submit = submitted(task_id)
    first = caused(assigned(task_id, "n1"), submit)
    requeue = requeued(task_id, "n1", attempt=1, reason="node n1 expired")
    second = caused(assigned(task_id, "n2", attempt=2), requeue)
    return [
        submit,
        first,
        caused(started(task_id, "n1"), first),
        expiry,
        requeue,
        second,
        caused(started(task_id, "n2", attempt=2), second),
        caused(succeeded(task_id, "n2", attempt=2, result={"answer": 42}), second),
        succeeded(task_id, "n1", attempt=1, result="too late"),
    ]

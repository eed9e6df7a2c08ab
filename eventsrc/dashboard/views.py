"""What the dashboard shows, built from a ClusterState with the command API's own views
(``eventsrc.commands.views``); pure, so a live state and a time-travelled one read alike."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel

from eventsrc.commands.views import (
    list_nodes,
    list_skill_infos,
    node_info,
    status_info,
    task_info,
)
from eventsrc.events import Event, TaskAssigned
from eventsrc.projections.state import ClusterState, TaskState, TaskView

THROUGHPUT_MINUTES = 10
WAITING_STATES = frozenset({TaskState.QUEUED})


def _json(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json")


def waiting(state: ClusterState) -> list[TaskView]:
    """Tasks waiting for a node."""
    return [task for task in state.tasks.values() if task.state in WAITING_STATES]


def oldest_waiting_s(state: ClusterState, now: datetime) -> float:
    """Seconds the oldest waiting task has waited (0 when none waits)."""
    times = [t.queued_since or t.submitted_at for t in waiting(state)]
    known = [at for at in times if at is not None]
    return max(0.0, (now - min(known)).total_seconds()) if known else 0.0


def throughput(state: ClusterState, now: datetime) -> list[dict[str, Any]]:
    """Tasks ended per minute over the last minutes, oldest first."""
    start = now.replace(second=0, microsecond=0) - timedelta(minutes=THROUGHPUT_MINUTES - 1)
    counts: Counter[int] = Counter()
    for task in state.tasks.values():
        if task.finished_at is not None and task.finished_at >= start:
            counts[int((task.finished_at - start).total_seconds() // 60)] += 1
    return [
        {"minute": (start + timedelta(minutes=i)).isoformat(), "ended": counts[i]}
        for i in range(THROUGHPUT_MINUTES)
    ]


def overview(state: ClusterState, *, now: datetime | None = None) -> dict[str, Any]:
    """The overview page: leader, epoch, counts, problems, waiting, throughput."""
    now = now or datetime.now(UTC)
    info = _json(status_info(state))
    info["queue_depth"] = len(waiting(state))
    info["oldest_waiting_s"] = oldest_waiting_s(state, now)
    info["throughput"] = throughput(state, now)
    info["live_nodes"] = sorted(
        node.node_id for node in list_nodes(state) if node.state in ("alive", "draining")
    )
    return info


def nodes(state: ClusterState, *, now: datetime | None = None) -> list[dict[str, Any]]:
    """Every node, with the age of its newest heartbeat."""
    now = now or datetime.now(UTC)
    shown = []
    for node in list_nodes(state):
        row = _json(node)
        at = node.last_heartbeat_at
        row["heartbeat_age_s"] = (now - at).total_seconds() if at is not None else None
        shown.append(row)
    return shown


def node(state: ClusterState, node_id: str, *, now: datetime | None = None) -> dict[str, Any]:
    """One node: its view and the tasks in memory it ran or runs (KeyError if unknown)."""
    now = now or datetime.now(UTC)
    view = state.nodes[node_id]
    row = _json(node_info(state, view))
    at = state.liveness[node_id].last_at if node_id in state.liveness else None
    row["heartbeat_age_s"] = (now - at).total_seconds() if at is not None else None
    row["joined_at"] = view.joined_at.isoformat() if view.joined_at else None
    row["left_at"] = view.left_at.isoformat() if view.left_at else None
    row["platform"] = view.platform
    row["eventsrc_version"] = view.eventsrc_version
    row["tasks"] = [
        _json(task_info(task)) for task in reversed(state.tasks.values()) if task.node_id == node_id
    ][:200]
    return row


def skills(state: ClusterState) -> list[dict[str, Any]]:
    return [_json(skill) for skill in list_skill_infos(state)]


def tasks(
    state: ClusterState,
    *,
    states: frozenset[str] = frozenset(),
    skill: str | None = None,
    node_id: str | None = None,
    limit: int = 500,
) -> list[dict[str, Any]]:
    """Tasks in memory, newest first, filtered by state, skill and node."""
    shown = []
    for task in reversed(state.tasks.values()):
        if states and task.state not in states:
            continue
        if skill is not None and skill not in task.spec.skills:
            continue
        if node_id is not None and task.node_id != node_id:
            continue
        shown.append(_json(task_info(task)))
        if len(shown) >= limit:
            break
    return shown


def task_states() -> list[str]:
    """The task states, in lifecycle order (the filter's choices)."""
    return [state.value for state in TaskState]


def timeline_entry(seq: int, time: datetime, event: Event) -> dict[str, Any]:
    """One event of a task's timeline: what happened, when, and its fields."""
    body = event.model_dump(mode="json")
    entry: dict[str, Any] = {
        "seq": seq,
        "time": time.isoformat(),
        "type": event.type,
        "event_id": event.event_id,
        "node_id": body.get("node_id"),
        "attempt": body.get("attempt"),
        "causation_id": body.get("causation_id"),
        "producer": body.get("producer"),
        "detail": {
            key: value
            for key, value in body.items()
            if key
            not in (
                "type",
                "event_id",
                "task_id",
                "node_id",
                "attempt",
                "causation_id",
                "correlation_id",
                "producer",
                "epoch",
                "time",
                "schema_version",
                "candidates",
            )
        },
    }
    if isinstance(event, TaskAssigned):
        entry["candidates"] = [_json(c) for c in event.candidates]
    return entry

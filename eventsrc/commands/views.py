"""What the command API and the CLI show: plain models built from the state, pure."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from eventsrc.events import AgentRun, SkillMetadata
from eventsrc.projections.state import (
    MEMBER_STATES,
    TERMINAL_STATES,
    ClusterState,
    NodeView,
    TaskView,
)
from eventsrc.projections.tasks import not_before


class View(BaseModel):
    model_config = ConfigDict(frozen=True)


class TaskInfo(View):
    task_id: str
    state: str
    node_id: str | None
    attempts: int
    result: Any = None
    error: str | None = None
    agent: AgentRun | None = None
    reason: str = ""
    skills: tuple[str, ...] = ()
    priority: int = 0
    submitted_at: datetime | None = None
    finished_at: datetime | None = None
    missing_skills: tuple[str, ...] = ()
    would_qualify: tuple[str, ...] = ()
    parent_task_id: str | None = None
    broadcast_id: str | None = None
    # The schedule that started the task, and the occurrence it fired for.
    schedule: str | None = None
    occurrence: datetime | None = None
    # Chains, delays and limits (see docs/concepts.md): what it waits for, if anything.
    after: str | None = None
    not_before: datetime | None = None
    deadline: datetime | None = None
    limit_key: str | None = None

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES


class NodeInfo(View):
    node_id: str
    state: str
    incarnation: str
    capacity: int
    running: int
    labels: dict[str, str]
    skills: tuple[str, ...]
    unavailable: tuple[str, ...]
    # Skills found on the node but not runnable there -> what it lacks for each.
    cannot_run: dict[str, tuple[str, ...]]
    drained: bool
    last_heartbeat_at: datetime | None
    cpu_percent: float | None
    memory_percent: float | None
    success_rate: float
    hostname: str


class Holder(View):
    node_id: str
    lacks: tuple[str, ...] = ()
    install: str = ""


class SkillInfo(View):
    name: str
    category: str
    version: str
    description: str
    dependencies: tuple[str, ...]
    holders: tuple[str, ...]
    would_be_holders: tuple[Holder, ...]


class StatusInfo(View):
    leader: str | None
    epoch: int
    last_seq: int
    nodes: dict[str, int]
    tasks: dict[str, int]
    skills: int
    problems: dict[str, int]
    recent_problems: tuple[str, ...]
    # Filled in by the coordinator that answers (None or empty where nobody asked the
    # servers, or they did not say): which NATS server leads each stream (and the lease
    # bucket), the events stream's last sequence (minus last_seq: the projection's lag)
    # and the coordinators standing by.
    stream_leaders: dict[str, str] = {}
    stream_seq: int | None = None
    standbys: tuple[str, ...] | None = None


class SubmittedTask(View):
    """A task of a batch submission as it stands once stored: the short form."""

    task_id: str
    state: str
    node_id: str | None = None
    reason: str = ""


def submitted_task(task: TaskView) -> SubmittedTask:
    return SubmittedTask(
        task_id=task.task_id, state=task.state, node_id=task.node_id, reason=task.reason
    )


def task_info(task: TaskView) -> TaskInfo:
    """The public view of a task."""
    return TaskInfo(
        task_id=task.task_id,
        state=task.state,
        node_id=task.node_id,
        attempts=task.attempt,
        result=task.result,
        error=task.error,
        agent=task.agent,
        reason=task.reason,
        skills=task.spec.skills,
        priority=task.spec.priority,
        submitted_at=task.submitted_at,
        finished_at=task.finished_at,
        missing_skills=task.missing_skills,
        would_qualify=task.would_qualify,
        parent_task_id=task.parent_task_id,
        broadcast_id=task.broadcast_id,
        schedule=task.schedule,
        occurrence=task.occurrence,
        after=task.spec.after,
        not_before=not_before(task.spec, task.submitted_at) if task.submitted_at else None,
        deadline=task.spec.deadline,
        limit_key=task.spec.limit_key,
    )


def node_info(state: ClusterState, node: NodeView) -> NodeInfo:
    """The public view of a node, with its soft heartbeat state."""
    liveness = state.liveness.get(node.node_id)
    return NodeInfo(
        node_id=node.node_id,
        state=node.state,
        incarnation=node.incarnation,
        capacity=node.capacity,
        running=len(node.running),
        labels=node.labels,
        skills=tuple(sorted(state.node_skills.get(node.node_id, ()))),
        unavailable=tuple(u.name for u in node.unavailable),
        cannot_run={u.name: u.lacks() for u in node.unavailable},
        drained=node.drain_in_force,
        last_heartbeat_at=liveness.last_at if liveness else None,
        cpu_percent=liveness.cpu_percent if liveness else None,
        memory_percent=liveness.memory_percent if liveness else None,
        success_rate=node.success_rate,
        hostname=node.hostname,
    )


def list_tasks(state: ClusterState, *, include_finished: bool, limit: int) -> list[TaskInfo]:
    """Tasks in memory, newest first (unfinished only unless asked)."""
    tasks = [t for t in state.tasks.values() if include_finished or not t.terminal]
    tasks.reverse()
    return [task_info(t) for t in tasks[:limit]]


def list_nodes(state: ClusterState) -> list[NodeInfo]:
    return [node_info(state, node) for _, node in sorted(state.nodes.items())]


def list_skill_infos(state: ClusterState) -> list[SkillInfo]:
    """Every skill in the catalog or reported by a node: who holds it, who would with what."""
    infos: list[SkillInfo] = []
    would: dict[str, list[Holder]] = {}
    found: dict[str, SkillMetadata] = {}
    for node_id, node in sorted(state.nodes.items()):
        if node.state not in MEMBER_STATES:
            continue
        for skill in node.unavailable:
            holder = Holder(node_id=node_id, lacks=skill.lacks(), install=skill.install_text())
            would.setdefault(skill.name, []).append(holder)
            found.setdefault(
                skill.name, SkillMetadata(name=skill.name, description=skill.description)
            )
    for name, meta in sorted({**found, **state.skills}.items()):
        infos.append(
            SkillInfo(
                name=name,
                category=meta.category.value,
                version=meta.version,
                description=meta.description,
                dependencies=meta.dependencies,
                holders=tuple(state.active_instance_nodes(name)),
                would_be_holders=tuple(would.get(name, ())),
            )
        )
    return infos


def status_info(state: ClusterState) -> StatusInfo:
    problems, soft = state.problems, state.heartbeat_problems
    return StatusInfo(
        leader=state.leader,
        epoch=state.epoch,
        last_seq=state.last_seq,
        nodes=dict(sorted(Counter(n.state for n in state.nodes.values()).items())),
        tasks=dict(sorted(Counter(t.state for t in state.tasks.values()).items())),
        skills=len(state.skills),
        problems={
            "undecodable": problems.undecodable,
            "illegal": problems.illegal,
            "late": problems.late,
            "fenced": problems.fenced,
            "undecodable_heartbeats": soft.undecodable,
        },
        recent_problems=tuple(problems.recent[-10:] + soft.recent[-5:]),
    )

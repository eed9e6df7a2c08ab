"""Folding catalog, membership, instance and cluster events, and heartbeats."""

from __future__ import annotations

from datetime import datetime

from eventsrc.events import (
    ClusterSettingsChanged,
    Heartbeat,
    LeaderElected,
    NodeCapabilitiesReported,
    NodeDrainCancelled,
    NodeDrainRequested,
    NodeExpired,
    NodeJoined,
    NodeLeft,
    SkillInstanceExpired,
    SkillInstanceRegistered,
    SkillInstanceUnregistered,
    SkillRegistered,
    SkillUpdated,
)
from eventsrc.projections.problem import Problem
from eventsrc.projections.state import (
    MEMBER_STATES,
    ClusterState,
    InstanceStatus,
    InstanceView,
    Liveness,
    NodeState,
    NodeView,
)


def skill_registered(
    state: ClusterState, event: SkillRegistered | SkillUpdated, time: datetime
) -> None:
    name = event.metadata.name
    current = state.skills.get(name)
    created = current.created_at if current is not None else None
    # The catalog's times come from its events, whatever a proposal carried.
    state.skills[name] = event.metadata.model_copy(
        update={"created_at": created or time, "updated_at": time}
    )
    state.instances.setdefault(name, {})


def _set_instances(state: ClusterState, node_id: str, status: InstanceStatus) -> None:
    for skill in state.node_skills.pop(node_id, set()):
        instance = state.instances.get(skill, {}).get(node_id)
        if instance is not None:
            instance.status = status


def instance_registered(
    state: ClusterState, event: SkillInstanceRegistered, time: datetime
) -> None:
    state.available.clear()
    state.instance_registrations += 1
    holders = state.instances.setdefault(event.skill, {})
    instance = holders.get(event.node_id)
    if instance is None:
        holders[event.node_id] = InstanceView(event.skill, event.node_id, registered_at=time)
    else:
        instance.status = InstanceStatus.ACTIVE
        instance.registered_at = time
    state.node_skills.setdefault(event.node_id, set()).add(event.skill)


def instance_gone(
    state: ClusterState,
    event: SkillInstanceUnregistered | SkillInstanceExpired,
    time: datetime,
) -> None:
    state.available.clear()
    instance = state.instances.get(event.skill, {}).get(event.node_id)
    if instance is None or instance.status != InstanceStatus.ACTIVE:
        raise Problem("late", f"{event.type} for {event.skill} on {event.node_id}: not active")
    if isinstance(event, SkillInstanceUnregistered):
        instance.status = InstanceStatus.UNREGISTERED
        state.instance_unregistrations += 1
    else:
        instance.status = InstanceStatus.EXPIRED
    state.node_skills.get(event.node_id, set()).discard(event.skill)


def node_joined(state: ClusterState, event: NodeJoined, time: datetime) -> None:
    state.available.clear()
    node = state.nodes.get(event.node_id)
    if node is None:
        node = state.nodes[event.node_id] = NodeView(event.node_id)
    elif node.incarnation != event.incarnation:
        # A new incarnation re-registers what it has; old instances are not vouched for.
        _set_instances(state, event.node_id, InstanceStatus.OFFLINE)
    # A drain outlives the process it was meant for: a node that re-joins stays drained.
    node.state = NodeState.DRAINING if node.drained else NodeState.ALIVE
    node.incarnation = event.incarnation
    node.capacity = event.capacity
    node.labels = dict(event.labels)
    node.hostname = event.hostname
    node.host_id = event.host_id
    node.pid = event.pid
    node.process_started = event.process_started
    node.platform = event.platform
    node.cpu_count = event.cpu_count
    node.memory_total_mb = event.memory_total_mb
    node.gpu_count = event.gpu_count
    node.eventsrc_version = event.eventsrc_version
    node.event_schema = event.event_schema
    node.joined_at = time
    node.left_at = None


def _member(state: ClusterState, node_id: str, incarnation: str | None, what: str) -> NodeView:
    node = state.nodes.get(node_id)
    if node is None:
        raise Problem("illegal", f"{what} for unknown node {node_id}")
    if node.state not in MEMBER_STATES:
        raise Problem("late", f"{what} for {node_id} while {node.state}")
    if incarnation is not None and incarnation != node.incarnation:
        raise Problem("late", f"{what} for {node_id} incarnation {incarnation}: not the live one")
    return node


def node_left(state: ClusterState, event: NodeLeft, time: datetime) -> None:
    state.available.clear()
    node = _member(state, event.node_id, event.incarnation, "NodeLeft")
    node.state = NodeState.LEFT
    node.left_at = time
    _set_instances(state, event.node_id, InstanceStatus.OFFLINE)


def node_expired(state: ClusterState, event: NodeExpired, time: datetime) -> None:
    state.available.clear()
    node = _member(state, event.node_id, event.incarnation, "NodeExpired")
    node.state = NodeState.EXPIRED
    node.left_at = time
    _set_instances(state, event.node_id, InstanceStatus.EXPIRED)


def drain_requested(state: ClusterState, event: NodeDrainRequested, time: datetime) -> None:
    state.available.clear()
    node = state.nodes.get(event.node_id)
    if node is None:
        raise Problem("illegal", f"NodeDrainRequested for unknown node {event.node_id}")
    if node.state not in MEMBER_STATES and not event.until_undrained:
        raise Problem("late", f"NodeDrainRequested for {event.node_id} while {node.state}")
    # A node that left or expired may be drained too: it joins again drained.
    if node.state in MEMBER_STATES:
        node.state = NodeState.DRAINING
    node.drained = event.until_undrained


def drain_cancelled(state: ClusterState, event: NodeDrainCancelled, time: datetime) -> None:
    state.available.clear()
    node = state.nodes.get(event.node_id)
    if node is None:
        raise Problem("illegal", f"NodeDrainCancelled for unknown node {event.node_id}")
    if not node.drain_in_force:
        raise Problem("late", f"NodeDrainCancelled for {event.node_id}: not drained")
    node.drained = False
    if node.state == NodeState.DRAINING:
        node.state = NodeState.ALIVE


def capabilities(state: ClusterState, event: NodeCapabilitiesReported, time: datetime) -> None:
    node = state.nodes.get(event.node_id)
    if node is None:
        raise Problem("illegal", f"capabilities for unknown node {event.node_id}")
    node.unavailable = event.unavailable


def leader_elected(state: ClusterState, event: LeaderElected, time: datetime) -> None:
    state.epoch = event.epoch or 0
    state.leader = event.coordinator_id


def settings_changed(state: ClusterState, event: ClusterSettingsChanged, time: datetime) -> None:
    state.settings.update(event.settings)


def heartbeat(state: ClusterState, event: Heartbeat, *, seq: int, time: datetime) -> None:
    """Soft state: the newest heartbeat per node (its own stream, its own sequence)."""
    if seq <= state.heartbeat_seq:
        return
    state.heartbeat_seq = seq
    state.liveness[event.node_id] = Liveness(
        last_at=time,
        last_seq=seq,
        incarnation=event.incarnation,
        cpu_percent=event.cpu_percent,
        memory_percent=event.memory_percent,
        memory_free_mb=event.memory_free_mb,
        cpu_count=event.cpu_count,
        memory_total_mb=event.memory_total_mb,
        gpu_count=event.gpu_count,
        running_tasks=event.running_tasks,
    )

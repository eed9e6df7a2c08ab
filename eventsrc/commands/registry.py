"""Registry commands and their pure decide functions (catalog, instances, staleness)."""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import Field

from eventsrc.commands.base import Command, Stamp
from eventsrc.errors import NotFoundError
from eventsrc.events import (
    Event,
    NodeExpired,
    SkillInstanceExpired,
    SkillInstanceRegistered,
    SkillInstanceUnregistered,
    SkillMetadata,
    SkillRegistered,
    SkillUpdated,
    Token,
)
from eventsrc.projections.state import (
    MEMBER_STATES,
    ClusterState,
    InstanceStatus,
    Liveness,
    NodeView,
)


class RegisterSkill(Command):
    """Put a skill in the catalog, or update its metadata."""

    metadata: SkillMetadata


class RegisterInstance(Command):
    """Record that a node can run a catalog skill."""

    skill: Token
    node_id: Token


class UnregisterInstance(Command):
    """Record that a node no longer offers a skill."""

    skill: Token
    node_id: Token
    reason: str = Field(default="", max_length=1000)


class ExpireStale(Command):
    """Expire nodes and instances whose last sign of life is older than ``stale_after_s``."""

    # Bounded so the horizon (now - stale_after_s) stays a computable datetime.
    stale_after_s: float = Field(gt=0, le=10 * 365 * 86_400)


def decide_register_skill(
    state: ClusterState,
    command: RegisterSkill,
    *,
    stamp: Stamp,
) -> tuple[Event, ...]:
    """SkillRegistered for a new name, SkillUpdated for changed metadata, else nothing.

    The catalog's created/updated times are its events' times, so they are neither
    compared nor stored in the event.
    """
    proposed = command.metadata.content()
    current = state.skills.get(proposed.name)
    if current is not None and current.content() == proposed:
        return ()
    envelope = stamp.envelope()
    if current is None:
        return (SkillRegistered(**envelope, metadata=proposed),)
    return (SkillUpdated(**envelope, metadata=proposed),)


def decide_register_instance(
    state: ClusterState,
    command: RegisterInstance,
    *,
    stamp: Stamp,
) -> tuple[Event, ...]:
    """An instance of a catalog skill; raises NotFoundError for a skill not in it."""
    if command.skill not in state.skills:
        raise NotFoundError(
            f"skill {command.skill!r} is not in the catalog; register it first "
            f"(register_skill) — known: {', '.join(sorted(state.skills)) or 'none'}"
        )
    instance = state.instances.get(command.skill, {}).get(command.node_id)
    if instance is not None and instance.status == InstanceStatus.ACTIVE:
        return ()
    node = state.nodes.get(command.node_id)
    return (
        SkillInstanceRegistered(
            **stamp.envelope(),
            node_id=command.node_id,
            skill=command.skill,
            incarnation=node.incarnation if node is not None else "",
        ),
    )


def decide_unregister_instance(
    state: ClusterState,
    command: UnregisterInstance,
    *,
    stamp: Stamp,
) -> tuple[Event, ...]:
    """Unregister an active instance; nothing when it is not active (idempotent)."""
    instance = state.instances.get(command.skill, {}).get(command.node_id)
    if instance is None or instance.status != InstanceStatus.ACTIVE:
        return ()
    return (
        SkillInstanceUnregistered(
            **stamp.envelope(),
            node_id=command.node_id,
            skill=command.skill,
            reason=command.reason,
        ),
    )


def _own_liveness(state: ClusterState, node: NodeView) -> Liveness | None:
    liveness = state.liveness.get(node.node_id)
    if liveness is not None and liveness.incarnation not in ("", node.incarnation):
        return None  # a heartbeat of the previous incarnation says nothing now
    return liveness


def last_seen(state: ClusterState, node: NodeView) -> datetime | None:
    """The server time of the node's newest sign of life: its live incarnation's newest
    heartbeat, else its join."""
    liveness = _own_liveness(state, node)
    return max(
        (t for t in (node.joined_at, liveness.last_at if liveness else None) if t),
        default=None,
    )


def live_holder(
    state: ClusterState,
    *,
    node_id: str,
    incarnation: str,
    replaces: str,
    now: datetime,
    stale_after_s: float,
) -> NodeView | None:
    """The member that holds ``node_id`` for another live process, if any.

    A process is taken for live while its signs of life are younger than
    ``stale_after_s`` (the rule that expires nodes). ``replaces`` names an incarnation
    the newcomer knows to be dead (its pid is gone on the same host): that one yields.
    """
    node = state.nodes.get(node_id)
    if node is None or node.state not in MEMBER_STATES:
        return None
    if node.incarnation in (incarnation, replaces):
        return None
    seen = last_seen(state, node)
    if seen is None or seen < now - timedelta(seconds=stale_after_s):
        return None
    return node


def in_use_message(state: ClusterState, holder: NodeView, *, stale_after_s: float) -> str:
    """The one line a process is refused with when its node id is held by a live one."""
    joined = holder.joined_at.strftime("%Y-%m-%d %H:%M:%S UTC") if holder.joined_at else "?"
    seen = last_seen(state, holder)
    where = f"host {holder.hostname or '?'}" + (f" (pid {holder.pid})" if holder.pid else "")
    free = ""
    if seen is not None:
        at = (seen + timedelta(seconds=stale_after_s)).strftime("%H:%M:%S UTC")
        last = seen.strftime("%H:%M:%S UTC")
        free = f" (last seen {last}; if it is gone, the id is free at {at})"
    return (
        f"node id {holder.node_id} is in use by a live process on {where}, joined {joined}"
        f"{free}; give this node its own id with --node-id NAME, or stop that process first"
    )


def decide_expire_stale(
    state: ClusterState,
    command: ExpireStale,
    *,
    stamp: Stamp,
) -> tuple[Event, ...]:
    """Expiry events, each carrying its evidence, so a replay needs no clock.

    A member node expires as a whole (``NodeExpired``; its instances go with it). An
    instance registered through the registry alone (for a node that never joined, or
    since its node left) expires on its own. The evidence is the server time of the
    node's newest heartbeat, else of its join (a member) or of the instance's
    registration (on its own), whichever is later.
    """
    now = stamp.now
    horizon = now - timedelta(seconds=command.stale_after_s)
    events: list[Event] = []
    for node_id, node in sorted(state.nodes.items()):
        if node.state not in MEMBER_STATES:
            continue
        liveness = _own_liveness(state, node)
        seen = last_seen(state, node)
        if seen is not None and seen >= horizon:
            continue
        events.append(
            NodeExpired(
                **stamp.envelope(),
                node_id=node_id,
                incarnation=node.incarnation,
                last_heartbeat_at=liveness.last_at if liveness is not None else None,
                last_heartbeat_seq=liveness.last_seq if liveness is not None else 0,
                swept_at=now,
                stale_after_s=command.stale_after_s,
            )
        )
    for skill, holders in sorted(state.instances.items()):
        for node_id, instance in sorted(holders.items()):
            holder = state.nodes.get(node_id)
            member = holder is not None and holder.state in MEMBER_STATES
            if instance.status != InstanceStatus.ACTIVE or member:
                continue
            liveness = state.liveness.get(node_id)
            seen = max(
                (t for t in (liveness.last_at if liveness else None, instance.registered_at) if t),
                default=None,
            )
            if seen is not None and seen >= horizon:
                continue
            events.append(
                SkillInstanceExpired(
                    **stamp.envelope(),
                    node_id=node_id,
                    skill=skill,
                    last_seen_at=seen,
                    swept_at=now,
                    stale_after_s=command.stale_after_s,
                )
            )
    return tuple(events)

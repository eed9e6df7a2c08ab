"""Cluster-wide limits in the state: which limits cover a task, and folding the limit
events and the starts a rate counts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from eventsrc.events import LimitRemoved, LimitSet, TaskAssigned, TaskSpec, parse_rate
from eventsrc.projections.problem import Problem
from eventsrc.projections.state import ClusterState, KeyLimit


@dataclass(frozen=True, slots=True)
class Limit:
    """One limit that covers a task: a skill's (named ``skill <name>``) or a key's."""

    name: str
    max_running: int | None
    rate: str | None


def skill_limit_name(skill: str) -> str:
    """The name a skill's limit goes by in reasons and evidence: ``skill <name>``."""
    return f"skill {skill}"


def limits_of(state: ClusterState, spec: TaskSpec) -> tuple[Limit, ...]:
    """The limits in force on tasks like ``spec``: its skills' and its key's (a key with
    no limit set holds nothing)."""
    found: list[Limit] = []
    for skill in spec.skills:
        meta = state.skills.get(skill)
        if meta is not None and (meta.max_concurrent is not None or meta.rate is not None):
            found.append(Limit(skill_limit_name(skill), meta.max_concurrent, meta.rate))
    if spec.limit_key is not None:
        key = state.limits.get(spec.limit_key)
        if key is not None:
            found.append(Limit(spec.limit_key, key.max_running, key.rate))
    return tuple(found)


def limit_set(state: ClusterState, event: LimitSet, time: datetime) -> None:
    state.limits[event.key] = KeyLimit(max_running=event.max_running, rate=event.rate)
    if event.rate is None:
        state.limit_starts.pop(event.key, None)


def limit_removed(state: ClusterState, event: LimitRemoved, time: datetime) -> None:
    if state.limits.pop(event.key, None) is None:
        raise Problem("illegal", f"LimitRemoved for {event.key}, which has no limit")
    state.limit_starts.pop(event.key, None)


def record_starts(state: ClusterState, event: TaskAssigned, time: datetime) -> None:
    """Count a start for every rate the placement names (its evidence), keeping the
    newest as many as that rate allows per window: all a later decision needs."""
    for use in event.limits:
        if use.rate is None:
            continue
        count, _ = parse_rate(use.rate)
        starts = state.limit_starts.setdefault(use.name, [])
        starts.append(time)
        del starts[:-count]

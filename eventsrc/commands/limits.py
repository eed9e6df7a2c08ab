"""Commands on the cluster-wide limits of keys: set, remove, list. Pure.

A key's limit holds the tasks submitted with that ``limit_key``; a skill's limit is in
its catalog metadata (``max_concurrent``, ``rate``) and changes with the skill.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_validator

from eventsrc.commands.base import Command, Stamp
from eventsrc.commands.scheduler import limit_counts
from eventsrc.errors import NotFoundError
from eventsrc.events import Event, LimitRemoved, LimitSet, Token
from eventsrc.events.limit import check_rate
from eventsrc.projections.limits import skill_limit_name
from eventsrc.projections.state import ClusterState, KeyLimit


class SetLimit(Command):
    """Set or change a key's limit: at most ``max_running`` at once, ``rate`` starts."""

    key: Token
    max_running: int | None = Field(default=None, ge=1)
    rate: str | None = None

    @field_validator("rate")
    @classmethod
    def _parses(cls, rate: str | None) -> str | None:
        return check_rate(rate)

    @model_validator(mode="after")
    def _limits_something(self) -> SetLimit:
        if self.max_running is None and self.rate is None:
            raise ValueError("give --max N, --rate R or both")
        return self


class RemoveLimit(Command):
    key: Token


def decide_set_limit(state: ClusterState, command: SetLimit, *, stamp: Stamp) -> tuple[Event, ...]:
    """LimitSet, unless the key has exactly this limit already."""
    wanted = KeyLimit(max_running=command.max_running, rate=command.rate)
    if state.limits.get(command.key) == wanted:
        return ()
    return (
        LimitSet(
            **stamp.envelope(), key=command.key, max_running=command.max_running, rate=command.rate
        ),
    )


def decide_remove_limit(
    state: ClusterState, command: RemoveLimit, *, stamp: Stamp
) -> tuple[Event, ...]:
    if command.key not in state.limits:
        raise NotFoundError(f"no limit for key {command.key}; see `eventsrc limit list`")
    return (LimitRemoved(**stamp.envelope(), key=command.key),)


def list_limits(state: ClusterState) -> list[dict[str, Any]]:
    """Every limit in force, keys' and skills', with the tasks running under each now."""
    running = limit_counts(state).running
    rows = [
        {"name": key, "kind": "key", "max_running": limit.max_running, "rate": limit.rate}
        for key, limit in sorted(state.limits.items())
    ]
    rows += [
        {
            "name": skill_limit_name(name),
            "kind": "skill",
            "max_running": meta.max_concurrent,
            "rate": meta.rate,
        }
        for name, meta in sorted(state.skills.items())
        if meta.max_concurrent is not None or meta.rate is not None
    ]
    return [{**row, "running": running[str(row["name"])]} for row in rows]

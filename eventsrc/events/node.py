"""Membership and skill-instance events, stored under ``evt.node.<node_id>``."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from eventsrc.events.base import EventBase
from eventsrc.events.ids import Token
from eventsrc.events.subjects import node_subject


class _NodeEvent(EventBase):
    node_id: Token

    @property
    def subject(self) -> str:
        return node_subject(self.node_id)


class NodeJoined(_NodeEvent):
    """A node process became a member; ``incarnation`` is new on every start."""

    WRITTEN_BY = "node"
    type: Literal["NodeJoined"] = "NodeJoined"
    incarnation: str
    eventsrc_version: str = ""
    # The newest event schema the node's code writes; the coordinator refuses newer.
    event_schema: int = 1
    capacity: int = Field(default=1, ge=1)
    labels: dict[str, str] = Field(default_factory=dict)
    hostname: str = ""
    # Which process this is: a new process under the same id tells a dead predecessor on
    # its own host (same host_id: machine, boot and pid namespace) from a live one by
    # the pid and its start time (the host's clock, seconds since the epoch).
    host_id: str = ""
    pid: int = 0
    process_started: float = 0.0
    platform: str = ""
    cpu_count: int = 0
    memory_total_mb: int = 0
    gpu_count: int = 0


class NodeLeft(_NodeEvent):
    """A node left on purpose (drained, stopped)."""

    WRITTEN_BY = "node"
    type: Literal["NodeLeft"] = "NodeLeft"
    incarnation: str
    reason: str = ""


class NodeExpired(_NodeEvent):
    """The coordinator declared a node dead; the evidence makes the decision replayable.

    ``last_heartbeat_at`` is the JetStream time of its newest heartbeat (None if it
    never sent one; then ``joined_at`` stood in), ``swept_at`` the sweep's time.
    """

    type: Literal["NodeExpired"] = "NodeExpired"
    incarnation: str
    last_heartbeat_at: datetime | None = None
    last_heartbeat_seq: int = 0
    swept_at: datetime
    stale_after_s: float


class NodeDrainRequested(_NodeEvent):
    """Stop placing work on a node; what it runs finishes. In force across the node's
    re-joins until a NodeDrainCancelled (``until_undrained``; version 1 drains, from
    before that rule, ended at the node's next join)."""

    type: Literal["NodeDrainRequested"] = "NodeDrainRequested"
    schema_version: int = 2
    reason: str = ""
    until_undrained: bool = True


class NodeDrainCancelled(_NodeEvent):
    """Place work on a drained node again (``eventsrc undrain``)."""

    type: Literal["NodeDrainCancelled"] = "NodeDrainCancelled"
    reason: str = ""


class SkillInstanceRegistered(_NodeEvent):
    """A node can run a catalog skill."""

    WRITTEN_BY = "node"
    type: Literal["SkillInstanceRegistered"] = "SkillInstanceRegistered"
    skill: Token
    incarnation: str = ""


class SkillInstanceUnregistered(_NodeEvent):
    """A node no longer offers a skill (removed, became ineligible)."""

    WRITTEN_BY = "node"
    type: Literal["SkillInstanceUnregistered"] = "SkillInstanceUnregistered"
    skill: Token
    reason: str = ""


class SkillInstanceExpired(_NodeEvent):
    """The coordinator expired an instance whose node stopped heartbeating."""

    type: Literal["SkillInstanceExpired"] = "SkillInstanceExpired"
    skill: Token
    last_seen_at: datetime | None = None
    swept_at: datetime
    stale_after_s: float


class UnavailableSkill(BaseModel):
    """A skill a node found but cannot run, with what it lacks (OpenClaw gating)."""

    model_config = ConfigDict(frozen=True, extra="ignore", allow_inf_nan=False)

    name: Token
    description: str = ""
    missing_bins: tuple[str, ...] = ()
    missing_any_bins: tuple[str, ...] = ()
    missing_env: tuple[str, ...] = ()
    missing_config: tuple[str, ...] = ()
    unsupported_os: tuple[str, ...] = ()
    # Turned off in openclaw.json: skills.entries.<key>.enabled is false.
    disabled: bool = False
    # A bundled OpenClaw skill left out of skills.allowBundled.
    blocked_by_allowlist: bool = False
    # Left out of the served OpenClaw agent's skills (agents.*.skills).
    blocked_by_agent: bool = False
    install: tuple[dict[str, str], ...] = ()

    def install_text(self) -> str:
        """The install hints in one line: each option's label, else its fields."""
        return "; ".join(
            spec.get("label") or " ".join(f"{k}={v}" for k, v in sorted(spec.items()))
            for spec in self.install
        )

    def lacks(self) -> tuple[str, ...]:
        """What stops the skill, one short item each (``bin:jq``, ``env:KEY``, ``disabled``)."""
        return (
            *(("disabled",) if self.disabled else ()),
            *(("not in skills.allowBundled",) if self.blocked_by_allowlist else ()),
            *(("not in the agent's skills",) if self.blocked_by_agent else ()),
            *(f"os:{'|'.join(self.unsupported_os)}" for _ in [0] if self.unsupported_os),
            *(f"bin:{b}" for b in self.missing_bins),
            *(f"anyBin:{'|'.join(self.missing_any_bins)}" for _ in [0] if self.missing_any_bins),
            *(f"env:{e}" for e in self.missing_env),
            *(f"config:{c}" for c in self.missing_config),
        )


class NodeCapabilitiesReported(_NodeEvent):
    """The skills a node found but cannot run, so the cluster can say what to install."""

    WRITTEN_BY = "node"
    type: Literal["NodeCapabilitiesReported"] = "NodeCapabilitiesReported"
    unavailable: tuple[UnavailableSkill, ...] = ()

"""Cluster-wide events under ``evt.cluster`` and the heartbeat under ``hb.<node_id>``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from eventsrc.events.base import EventBase
from eventsrc.events.ids import Token
from eventsrc.events.subjects import CLUSTER_SUBJECT, heartbeat_subject


class LeaderElected(EventBase):
    """A coordinator leads from this epoch on; older epochs' events are fenced off."""

    type: Literal["LeaderElected"] = "LeaderElected"
    coordinator_id: str

    @property
    def subject(self) -> str:
        return CLUSTER_SUBJECT


class ClusterSettingsChanged(EventBase):
    """Cluster settings (stale_after, queue limit, ...) changed."""

    type: Literal["ClusterSettingsChanged"] = "ClusterSettingsChanged"
    settings: dict[str, Any] = Field(default_factory=dict)

    @property
    def subject(self) -> str:
        return CLUSTER_SUBJECT


class Heartbeat(EventBase):
    """Soft state from a node: liveness evidence and load. Stored in EVENTSRC_HEARTBEATS."""

    WRITTEN_BY = "node"
    type: Literal["Heartbeat"] = "Heartbeat"
    node_id: Token
    incarnation: str = ""
    cpu_percent: float = 0.0
    memory_percent: float = 0.0
    cpu_count: int = 0
    memory_total_mb: int = 0
    memory_free_mb: int = 0
    gpu_count: int = 0
    running_tasks: int = 0
    capacity: int = 1
    skills: tuple[str, ...] = ()

    @property
    def subject(self) -> str:
        return heartbeat_subject(self.node_id)

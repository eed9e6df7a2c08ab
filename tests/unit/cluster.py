"""A ``ClusterState`` built from events, the way the runner folds them, for pure tests.

``Cluster().skill("render", gpu=True).node("a", "render", gpus=1)`` registers a skill
and a node holding it; every method returns the builder, so a case reads as one line.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from eventsrc.commands.base import COORDINATOR, Origin, Stamp
from eventsrc.events import (
    EVENT_SCHEMA,
    Heartbeat,
    NodeCapabilitiesReported,
    NodeDrainRequested,
    NodeJoined,
    SkillMetadata,
    SkillRegistered,
    TaskSpec,
    TaskSubmitted,
    UnavailableSkill,
)
from eventsrc.projections.apply import apply_heartbeat
from eventsrc.projections.state import ClusterState
from tests.factories import T0
from tests.projections.builders import (
    LATER,
    Fold,
    assigned,
    by_node,
    coord,
    failed,
    instance,
    left,
    node_expired,
    started,
    succeeded,
)


@dataclass
class Cluster:
    run: Fold = field(default_factory=Fold)
    filler: int = 0

    @property
    def state(self) -> ClusterState:
        return self.run.state

    def skill(self, name: str, *dependencies: str, **resources: object) -> Cluster:
        """A catalog skill; ``resources`` as a registration carries them (gpu=True...)."""
        meta = SkillMetadata.model_validate(
            {"name": name, "dependencies": dependencies, "resources": resources}
        )
        self.run.fold(SkillRegistered(**coord(), metadata=meta))
        return self

    def node(
        self,
        node_id: str,
        *skills: str,
        capacity: int = 2,
        labels: dict[str, str] | None = None,
        cpus: int = 0,
        memory_mb: int = 0,
        gpus: int = 0,
        hostname: str = "",
        pid: int = 0,
        incarnation: str = "i1",
        event_schema: int = EVENT_SCHEMA,
    ) -> Cluster:
        """A joined node holding live instances of ``skills`` (running this code: its
        event schema, unless given)."""
        joined = NodeJoined(
            **by_node(node_id),
            node_id=node_id,
            incarnation=incarnation,
            capacity=capacity,
            labels=labels or {},
            cpu_count=cpus,
            memory_total_mb=memory_mb,
            gpu_count=gpus,
            hostname=hostname,
            pid=pid,
            event_schema=event_schema,
        )
        self.run.fold(joined, *(instance(skill, node_id) for skill in skills))
        return self

    def beat(
        self,
        node_id: str,
        *,
        cpu: float = 0.0,
        memory: float = 0.0,
        cpus: int = 0,
        memory_mb: int = 0,
        gpus: int = 0,
        at: datetime | None = None,
        incarnation: str | None = None,
    ) -> Cluster:
        """A heartbeat (soft state: load, hardware) stored at ``at``, of the node's live
        incarnation unless told."""
        beat = Heartbeat(
            **by_node(node_id),
            node_id=node_id,
            incarnation=self._incarnation(node_id) if incarnation is None else incarnation,
            cpu_percent=cpu,
            memory_percent=memory,
            cpu_count=cpus,
            memory_total_mb=memory_mb,
            gpu_count=gpus,
        )
        seq = self.state.heartbeat_seq + 1
        apply_heartbeat(self.state, beat, seq=seq, time=at or T0 + timedelta(seconds=seq))
        return self

    def occupy(self, node_id: str, count: int = 1) -> Cluster:
        """``count`` tasks assigned to the node (each takes a slot)."""
        for _ in range(count):
            task_id = self._filler()
            self.run.fold(_submitted(task_id), assigned(task_id, node_id))
        return self

    def results(self, node_id: str, *, ok: int = 0, bad: int = 0) -> Cluster:
        """Finished attempts on the node, which set its success rate."""
        for outcome in [True] * ok + [False] * bad:
            task_id = self._filler()
            end = (
                succeeded(task_id, node_id)
                if outcome
                else failed(task_id, node_id, retryable=False)
            )
            self.run.fold(
                _submitted(task_id), assigned(task_id, node_id), started(task_id, node_id), end
            )
        return self

    def drain(self, node_id: str) -> Cluster:
        self.run.fold(NodeDrainRequested(**coord(), node_id=node_id))
        return self

    def leave(self, node_id: str) -> Cluster:
        self.run.fold(left(node_id, self.state.nodes[node_id].incarnation))
        return self

    def expire(self, node_id: str) -> Cluster:
        self.run.fold(node_expired(node_id, self.state.nodes[node_id].incarnation))
        return self

    def cannot_run(self, node_id: str, *unavailable: UnavailableSkill) -> Cluster:
        self.run.fold(
            NodeCapabilitiesReported(**by_node(node_id), node_id=node_id, unavailable=unavailable)
        )
        return self

    def _incarnation(self, node_id: str) -> str:
        node = self.state.nodes.get(node_id)
        return node.incarnation if node is not None else ""

    def _filler(self) -> str:
        self.filler += 1
        return f"filler-{self.filler}"


def python_on(*node_ids: str, **node: Any) -> Cluster:
    """The skill python in the catalog and nodes holding it (``node`` as for ``Cluster.node``)."""
    cluster = Cluster().skill("python")
    for node_id in node_ids:
        cluster.node(node_id, "python", **node)
    return cluster


def made(
    n: int, now: datetime, *, origin: Origin = COORDINATOR, causation_id: str | None = None
) -> dict[str, Any]:
    """The envelope of the ``n``-th event a decision made at ``now`` (see sequential_ids)."""
    return {
        "event_id": f"e{n}",
        "time": now,
        "producer": origin.producer,
        "epoch": origin.epoch,
        "causation_id": causation_id,
        "correlation_id": None,
    }


def sequential_ids(prefix: str = "e") -> Callable[[], str]:
    """An id factory that says in which order a decision made its events: e1, e2, ..."""
    counter = itertools.count(1)
    return lambda: f"{prefix}{next(counter)}"


def decided(now: datetime, *, origin: Origin = COORDINATOR) -> Stamp:
    """The stamp of a decision made at ``now``: its events are e1, e2, ... (see ``made``)."""
    return origin.stamp(now, new_id=sequential_ids())


def _submitted(task_id: str) -> TaskSubmitted:
    spec = TaskSpec(skills=("python",), max_attempts=1)
    return TaskSubmitted(**coord(), task_id=task_id, spec=spec, queue_deadline=LATER)

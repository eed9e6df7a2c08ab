"""The in-memory state every projection folds events into.

One ``ClusterState`` holds the skill registry, the node map and the task states, because
placement needs all three at once. It is mutated in place by ``apply`` (rebuild speed)
and only under the runner's writer lock; ``to_dict`` gives the canonical form that is
hashed and snapshotted. Heartbeat-derived liveness is soft state: kept beside the
replayable state and excluded from the hash.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Final

from pydantic import PlainSerializer

from eventsrc.events import AgentRun, ScheduleTiming, SkillMetadata, TaskSpec, UnavailableSkill

# Bumped whenever the shape of ClusterState.to_dict changes: snapshots of another
# version are ignored and the state is rebuilt by a full replay. Stored times are
# floored to microseconds, so a snapshot from before that can differ from a replay.
STATE_SCHEMA_VERSION = 8

SortedSet = Annotated[set[str], PlainSerializer(sorted, return_type=list[str])]
"""A set that serialises in sorted order, so the canonical form and its hash are stable."""


class TaskState(StrEnum):
    """Where a task is. The values are what the API, the CLI and snapshots show."""

    QUEUED = "queued"
    ASSIGNED = "assigned"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    REJECTED = "rejected"


class NodeState(StrEnum):
    """A node's membership. The values are what the API, the CLI and snapshots show."""

    ALIVE = "alive"
    DRAINING = "draining"
    LEFT = "left"
    EXPIRED = "expired"


class InstanceStatus(StrEnum):
    """A skill instance on a node; only an active one can get work."""

    ACTIVE = "active"
    UNREGISTERED = "unregistered"
    EXPIRED = "expired"
    OFFLINE = "offline"


TERMINAL_STATES: Final = frozenset(
    {
        TaskState.SUCCEEDED,
        TaskState.FAILED,
        TaskState.TIMED_OUT,
        TaskState.CANCELLED,
        TaskState.REJECTED,
    }
)
"""A task in one of these is finished: no event moves it on."""
UNSUCCESSFUL_STATES: Final = TERMINAL_STATES - {TaskState.SUCCEEDED}
ACTIVE_TASK_STATES: Final = frozenset({TaskState.ASSIGNED, TaskState.RUNNING})
"""A task in one of these holds a slot on its node."""
MEMBER_STATES: Final = frozenset({NodeState.ALIVE, NodeState.DRAINING})
"""A node in one of these belongs to the cluster (a draining one takes no new work)."""


@dataclass(slots=True)
class InstanceView:
    """A skill on a node, with the week-5 usage statistics."""

    skill: str
    node_id: str
    status: InstanceStatus = InstanceStatus.ACTIVE
    registered_at: datetime | None = None
    usage_count: int = 0
    success_count: int = 0
    failure_count: int = 0

    @property
    def success_rate(self) -> float:
        """Share of finished attempts that succeeded (1.0 before any)."""
        done = self.success_count + self.failure_count
        return self.success_count / done if done else 1.0


@dataclass(slots=True)
class NodeView:
    """A node's membership as the events say (not its soft heartbeat state)."""

    node_id: str
    state: NodeState = NodeState.ALIVE
    # An operator's drain (``eventsrc drain``): in force across re-joins until undrained.
    drained: bool = False
    incarnation: str = ""
    capacity: int = 1
    labels: dict[str, str] = field(default_factory=dict)
    hostname: str = ""
    host_id: str = ""
    pid: int = 0
    process_started: float = 0.0
    platform: str = ""
    cpu_count: int = 0
    memory_total_mb: int = 0
    gpu_count: int = 0
    eventsrc_version: str = ""
    event_schema: int = 1
    joined_at: datetime | None = None
    left_at: datetime | None = None
    running: SortedSet = field(default_factory=set)
    success_count: int = 0
    failure_count: int = 0
    unavailable: tuple[UnavailableSkill, ...] = ()

    @property
    def drain_in_force(self) -> bool:
        """An operator's drain holds now: across re-joins, or (a drain from before that
        rule) until this incarnation leaves."""
        return self.drained or self.state == NodeState.DRAINING

    @property
    def success_rate(self) -> float:
        done = self.success_count + self.failure_count
        return self.success_count / done if done else 1.0


@dataclass(slots=True)
class Liveness:
    """Soft state from the newest heartbeat of a node (server time and load)."""

    last_at: datetime
    last_seq: int
    incarnation: str = ""
    cpu_percent: float = 0.0
    memory_percent: float = 0.0
    memory_free_mb: int = 0
    cpu_count: int = 0
    memory_total_mb: int = 0
    gpu_count: int = 0
    running_tasks: int = 0


@dataclass(slots=True)
class TaskView:
    """A task's current state, folded from its aggregate ``evt.task.<id>.>``."""

    task_id: str
    spec: TaskSpec
    state: TaskState = TaskState.QUEUED
    attempt: int = 1
    node_id: str | None = None
    reason: str = ""
    submitted_at: datetime | None = None
    queue_deadline: datetime | None = None
    queued_since: datetime | None = None
    run_deadline: datetime | None = None
    not_before: datetime | None = None
    finished_at: datetime | None = None
    started: bool = False
    cancel_requested: bool = False
    retry_pending: bool = False
    result: Any = None
    error: str | None = None
    agent: AgentRun | None = None
    missing_skills: tuple[str, ...] = ()
    would_qualify: tuple[str, ...] = ()
    parent_task_id: str | None = None
    broadcast_id: str | None = None
    submit_event_id: str = ""
    schedule: str | None = None
    occurrence: datetime | None = None

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES


@dataclass(slots=True)
class ScheduleView:
    """A schedule as its aggregate ``evt.schedule.<name>`` says.

    ``cursor``: every occurrence up to it is handled (fired or skipped), or was before
    the schedule was added or resumed. ``pending_task``: fired, its task's submission
    not applied yet (the coordinator submits it if a fail-over came in between).
    """

    name: str
    timing: ScheduleTiming
    task: TaskSpec
    cursor: datetime
    added_at: datetime
    paused: bool = False
    fired: int = 0
    skipped: int = 0
    last_occurrence: datetime | None = None
    last_task_id: str | None = None
    pending_task: str | None = None


@dataclass(slots=True)
class KeyLimit:
    """The cluster-wide limit of one ``limit_key`` (``eventsrc limit set``)."""

    max_running: int | None = None
    rate: str | None = None


@dataclass(slots=True)
class Problems:
    """Events that were stored but could not change the state, counted and described."""

    undecodable: int = 0
    illegal: int = 0
    late: int = 0
    fenced: int = 0
    recent: list[str] = field(default_factory=list)

    def note(self, kind: str, text: str, *, keep: int = 50) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        self.recent.append(text)
        if len(self.recent) > keep:
            del self.recent[0]


@dataclass(slots=True)
class Retention:
    """How many finished tasks stay in memory (they stay in the stream regardless)."""

    max_finished: int = 10_000
    max_finished_age_s: float = 24 * 3600


class NodeIds(tuple[str, ...]):
    """Node ids, sorted: an immutable sequence that also compares equal to a ``list`` of
    the same ids (the week-5 registry returned lists). The state hands out the one it
    caches instead of copying every id per read; ``list(ids)`` for a list to change."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, list):
            return tuple.__eq__(self, tuple(other))
        return tuple.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = tuple.__hash__


@dataclass(slots=True)
class ClusterState:
    """Everything the events say, as of stream sequence ``last_seq``."""

    last_seq: int = 0
    epoch: int = 0
    leader: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    skills: dict[str, SkillMetadata] = field(default_factory=dict)
    instances: dict[str, dict[str, InstanceView]] = field(default_factory=dict)
    node_skills: dict[str, SortedSet] = field(default_factory=dict)
    # Instance registrations and withdrawals applied over the whole history.
    instance_registrations: int = 0
    instance_unregistrations: int = 0
    nodes: dict[str, NodeView] = field(default_factory=dict)
    tasks: dict[str, TaskView] = field(default_factory=dict)
    schedules: dict[str, ScheduleView] = field(default_factory=dict)
    finished: OrderedDict[str, datetime] = field(default_factory=OrderedDict)
    evicted: int = 0
    aggregate_seq: dict[str, int] = field(default_factory=dict)
    # Task aggregates with events but no task here (stray results, junk), oldest first:
    # bounded like finished tasks (see apply._track_aggregate).
    strays: OrderedDict[str, None] = field(default_factory=OrderedDict)
    problems: Problems = field(default_factory=Problems)
    # The limits of keys, and per limit with a rate the server times of its newest
    # starts (as many as the rate counts): what a rate decision counts, from events.
    limits: dict[str, KeyLimit] = field(default_factory=dict)
    limit_starts: dict[str, list[datetime]] = field(default_factory=dict)
    retention: Retention = field(default_factory=Retention)
    # Soft state from EVENTSRC_HEARTBEATS: not replayable, not hashed.
    liveness: dict[str, Liveness] = field(default_factory=dict)
    heartbeat_seq: int = 0
    heartbeat_problems: Problems = field(default_factory=Problems)
    # Derived indexes, rebuilt from the rest (see canonical.py), never hashed: the ids
    # of unfinished tasks (so the control loop scales with open work, not history),
    # those of them waiting for a node (state queued), and the sorted holders per skill
    # (cleared by any membership change).
    open_tasks: set[str] = field(default_factory=set)
    waiting: set[str] = field(default_factory=set)
    available: dict[str, tuple[str, ...]] = field(default_factory=dict)  # NodeIds

    def active_instance_nodes(self, skill: str) -> list[str]:
        """Node ids holding a live instance of ``skill`` (see ``live``)."""
        return list(self.holders(skill))

    def holders(self, skill: str) -> NodeIds:
        """``active_instance_nodes`` as a cached, immutable sequence (no copy per call)."""
        cached = self.available.get(skill)
        if not isinstance(cached, NodeIds):
            holders = self.instances.get(skill, {})
            cached = self.available[skill] = NodeIds(
                sorted(node_id for node_id, instance in holders.items() if self.live(instance))
            )
        return cached

    def expected_seq(self, aggregate: str) -> int:
        """The sequence an append to ``aggregate`` (a subject filter) must expect: that of
        its newest applied event, 0 for one nothing was stored under (a new task)."""
        return self.aggregate_seq.get(aggregate, 0)

    def rebuild_indexes(self) -> None:
        """Recompute the derived indexes (after a restore from the canonical form)."""
        self.open_tasks = {task_id for task_id, task in self.tasks.items() if not task.terminal}
        self.waiting = {t for t in self.open_tasks if self.tasks[t].state == TaskState.QUEUED}
        self.available.clear()

    def live(self, instance: InstanceView) -> bool:
        """An instance that counts: active, and on a member node, or registered through
        the registry alone (for a node id that never joined, or since its node left)."""
        if instance.status != InstanceStatus.ACTIVE:
            return False
        node = self.nodes.get(instance.node_id)
        if node is None or node.state in MEMBER_STATES:
            return True
        # Leaving or expiring marks a node's instances offline or expired; one active
        # now was registered for the id afterwards, as the week-5 registry-only use does.
        registered, left = instance.registered_at, node.left_at
        return registered is not None and left is not None and registered >= left

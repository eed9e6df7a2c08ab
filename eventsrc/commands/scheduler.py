"""Placement: which node runs a task, or why none can now. Pure.

A node is eligible when it is alive (not draining), holds every required skill, has a
free slot, carries the requested labels, is the pinned node if one is named, and meets
the skills' numeric resource limits. Qualitative requirements (strings, booleans: the
week-5 ``gpu: "recommended"`` or ``gpu: true``) never exclude. Among eligible nodes:
lowest running/capacity, then highest success rate, then the node with a GPU where a
skill wants one qualitatively, then lower cpu and memory use where they differ by more
than 10 points (nodes on one host tie), then node id.

Before a node is looked for, the cluster-wide limits that cover the task (its skills'
``max_concurrent`` and ``rate``, its ``limit_key``'s) must each allow one more start
(``check_limits``); the placement then carries what each limit counted as evidence.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from eventsrc.events import Candidate, LimitUse, TaskSpec, parse_rate
from eventsrc.projections.limits import limits_of
from eventsrc.projections.queries import reported_skills, resolve_dependencies
from eventsrc.projections.state import MEMBER_STATES, ClusterState, NodeState, NodeView

# Differences in cpu/memory use below this many percentage points do not rank.
LOAD_TIE_POINTS = 10.0
MAX_EVIDENCE = 8


class Shortfall(StrEnum):
    """Why a node holding a task's skills cannot take it now."""

    NOT_ALIVE = "not alive"
    NOT_PINNED = "not pinned"
    BUSY = "busy"
    LABEL = "label"
    RESOURCES = "resources"


@dataclass(frozen=True, slots=True)
class Ineligible:
    why: Shortfall
    text: str
    """What the node lacks, as the task's reason shows it after the node id."""


@dataclass(frozen=True, slots=True)
class LimitReached:
    """A cluster-wide limit holds the task: all its slots are taken, or its rate's
    starts in the current window are used up."""

    name: str
    running: int
    max_running: int | None = None
    rate: str | None = None
    """Set when the rate is what holds (not the running count)."""

    @property
    def text(self) -> str:
        """The task's reason: ``limit openai-key: 2 of 2 running``."""
        if self.rate is not None:
            return f"limit {self.name}: rate {self.rate} used up"
        return f"limit {self.name}: {self.running} of {self.max_running} running"


@dataclass(slots=True)
class LimitCounts:
    """What limits count in one pass: tasks under each limit assigned or running (the
    applied ones and this pass's), and the starts this pass decided (not applied yet).
    Counted from the state on first use, so a pass with no limited task pays nothing."""

    running: Counter[str] = field(default_factory=Counter)
    started: Counter[str] = field(default_factory=Counter)
    counted: bool = False

    def count(self, state: ClusterState) -> LimitCounts:
        """Count the applied tasks holding a slot under each limit (once per pass)."""
        if not self.counted:
            self.counted = True
            for node in state.nodes.values():
                for task_id in node.running:
                    task = state.tasks.get(task_id)
                    if task is not None:
                        self.running.update(limit.name for limit in limits_of(state, task.spec))
        return self

    def add(self, uses: tuple[LimitUse, ...]) -> None:
        """Count one more start under each of ``uses`` (a placement just decided)."""
        for use in uses:
            self.running[use.name] += 1
            self.started[use.name] += 1


def limit_counts(state: ClusterState) -> LimitCounts:
    """The tasks holding a slot (assigned or running) under each limit, as applied."""
    return LimitCounts().count(state)


def check_limits(
    state: ClusterState, spec: TaskSpec, counts: LimitCounts, *, now: datetime
) -> LimitReached | tuple[LimitUse, ...]:
    """The first limit that holds ``spec`` now, else each limit's evidence for a start.

    A rate allows a start while fewer than its count started in the window ending
    ``now``: the starts the state keeps (server times) plus this pass's own.
    """
    uses: list[LimitUse] = []
    limits = limits_of(state, spec)
    if limits:
        counts.count(state)
    for limit in limits:
        running = counts.running[limit.name]
        if limit.max_running is not None and running >= limit.max_running:
            return LimitReached(limit.name, running, limit.max_running)
        starts: tuple[datetime, ...] = ()
        if limit.rate is not None:
            count, window_s = parse_rate(limit.rate)
            since = now - timedelta(seconds=window_s)
            starts = tuple(t for t in state.limit_starts.get(limit.name, ()) if t > since)
            starts += (now,) * counts.started[limit.name]
            if len(starts) >= count:
                return LimitReached(limit.name, running, limit.max_running, limit.rate)
        uses.append(
            LimitUse(
                name=limit.name,
                running=running,
                max_running=limit.max_running,
                rate=limit.rate,
                window_starts=starts,
            )
        )
    return tuple(uses)


@dataclass(frozen=True, slots=True)
class Assign:
    node_id: str
    candidates: tuple[Candidate, ...]


@dataclass(frozen=True, slots=True)
class Wait:
    reason: str
    would_qualify: tuple[str, ...] = ()
    busy: bool = False
    """Every eligible node is only short of a free slot (the usual wait under load)."""
    limit: LimitReached | None = None
    """The cluster-wide limit that holds the task, when that is why it waits."""


@dataclass(frozen=True, slots=True)
class Reject:
    reason: str
    missing: tuple[str, ...]


Placement = Assign | Wait | Reject


def unknown_skills(state: ClusterState, skills: tuple[str, ...]) -> tuple[str, ...]:
    """Required skills and dependencies no node has: not in the catalog, never reported.

    A skill some node found but cannot run is known: a task for it waits, saying
    what that node lacks.
    """
    return _unknown(state, resolve_dependencies(state, list(skills))["missing"])


def _unknown(state: ClusterState, missing: list[str]) -> tuple[str, ...]:
    """Of the names missing from the catalog, those no node reported either."""
    if not missing:
        return ()  # the common case: no need to gather what every node reported
    return tuple(sorted(set(missing) - reported_skills(state)))


def place(
    state: ClusterState, spec: TaskSpec, *, planned: Mapping[str, int] | None = None
) -> Placement:
    """Decide where ``spec`` goes now; ``planned`` counts assignments not yet applied."""
    # Resolved once per placement: the missing names and the dependencies to check.
    resolved = resolve_dependencies(state, list(spec.skills))
    missing = _unknown(state, resolved["missing"])
    if missing:
        return Reject(f"unknown skills: {', '.join(missing)} (not in the catalog)", missing)
    for dependency in resolved["all"]:
        if not state.holders(dependency):
            return Wait(f"dependency {dependency} has no live instance in the cluster")
    holders = _holders(state, spec.skills)
    if not holders:
        would = _would_qualify(state, spec.skills)
        names = ", ".join(spec.skills)
        if would:
            return Wait(f"no node can run {names} now; {'; '.join(would)}", would_qualify=would)
        return Wait(f"no live node holds {names}")
    planned = planned or {}
    eligible: list[NodeView] = []
    reasons: list[str] = []
    busy = True
    for node_id in holders:
        node = state.nodes[node_id]
        ineligible = _ineligible(state, node, spec, planned.get(node_id, 0))
        if ineligible is None:
            eligible.append(node)
        else:
            reasons.append(f"{node_id} {ineligible.text}")
            busy = busy and ineligible.why is Shortfall.BUSY
    if not eligible:
        busy = busy and bool(reasons)
        return Wait("; ".join(reasons[:MAX_EVIDENCE]) or "no eligible node", busy=busy)
    best = eligible[0]
    for node in eligible[1:]:
        if _better(state, spec, node, best, planned):
            best = node
    ranked = sorted(eligible, key=lambda n: _load(n, planned))[:MAX_EVIDENCE]
    return Assign(best.node_id, tuple(_candidate(state, n, planned) for n in ranked))


def _holders(state: ClusterState, skills: tuple[str, ...]) -> list[str]:
    """Member nodes holding live instances of every skill, by node id (an instance
    registered alone for a node id that is no member counts elsewhere, never here)."""
    common: set[str] | None = None
    for skill in skills:
        nodes = {
            n
            for n in state.holders(skill)
            if n in state.nodes and state.nodes[n].state in MEMBER_STATES
        }
        common = nodes if common is None else common & nodes
    return sorted(common or ())


def _would_qualify(state: ClusterState, skills: tuple[str, ...]) -> tuple[str, ...]:
    """Nodes that found a required skill but cannot run it, with what they lack."""
    hints: list[str] = []
    for node_id, node in sorted(state.nodes.items()):
        if node.state != NodeState.ALIVE:
            continue
        for unavailable in node.unavailable:
            if unavailable.name not in skills:
                continue
            lacks = ", ".join(unavailable.lacks()) or "?"
            install = unavailable.install_text()
            hint = f"{node_id} would run {unavailable.name} with {lacks}"
            hints.append(f"{hint} (install: {install})" if install else hint)
    return tuple(hints)


def _ineligible(
    state: ClusterState, node: NodeView, spec: TaskSpec, planned: int
) -> Ineligible | None:
    if node.state != NodeState.ALIVE:
        return Ineligible(Shortfall.NOT_ALIVE, f"is {node.state}")
    if spec.node_id is not None and node.node_id != spec.node_id:
        return Ineligible(Shortfall.NOT_PINNED, f"is not the pinned node {spec.node_id}")
    running = len(node.running) + planned
    if running >= node.capacity:
        return Ineligible(Shortfall.BUSY, f"is busy ({running}/{node.capacity})")
    for key, value in spec.labels.items():
        if node.labels.get(key) != value:
            return Ineligible(Shortfall.LABEL, f"lacks label {key}={value}")
    shortfall = _resource_shortfall(state, node, spec)
    return Ineligible(Shortfall.RESOURCES, shortfall) if shortfall else None


def _resource_shortfall(state: ClusterState, node: NodeView, spec: TaskSpec) -> str:
    liveness = state.liveness.get(node.node_id)
    memory = node.memory_total_mb or (liveness.memory_total_mb if liveness else 0)
    cpus = node.cpu_count or (liveness.cpu_count if liveness else 0)
    gpus = _gpus(state, node)
    for skill in spec.skills:
        meta = state.skills.get(skill)
        if meta is None:
            continue
        for key, need in meta.resources.items():
            if isinstance(need, str | bool):
                continue  # qualitative: ranks (_gpu_fit), never excludes
            if key == "memory_mb" and memory and memory < need:
                return f"has {memory} MB memory, {skill} needs {need}"
            if key == "cpu" and cpus and cpus < need:
                return f"has {cpus} cpus, {skill} needs {need}"
            if key == "gpu" and gpus < need:
                return f"has {gpus} gpus, {skill} needs {need}"
    return ""


def _gpus(state: ClusterState, node: NodeView) -> int:
    liveness = state.liveness.get(node.node_id)
    return max(node.gpu_count, liveness.gpu_count if liveness else 0)


NO_WANT = frozenset({"", "none", "no", "false", "0"})
"""Qualitative values that ask for nothing (``gpu: "none"``)."""


def _gpu_fit(state: ClusterState, node: NodeView, spec: TaskSpec) -> int:
    """How many required skills want a GPU qualitatively and find one on ``node``."""
    if not _gpus(state, node):
        return 0
    fit = 0
    for skill in spec.skills:
        meta = state.skills.get(skill)
        need = meta.resources.get("gpu") if meta is not None else None
        if need is True or (isinstance(need, str) and need.strip().lower() not in NO_WANT):
            fit += 1
    return fit


def _load(node: NodeView, planned: Mapping[str, int]) -> float:
    return (len(node.running) + planned.get(node.node_id, 0)) / node.capacity


def _usage(state: ClusterState, node_id: str) -> tuple[float, float]:
    liveness = state.liveness.get(node_id)
    return (liveness.cpu_percent, liveness.memory_percent) if liveness else (0.0, 0.0)


def _better(
    state: ClusterState, spec: TaskSpec, a: NodeView, b: NodeView, planned: Mapping[str, int]
) -> bool:
    """True when ``a`` ranks before ``b``."""
    load_a, load_b = _load(a, planned), _load(b, planned)
    if load_a != load_b:
        return load_a < load_b
    if a.success_rate != b.success_rate:
        return a.success_rate > b.success_rate
    fit_a, fit_b = _gpu_fit(state, a, spec), _gpu_fit(state, b, spec)
    if fit_a != fit_b:
        return fit_a > fit_b
    # Nodes on one host read the same machine's load at different instants: a tie.
    same_host = bool(a.hostname) and a.hostname == b.hostname
    (cpu_a, mem_a), (cpu_b, mem_b) = _usage(state, a.node_id), _usage(state, b.node_id)
    if not same_host and abs(cpu_a - cpu_b) > LOAD_TIE_POINTS:
        return cpu_a < cpu_b
    if not same_host and abs(mem_a - mem_b) > LOAD_TIE_POINTS:
        return mem_a < mem_b
    return a.node_id < b.node_id


def _candidate(state: ClusterState, node: NodeView, planned: Mapping[str, int]) -> Candidate:
    cpu, memory = _usage(state, node.node_id)
    # Not validated again: every field is the state's own, of the right type.
    return Candidate.model_construct(
        node_id=node.node_id,
        running=len(node.running) + planned.get(node.node_id, 0),
        capacity=node.capacity,
        success_rate=node.success_rate,
        cpu_percent=cpu,
        memory_percent=memory,
    )

"""What-if placement: replay the recorded task arrivals under a changed cluster.

Used by ``replay_tools what-if`` and the dashboard's what-if page; ``to_json`` is the
document both answer, ``waits_over_time`` the dashboard's chart.

Pure and deterministic: ``simulate(events, heartbeats, scenario)`` takes the records of
both streams and never reads a clock. Time is data: a discrete-event loop over the
recorded instants (membership, skills, heartbeats, arrivals) and the simulated ends of
the tasks it places.

The decisions are the coordinator's own: each arrival goes through ``decide_submit``
and every instant that can unblock a task through ``reconcile`` (both from
``eventsrc.commands.tasks``, which place with ``eventsrc.commands.scheduler.place``);
the simulator only folds the events they return. What changes is the world they see:

- the recorded membership and skill events, with a removed node's filtered out, a
  node's capacity overridden, skills registered on more nodes, a node added at the
  start, a drain requested at a given time;
- the recorded tasks, arriving at their recorded server times with their recorded
  spec (skills, labels, priority, pinning, timeouts). A task occupies its slot for its
  recorded run time (assignment to result of its last attempt), wherever it lands.

Limits: one attempt per task (the recorded outcome, no retries); a task that never ran
takes the median run time of its skills; membership changes (a node leaving, expiring)
happen when they were recorded, up to the window's last recorded task event: after it
the cluster stays as it was.

``Scenario.limits`` (``--limit KEY=N``) sets the cluster-wide limit of a ``limit_key``
to N running: one more injected ``LimitSet`` before the first arrival (as ``_new_node``
and the drains are), the key's recorded limit events left out; ``decide_submit`` and
``reconcile`` then hold the tasks by it unchanged.
"""

from __future__ import annotations

import heapq
import itertools
import math
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from eventsrc.commands import tasks as task_commands
from eventsrc.commands.base import Origin, Stamp
from eventsrc.errors import DomainError, InvalidRequestError
from eventsrc.events import (
    Event,
    Heartbeat,
    LimitRemoved,
    LimitSet,
    NodeDrainRequested,
    NodeJoined,
    SkillInstanceRegistered,
    TaskAssigned,
    TaskCancelled,
    TaskFailed,
    TaskRequeued,
    TaskStarted,
    TaskSubmitted,
    TaskSucceeded,
    TaskTimedOut,
    submission_of,
)
from eventsrc.ports import Record, StoredEvent
from eventsrc.projections.apply import apply, apply_heartbeat
from eventsrc.projections.state import ClusterState, Retention, TaskState
from eventsrc.projections.tasks import not_before

_KEEP_ALL = Retention(max_finished=10**9, max_finished_age_s=100 * 365 * 86400.0)
_ENDS = (TaskSucceeded, TaskFailed, TaskRequeued, TaskTimedOut, TaskCancelled)
ADDED_INCARNATION = "what-if"
DEFAULT_CAPACITY = 4
"""Slots of an ``--add-node`` without ``--capacity`` (a node's own default)."""


Spell = Callable[[str], str]
"""How a caller writes an option: ``skill-on`` -> ``--skill-on`` or ``skill_on``."""


def flag(name: str) -> str:
    """The command line's spelling of an option."""
    return f"--{name}"


@dataclass(frozen=True, slots=True)
class NewNode:
    """A node that was not there: joins at the start of the history."""

    node_id: str
    skills: tuple[str, ...]
    capacity: int = DEFAULT_CAPACITY
    labels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Scenario:
    """What differs from the recorded cluster; empty: replay it as it was."""

    add_nodes: tuple[NewNode, ...] = ()
    remove_nodes: tuple[str, ...] = ()
    capacity: tuple[tuple[str, int], ...] = ()
    drains: tuple[tuple[str, datetime], ...] = ()
    skill_on: tuple[tuple[str, tuple[str, ...]], ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    limits: tuple[tuple[str, int], ...] = ()
    """Cluster-wide limits (``--limit KEY=N``): at most N tasks of that ``limit_key``
    running at once, in place of what the history recorded for the key."""

    def describe(self) -> list[str]:
        """One phrase per change, in a fixed order."""
        said = [
            f"add node {n.node_id} (skills {','.join(n.skills)}, capacity {n.capacity}"
            + (f", labels {','.join(f'{k}={v}' for k, v in n.labels)}" if n.labels else "")
            + ")"
            for n in self.add_nodes
        ]
        said += [f"remove node {n}" for n in self.remove_nodes]
        said += [f"capacity of {n} {c}" for n, c in self.capacity]
        said += [f"drain {n} at {t.isoformat()}" for n, t in self.drains]
        said += [f"skill {s} also on {','.join(nodes)}" for s, nodes in self.skill_on]
        said += [f"limit {k} at {n} running" for k, n in self.limits]
        return said or ["nothing changed (the recorded cluster, re-decided)"]


@dataclass(frozen=True, slots=True)
class TaskOutcome:
    """One task of the window, as recorded and as simulated."""

    task_id: str
    skills: tuple[str, ...]
    priority: int
    submitted_at: datetime
    run_s: float
    run_time_from: str
    """``recorded``, or ``median of <skills>`` for a task that never ran."""
    recorded_node: str | None
    recorded_wait_s: float | None
    recorded_waited: bool
    simulated_node: str | None
    simulated_wait_s: float | None
    simulated_waited: bool
    simulated_state: str
    untried_node: bool
    """Simulated on a node none of its recorded attempts ran on (recorded run time)."""

    @property
    def moved(self) -> bool:
        return (
            self.recorded_node is not None
            and self.simulated_node is not None
            and self.recorded_node != self.simulated_node
        )


@dataclass(frozen=True, slots=True)
class Waits:
    """Queue waits of placed tasks, in seconds."""

    count: int
    p50: float | None
    p95: float | None
    max: float | None


@dataclass(frozen=True, slots=True)
class SkillLine:
    skills: str
    tasks: int
    recorded: Waits
    simulated: Waits


@dataclass(frozen=True, slots=True)
class NodeLine:
    node_id: str
    recorded_capacity: int | None
    simulated_capacity: int | None
    recorded_utilisation: float | None
    simulated_utilisation: float | None
    recorded_tasks: int
    simulated_tasks: int


@dataclass(slots=True)
class Simulation:
    """The outcome of ``simulate``."""

    scenario: Scenario
    window: tuple[datetime, datetime] | None = None
    tasks: list[TaskOutcome] = field(default_factory=list)
    skills: list[SkillLine] = field(default_factory=list)
    overall: SkillLine | None = None
    nodes: list[NodeLine] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# -- the recorded history ---------------------------------------------------------------


@dataclass(slots=True)
class _Recorded:
    """One task as the history tells it."""

    submitted: TaskSubmitted
    at: datetime
    first_assigned: datetime | None = None
    first_node: str | None = None
    waited: bool = False
    attempts: list[tuple[str, datetime, datetime | None]] = field(default_factory=list)
    """(node, assigned at, attempt ended at) per assignment."""
    outcome: str = ""
    last_node: str | None = None

    @property
    def last_event_at(self) -> datetime | None:
        """When its last recorded attempt ended, or its submission when it never ran;
        None while an attempt is still open at the end of the history."""
        return self.attempts[-1][2] if self.attempts else self.at

    @property
    def run_s(self) -> float | None:
        """Assignment to end of the last attempt that ended in a result."""
        if not self.outcome or not self.attempts:
            return None
        _, start, end = self.attempts[-1]
        return None if end is None else max(0.0, (end - start).total_seconds())


def _read_tasks(stored: Sequence[StoredEvent]) -> dict[str, _Recorded]:
    found: dict[str, _Recorded] = {}
    for record in stored:
        event = record.event
        submission = submission_of(event)
        if submission is not None:
            found.setdefault(submission.task_id, _Recorded(submission, record.time))
            if isinstance(event, TaskSubmitted):
                continue
        task = found.get(getattr(event, "task_id", ""))
        if task is None:
            continue
        if isinstance(event, TaskAssigned):
            if task.first_assigned is None:
                task.first_assigned = record.time
                task.first_node = event.node_id
                task.waited = not event.placed_at_submission(task.submitted.event_id)
            task.attempts.append((event.node_id, record.time, None))
            task.last_node = event.node_id
        elif isinstance(event, _ENDS) and task.attempts and task.attempts[-1][2] is None:
            node, start, _ = task.attempts[-1]
            task.attempts[-1] = (node, start, record.time)
            if isinstance(event, TaskSucceeded):
                task.outcome = "succeeded"
            elif isinstance(event, TaskFailed | TaskTimedOut):
                task.outcome = "failed"
    return found


# -- the changed world ------------------------------------------------------------------


@dataclass(order=True, frozen=True, slots=True)
class _Item:
    time: datetime
    rank: int  # recorded, injected, task end, arrival, wake-up at the same instant
    order: int
    payload: Any = field(compare=False, default=None)


_RECORDED, _INJECTED, _END, _ARRIVAL, _WAKE = range(5)


class _World:
    """The simulated state and the queue of what happens next."""

    def __init__(self, run_times: dict[str, tuple[float, str]], outcomes: dict[str, str]) -> None:
        self.state = ClusterState(retention=_KEEP_ALL)
        self.run_times = run_times
        self.outcomes = outcomes
        self.queue: list[_Item] = []
        self._order = itertools.count()
        self._seq = itertools.count(1)
        self._ids = (f"what-if-{n}" for n in itertools.count(1))
        self.assigned: dict[str, tuple[str, datetime, bool]] = {}
        """First simulated assignment per task: node, time, waited."""
        self.busy: list[tuple[str, datetime, datetime]] = []
        self.submits: dict[str, str] = {}
        self.refused: dict[str, str] = {}

    def push(self, time: datetime, rank: int, payload: Any) -> None:
        heapq.heappush(self.queue, _Item(time, rank, next(self._order), payload))

    def stamp(self, now: datetime, producer: str = "coordinator") -> Stamp:
        """Coordinator events carry the leader's epoch; node events none, as recorded."""
        ids = self._ids
        epoch = (self.state.epoch or None) if producer == "coordinator" else None
        return Origin(producer, epoch).stamp(now, new_id=lambda: next(ids))

    def fold(self, event: Event, now: datetime) -> None:
        apply(self.state, event, seq=next(self._seq), time=now)
        if isinstance(event, TaskSubmitted):
            self.submits[event.task_id] = event.event_id
        elif isinstance(event, TaskAssigned):
            self._assigned(event, now)

    def _assigned(self, event: TaskAssigned, now: datetime) -> None:
        if event.task_id not in self.assigned:
            waited = not event.placed_at_submission(self.submits.get(event.task_id))
            self.assigned[event.task_id] = (event.node_id, now, waited)
        started = TaskStarted(
            **self.stamp(now, f"node:{event.node_id}").envelope(),
            task_id=event.task_id,
            node_id=event.node_id,
            attempt=event.attempt,
        )
        apply(self.state, started, seq=next(self._seq), time=now)
        run_s, _ = self.run_times[event.task_id]
        self.push(now + timedelta(seconds=run_s), _END, (event.task_id, event.attempt, now))

    def arrive(self, submitted: TaskSubmitted, now: datetime) -> None:
        command = task_commands.SubmitTask(
            task_id=submitted.task_id,
            spec=submitted.spec,
            submitted_by=submitted.submitted_by,
            parent_task_id=submitted.parent_task_id,
            broadcast_id=submitted.broadcast_id,
        )
        try:
            events = task_commands.decide_submit(self.state, command, stamp=self.stamp(now))
        except DomainError as err:
            self.refused[submitted.task_id] = str(err)
            return
        for event in events:
            self.fold(event, now)
        if submitted.task_id not in self.assigned:
            deadline = now + timedelta(seconds=submitted.spec.queue_timeout_s)
            self.push(deadline + timedelta(microseconds=1), _WAKE, None)
            start = not_before(submitted.spec, now)
            if start is not None and start > now:
                self.push(start, _WAKE, None)  # its delay is over: the next pass places it

    def end(self, task_id: str, attempt: int, since: datetime, now: datetime) -> None:
        task = self.state.tasks.get(task_id)
        if task is None or task.attempt != attempt or task.state != TaskState.RUNNING:
            return  # requeued or ended meanwhile: this attempt's end is not news
        node_id = task.node_id or ""
        envelope = self.stamp(now, f"node:{node_id}").envelope()
        duration = (now - since).total_seconds() * 1000
        outcome = self.outcomes.get(task_id, "succeeded")
        result: Event
        if outcome == "succeeded":
            result = TaskSucceeded(
                **envelope, task_id=task_id, node_id=node_id, attempt=attempt, duration_ms=duration
            )
        else:
            result = TaskFailed(
                **envelope,
                task_id=task_id,
                node_id=node_id,
                attempt=attempt,
                error="failed as recorded",
                duration_ms=duration,
            )
        self.fold(result, now)
        self.busy.append((node_id, since, now))

    def reconcile(self, now: datetime, *, full: bool) -> None:
        decisions = task_commands.reconcile(self.state, stamp=self.stamp(now), full=full)
        for _, events in decisions:
            for event in events:
                self.fold(event, now)


def _check(scenario: Scenario, state: ClusterState, skills: set[str], spell: Spell) -> None:
    """Names the options use must exist in the history (or must not, for a new node)."""
    known = set(state.nodes)
    for node_id in (
        *scenario.remove_nodes,
        *(n for n, _ in scenario.capacity),
        *(n for n, _ in scenario.drains),
    ):
        if node_id not in known:
            raise InvalidRequestError(
                f"node {node_id} is not in the recorded history; known nodes: "
                f"{', '.join(sorted(known)) or 'none'}"
            )
    added = {n.node_id for n in scenario.add_nodes}
    for node in scenario.add_nodes:
        if node.node_id in known:
            raise InvalidRequestError(
                f"{spell('add-node')} {node.node_id}: that node is in the recorded "
                f"history; use {spell('capacity')} or {spell('skill-on')} to change it"
            )
    for skill, nodes in scenario.skill_on:
        if skill not in skills:
            raise InvalidRequestError(
                f"{spell('skill-on')} {skill}: no node in the recorded history holds it; "
                f"known skills: {', '.join(sorted(skills)) or 'none'}"
            )
        for node_id in nodes:
            if node_id not in known | added:
                raise InvalidRequestError(
                    f"{spell('skill-on')} {skill}={node_id}: node {node_id} is not in the "
                    f"recorded history (add it with {spell('add-node')})"
                )


def _membership(stored: Sequence[StoredEvent], scenario: Scenario) -> list[tuple[datetime, Event]]:
    """The recorded non-task events of the changed cluster, with what the options add."""
    removed = set(scenario.remove_nodes)
    capacity = dict(scenario.capacity)
    overridden = {key for key, _ in scenario.limits}
    extra: dict[str, list[str]] = {}
    for skill, nodes in scenario.skill_on:
        for node_id in nodes:
            extra.setdefault(node_id, []).append(skill)
    out: list[tuple[datetime, Event]] = []
    for record in stored:
        event = record.event
        if event.type.startswith("Task") or getattr(event, "node_id", None) in removed:
            continue
        if isinstance(event, LimitSet | LimitRemoved) and event.key in overridden:
            continue  # the option's limit stands in for the recorded one
        if isinstance(event, NodeJoined):
            if event.node_id in capacity:
                event = event.model_copy(update={"capacity": capacity[event.node_id]})
            out.append((record.time, event))
            for skill in extra.get(event.node_id, ()):
                out.append((record.time, _instance(event, skill)))
            continue
        out.append((record.time, event))
    return out


def _instance(joined: NodeJoined, skill: str) -> SkillInstanceRegistered:
    return SkillInstanceRegistered(
        event_id=f"what-if-{joined.node_id}-{skill}-{joined.incarnation}",
        time=joined.time,
        producer=f"node:{joined.node_id}",
        node_id=joined.node_id,
        skill=skill,
        incarnation=joined.incarnation,
    )


def _new_node(node: NewNode, at: datetime, extra: Iterable[str]) -> list[Event]:
    joined = NodeJoined(
        event_id=f"what-if-join-{node.node_id}",
        time=at,
        producer=f"node:{node.node_id}",
        node_id=node.node_id,
        incarnation=ADDED_INCARNATION,
        capacity=node.capacity,
        labels=dict(node.labels),
    )
    skills = sorted({*node.skills, *extra})
    return [joined, *(_instance(joined, skill) for skill in skills)]


# -- the simulation ---------------------------------------------------------------------


def simulate(
    events: Sequence[Record],
    heartbeats: Sequence[Record],
    scenario: Scenario,
    *,
    spell: Spell = flag,
) -> Simulation:
    """Replay the arrivals of ``events`` (``EVENTSRC_EVENTS`` records, stream order)
    under ``scenario``. Raises InvalidRequestError for options the history cannot take,
    naming each option as ``spell`` writes it."""
    report = Simulation(scenario)
    stored = [r for r in events if isinstance(r, StoredEvent)]
    if not stored:
        report.notes.append("the events stream holds no events: nothing to simulate")
        return report
    recorded_state = ClusterState(retention=_KEEP_ALL)
    for seq, record in enumerate(stored, 1):
        apply(recorded_state, record.event, seq=seq, time=record.time)
    skills = set(recorded_state.skills) | set(recorded_state.instances)
    _check(scenario, recorded_state, skills, spell)
    recorded = {
        task_id: task
        for task_id, task in _read_tasks(stored).items()
        if (scenario.since is None or task.at >= scenario.since)
        and (scenario.until is None or task.at <= scenario.until)
    }
    if not recorded:
        report.notes.append("no task was submitted in the window: nothing to simulate")
        return report
    run_times = _run_times(recorded)
    world = _World(run_times, {t: task.outcome or "succeeded" for t, task in recorded.items()})
    start = stored[0].time
    # After the window's last recorded task event the cluster stays as it was: a node
    # stopped once the recorded work was done must not strand work the change delays.
    horizon = max(task.last_event_at or stored[-1].time for task in recorded.values())
    dropped = 0
    for time, event in _membership(stored, scenario):
        if time > horizon:
            dropped += 1
            continue
        world.push(time, _RECORDED, event)
    if dropped:
        report.notes.append(
            f"{dropped} membership or skill event(s) recorded after the window's last task "
            f"event ({horizon.isoformat()}) are not replayed: the cluster stays as it was then"
        )
    extra: dict[str, list[str]] = {}
    for skill, nodes in scenario.skill_on:
        for node_id in nodes:
            extra.setdefault(node_id, []).append(skill)
    for node in scenario.add_nodes:
        for event in _new_node(node, start, extra.get(node.node_id, ())):
            world.push(start, _INJECTED, event)
    for key, most in scenario.limits:
        limit = LimitSet(
            event_id=f"what-if-limit-{key}",
            time=start,
            producer="coordinator",
            key=key,
            max_running=most,
        )
        world.push(start, _INJECTED, limit)
    for node_id, at in scenario.drains:
        drain = NodeDrainRequested(
            event_id=f"what-if-drain-{node_id}",
            time=at,
            producer="coordinator",
            node_id=node_id,
            reason="what-if --drain",
        )
        world.push(at, _INJECTED, drain)
    removed = set(scenario.remove_nodes)
    for beat in heartbeats:
        if (
            isinstance(beat, StoredEvent)
            and isinstance(beat.event, Heartbeat)
            and beat.event.node_id not in removed
            and beat.time <= horizon
        ):
            world.push(beat.time, _RECORDED, beat.event)
    for task in sorted(recorded.values(), key=lambda t: (t.at, t.submitted.task_id)):
        world.push(task.at, _ARRIVAL, task.submitted)
    _run(world)
    capacity = {node_id: node.capacity for node_id, node in recorded_state.nodes.items()}
    _report(report, recorded, world, capacity)
    return report


def _run(world: _World) -> None:
    """The discrete-event loop: each instant's items in rank order, then one reconcile.

    The reconcile is skipped where it could decide nothing the coordinator's would: an
    instant of arrivals only, all placed by ``decide_submit`` (no slot freed). It looks at
    the waiting tasks only, like the coordinator's pass after each event, except at a
    membership change or a queue deadline, where it makes the full pass (lost nodes).
    """
    while world.queue:
        now = world.queue[0].time
        unblocks = full = False
        while world.queue and world.queue[0].time == now:
            item = heapq.heappop(world.queue)
            if item.rank in (_RECORDED, _INJECTED):
                event = item.payload
                if isinstance(event, Heartbeat):
                    apply_heartbeat(world.state, event, seq=next(world._seq), time=now)
                    continue
                if item.rank == _INJECTED and type(event).WRITTEN_BY == "coordinator":
                    event = event.model_copy(update={"epoch": world.state.epoch or None})
                world.fold(event, now)
                unblocks = full = True
            elif item.rank == _END:
                task_id, attempt, since = item.payload
                world.end(task_id, attempt, since, now)
                unblocks = True
            elif item.rank == _ARRIVAL:
                world.arrive(item.payload, now)
                # A task that waits by design (a limit, a chain, a delay) is placed by a
                # reconcile pass only, never by its own submit: the coordinator's next
                # pass sees it.
                unblocks = unblocks or item.payload.task_id in world.state.waiting
            else:
                unblocks = full = True
        if (full and world.state.open_tasks) or (unblocks and world.state.waiting):
            world.reconcile(now, full=full)


def _run_times(recorded: dict[str, _Recorded]) -> dict[str, tuple[float, str]]:
    by_skills: dict[tuple[str, ...], list[float]] = {}
    for task in recorded.values():
        run_s = task.run_s
        if run_s is not None:
            by_skills.setdefault(task.submitted.spec.skills, []).append(run_s)
    out: dict[str, tuple[float, str]] = {}
    for task_id, task in recorded.items():
        run_s = task.run_s
        if run_s is not None:
            out[task_id] = (run_s, "recorded")
            continue
        skills = task.submitted.spec.skills
        known = by_skills.get(skills)
        median = statistics.median(known) if known else 0.0
        out[task_id] = (median, f"median of {'+'.join(skills)}")
    return out


# -- the report -------------------------------------------------------------------------


def percentile(values: Sequence[float], share: float) -> float | None:
    """Nearest-rank percentile (``share`` 0..1) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def _waits(values: Sequence[float]) -> Waits:
    return Waits(
        len(values), percentile(values, 0.5), percentile(values, 0.95), max(values, default=None)
    )


def _line(name: str, outcomes: Sequence[TaskOutcome]) -> SkillLine:
    recorded = [o.recorded_wait_s for o in outcomes if o.recorded_wait_s is not None]
    simulated = [o.simulated_wait_s for o in outcomes if o.simulated_wait_s is not None]
    return SkillLine(name, len(outcomes), _waits(recorded), _waits(simulated))


def _seconds(a: datetime, b: datetime) -> float:
    return round((b - a).total_seconds(), 6)


def _report(
    report: Simulation, recorded: dict[str, _Recorded], world: _World, capacity: dict[str, int]
) -> None:
    state = world.state
    outcomes: list[TaskOutcome] = []
    for task_id, task in sorted(recorded.items(), key=lambda kv: (kv[1].at, kv[0])):
        run_s, source = world.run_times[task_id]
        node, at, waited = world.assigned.get(task_id, (None, None, False))
        sim = state.tasks.get(task_id)
        tried = {attempt[0] for attempt in task.attempts}
        outcomes.append(
            TaskOutcome(
                task_id=task_id,
                skills=task.submitted.spec.skills,
                priority=task.submitted.spec.priority,
                submitted_at=task.at,
                run_s=round(run_s, 6),
                run_time_from=source,
                recorded_node=task.first_node,
                recorded_wait_s=(
                    _seconds(task.at, task.first_assigned) if task.first_assigned else None
                ),
                recorded_waited=task.waited,
                simulated_node=node,
                simulated_wait_s=_seconds(task.at, at) if at is not None else None,
                simulated_waited=waited,
                simulated_state=(
                    "refused" if task_id in world.refused else str(sim.state) if sim else "unknown"
                ),
                untried_node=node is not None and bool(tried) and node not in tried,
            )
        )
    report.tasks = outcomes
    groups: dict[str, list[TaskOutcome]] = {}
    for outcome in outcomes:
        groups.setdefault("+".join(outcome.skills), []).append(outcome)
    report.skills = [_line(name, groups[name]) for name in sorted(groups)]
    report.overall = _line("all", outcomes)
    _utilisation(report, recorded, world, capacity)
    _notes(report, world)


def _utilisation(
    report: Simulation,
    recorded: dict[str, _Recorded],
    world: _World,
    recorded_capacity: dict[str, int],
) -> None:
    first = min(task.at for task in recorded.values())
    ends = [end for task in recorded.values() for _, _, end in task.attempts if end is not None]
    ends += [end for _, _, end in world.busy]
    last = max([first, *ends])
    report.window = (first, last)
    span = (last - first).total_seconds()
    recorded_busy: dict[str, float] = {}
    recorded_count: dict[str, int] = {}
    for task in recorded.values():
        for node_id, start, end in task.attempts:
            if end is not None:
                recorded_busy[node_id] = recorded_busy.get(node_id, 0.0) + _seconds(start, end)
                recorded_count[node_id] = recorded_count.get(node_id, 0) + 1
    simulated_busy: dict[str, float] = {}
    simulated_count: dict[str, int] = {}
    for node_id, start, end in world.busy:
        simulated_busy[node_id] = simulated_busy.get(node_id, 0.0) + _seconds(start, end)
        simulated_count[node_id] = simulated_count.get(node_id, 0) + 1
    lines = []
    for node_id in sorted(set(recorded_capacity) | set(world.state.nodes)):
        sim_node = world.state.nodes.get(node_id)
        rec_cap = recorded_capacity.get(node_id)
        sim_cap = sim_node.capacity if sim_node is not None else None

        def share(busy: dict[str, float], capacity: int | None) -> float | None:
            if capacity is None or span <= 0:
                return None
            return round(busy.get(node_id, 0.0) / (capacity * span), 4)  # noqa: B023

        lines.append(
            NodeLine(
                node_id=node_id,
                recorded_capacity=rec_cap,
                simulated_capacity=sim_cap,
                recorded_utilisation=share(recorded_busy, rec_cap),
                simulated_utilisation=share(simulated_busy, sim_cap),
                recorded_tasks=recorded_count.get(node_id, 0),
                simulated_tasks=simulated_count.get(node_id, 0),
            )
        )
    report.nodes = lines


def _notes(report: Simulation, world: _World) -> None:
    untried = [o for o in report.tasks if o.untried_node]
    if untried:
        nodes = sorted({o.simulated_node or "" for o in untried})
        report.notes.append(
            f"{len(untried)} task(s) placed on a node that never ran them "
            f"({', '.join(nodes)}) use the run time recorded where they ran"
        )
    median = [o for o in report.tasks if o.run_time_from != "recorded"]
    if median:
        report.notes.append(
            f"{len(median)} task(s) never ran in the history; they take the median run time "
            f"of tasks with the same skills"
        )
    unplaced = [o for o in report.tasks if o.simulated_wait_s is None]
    if unplaced:
        report.notes.append(
            f"{len(unplaced)} task(s) never placed in the simulation: "
            + ", ".join(f"{o.task_id} ({o.simulated_state})" for o in unplaced[:10])
        )
    problems = world.state.problems
    set_aside = problems.illegal + problems.fenced
    if set_aside:
        report.notes.append(
            f"the simulated fold set aside {set_aside} event(s) (illegal {problems.illegal}, "
            f"fenced {problems.fenced}): {problems.recent[-1]}"
        )
    report.notes.append(
        "run times are the recorded ones (assignment to result); one attempt per task, "
        "membership changes as recorded"
    )


# -- the document -----------------------------------------------------------------------


def iso(value: datetime | None) -> str | None:
    """A time as ISO 8601 in UTC with a ``Z``, as the event models write it."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _waits_json(waits: Waits) -> dict[str, Any]:
    return {"count": waits.count, "p50": waits.p50, "p95": waits.p95, "max": waits.max}


def _line_json(line: SkillLine) -> dict[str, Any]:
    return {
        "skills": line.skills,
        "tasks": line.tasks,
        "recorded": _waits_json(line.recorded),
        "simulated": _waits_json(line.simulated),
    }


def _task_json(task: TaskOutcome) -> dict[str, Any]:
    return {
        "task_id": task.task_id,
        "skills": list(task.skills),
        "priority": task.priority,
        "submitted_at": iso(task.submitted_at),
        "run_s": task.run_s,
        "run_time_from": task.run_time_from,
        "recorded": {
            "node_id": task.recorded_node,
            "wait_s": task.recorded_wait_s,
            "waited": task.recorded_waited,
        },
        "simulated": {
            "node_id": task.simulated_node,
            "wait_s": task.simulated_wait_s,
            "waited": task.simulated_waited,
            "state": task.simulated_state,
        },
        "moved": task.moved,
        "untried_node": task.untried_node,
    }


def to_json(report: Simulation) -> dict[str, Any]:
    """The ``--json`` document."""
    scenario = report.scenario
    return {
        "scenario": {
            "changes": scenario.describe(),
            "from": iso(scenario.since),
            "until": iso(scenario.until),
        },
        "window": [iso(t) for t in report.window] if report.window else None,
        "overall": _line_json(report.overall) if report.overall else None,
        "skills": [_line_json(line) for line in report.skills],
        "nodes": [
            {
                "node_id": n.node_id,
                "recorded": {
                    "capacity": n.recorded_capacity,
                    "utilisation": n.recorded_utilisation,
                    "tasks": n.recorded_tasks,
                },
                "simulated": {
                    "capacity": n.simulated_capacity,
                    "utilisation": n.simulated_utilisation,
                    "tasks": n.simulated_tasks,
                },
            }
            for n in report.nodes
        ],
        "no_longer_wait": [t.task_id for t in no_longer_wait(report)],
        "newly_wait": [t.task_id for t in newly_wait(report)],
        "moved": [t.task_id for t in report.tasks if t.moved],
        "tasks": [_task_json(task) for task in report.tasks],
        "notes": report.notes,
    }


def no_longer_wait(report: Simulation) -> list[TaskOutcome]:
    """Tasks that waited in the queue and would have been placed on arrival."""
    return [
        t for t in report.tasks if t.recorded_waited and t.simulated_node and not t.simulated_waited
    ]


def newly_wait(report: Simulation) -> list[TaskOutcome]:
    """Tasks placed on arrival that would have waited (or never been placed)."""
    return [
        t
        for t in report.tasks
        if t.recorded_node is not None
        and not t.recorded_waited
        and (t.simulated_waited or t.simulated_node is None)
    ]


def waits_over_time(report: Simulation, buckets: int) -> list[dict[str, Any]]:
    """The waits of the tasks submitted in each of ``buckets`` equal slices of the
    window's submissions: per slice its start and end, how many tasks, and the
    recorded and simulated waits (count, p50, p95, max). Empty slices are kept (zero
    tasks, no waits) so a chart's time axis is even."""
    if not report.tasks or buckets < 1:
        return []
    first = min(t.submitted_at for t in report.tasks)
    last = max(t.submitted_at for t in report.tasks)
    buckets = buckets if last > first else 1  # all at one instant: one slice
    width = (last - first) / buckets
    slices: list[list[TaskOutcome]] = [[] for _ in range(buckets)]
    for task in report.tasks:
        index = int((task.submitted_at - first) / width) if width > timedelta(0) else 0
        slices[min(index, buckets - 1)].append(task)
    out = []
    for index, tasks in enumerate(slices):
        line = _line("", tasks)
        out.append(
            {
                "start": iso(first + width * index),
                "end": iso(first + width * (index + 1)),
                "tasks": len(tasks),
                "recorded": _waits_json(line.recorded),
                "simulated": _waits_json(line.simulated),
            }
        )
    return out

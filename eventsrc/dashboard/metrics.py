"""The coordinator's Prometheus metrics, read from its projection.

Gauges (tasks and nodes by state, queue depth, heartbeat ages, lag, problems, epoch,
is-leader) are computed at scrape time. The counters (tasks ended by outcome and skill,
placements) and the submit-to-end latency histogram count what changed in the projection
since this process started: ``ClusterTracker.observe`` compares the tasks in memory with
what it saw last, every second and at each scrape, so every coordinator (leader or
standby) counts the same cluster-wide transitions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from eventsrc.dashboard.views import oldest_waiting_s, waiting
from eventsrc.projections.state import (
    ClusterState,
    NodeState,
    TaskState,
    TaskView,
)

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600, 4 * 3600)


class ClusterTracker:
    """Counts task endings and placements by comparing successive looks at a state."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.ended = Counter(
            "eventsrc_tasks_ended",
            "Tasks that reached a final state, by outcome (the state) and first skill",
            ["outcome", "skill"],
            registry=registry,
        )
        self.placements = Counter(
            "eventsrc_placements", "Attempts placed on a node", registry=registry
        )
        self.latency = Histogram(
            "eventsrc_task_latency_seconds",
            "Submit-to-end time of tasks that ended, by outcome",
            ["outcome"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        # Ended tasks already counted (pruned to those still in memory), and attempts
        # counted per open task.
        self._ended: set[str] = set()
        self._placed: dict[str, int] = {}
        self._primed = False
        self._looked_at = -1

    def observe(self, state: ClusterState) -> None:
        """Count what changed since the last look (no await: a consistent state).

        A look walks the open tasks and the tasks that ended since the last one (the
        newest end of ``state.finished``), not the finished history in memory; a state
        no event moved since is not walked at all: an idle coordinator pays nothing.
        """
        if state.last_seq == self._looked_at:
            return
        self._looked_at = state.last_seq
        counting = self._primed
        self._primed = True
        for task_id in state.open_tasks:
            task = state.tasks.get(task_id)
            if task is not None:
                self._count_placements(task, counting)
        newly_ended: list[str] = []
        for task_id in reversed(state.finished):
            if task_id in self._ended:
                break
            newly_ended.append(task_id)
        for task_id in reversed(newly_ended):
            self._ended.add(task_id)
            task = state.tasks.get(task_id)
            if task is None:
                continue
            self._count_placements(task, counting)
            self._placed.pop(task_id, None)
            if counting:
                self._count_end(task)
        # Finished tasks leave memory oldest first and never come back: forget them.
        if len(self._ended) > 2 * len(state.finished) + 64:
            self._ended.intersection_update(state.finished)
        if len(self._placed) > 2 * len(state.open_tasks) + 64:
            self._placed = {t: n for t, n in self._placed.items() if t in state.open_tasks}

    def _count_placements(self, task: TaskView, counting: bool) -> None:
        # Attempts placed so far: the current one counts once it has a node.
        on_node = task.node_id is not None and task.state != TaskState.QUEUED
        placed = task.attempt if on_node else task.attempt - 1
        before = self._placed.get(task.task_id, 0 if counting else placed)
        if placed > before:
            self.placements.inc(placed - before)
        self._placed[task.task_id] = max(before, placed)

    def _count_end(self, task: TaskView) -> None:
        skill = task.spec.skills[0] if task.spec.skills else ""
        self.ended.labels(outcome=task.state.value, skill=skill).inc()
        if task.submitted_at is not None and task.finished_at is not None:
            took = (task.finished_at - task.submitted_at).total_seconds()
            self.latency.labels(outcome=task.state.value).observe(max(took, 0.0))


class ClusterCollector(Collector):
    """The scrape-time gauges of one coordinator's projection."""

    def __init__(
        self,
        state: Callable[[], ClusterState],
        *,
        stream_last_seq: Callable[[], int],
        leading: Callable[[], bool],
        tracker: ClusterTracker,
    ) -> None:
        self._state = state
        self._stream_last_seq = stream_last_seq
        self._leading = leading
        self._tracker = tracker

    def collect(self) -> Iterator[Metric]:
        state = self._state()
        self._tracker.observe(state)
        now = datetime.now(UTC)
        by_state = GaugeMetricFamily("eventsrc_tasks", "Tasks in memory by state", labels=["state"])
        counts = {s.value: 0 for s in TaskState}
        for task in state.tasks.values():
            counts[task.state.value] += 1
        for name, count in counts.items():
            by_state.add_metric([name], count)
        yield by_state
        yield GaugeMetricFamily(
            "eventsrc_queue_depth", "Tasks waiting for a node", value=len(waiting(state))
        )
        yield GaugeMetricFamily(
            "eventsrc_queue_oldest_seconds",
            "How long the oldest waiting task has waited",
            value=oldest_waiting_s(state, now),
        )
        nodes = GaugeMetricFamily("eventsrc_nodes", "Nodes by state", labels=["state"])
        node_counts = {s.value: 0 for s in NodeState}
        for node in state.nodes.values():
            node_counts[node.state.value] += 1
        for name, count in node_counts.items():
            nodes.add_metric([name], count)
        yield nodes
        ages = GaugeMetricFamily(
            "eventsrc_node_heartbeat_age_seconds",
            "Seconds since the newest heartbeat of each member node",
            labels=["node"],
        )
        for node_id, node in sorted(state.nodes.items()):
            liveness = state.liveness.get(node_id)
            if liveness is not None and node.state in (NodeState.ALIVE, NodeState.DRAINING):
                ages.add_metric([node_id], max((now - liveness.last_at).total_seconds(), 0.0))
        yield ages
        stream_last = max(self._stream_last_seq(), state.last_seq)
        yield GaugeMetricFamily(
            "eventsrc_stream_last_seq", "Last sequence of the events stream", value=stream_last
        )
        yield GaugeMetricFamily(
            "eventsrc_projection_applied_seq",
            "Last stream sequence this projection applied",
            value=state.last_seq,
        )
        yield GaugeMetricFamily(
            "eventsrc_projection_lag_events",
            "Events stored but not applied here yet (stream last sequence - applied)",
            value=max(stream_last - state.last_seq, 0),
        )
        problems = state.problems
        figures = {
            "fenced": problems.fenced,
            "illegal": problems.illegal,
            "late": problems.late,
            "undecodable": problems.undecodable,
            "undecodable_heartbeats": state.heartbeat_problems.undecodable,
        }
        # Counted by the fold since the start of the stream (or the snapshot's history).
        family = CounterMetricFamily(
            "eventsrc_problem_events",
            "Stored events that could not change the state, by kind (whole history)",
            labels=["kind"],
        )
        for kind, count in figures.items():
            family.add_metric([kind], count)
        yield family
        yield GaugeMetricFamily("eventsrc_leader_epoch", "Newest leader epoch", value=state.epoch)
        yield GaugeMetricFamily(
            "eventsrc_is_leader",
            "1 while this coordinator leads, 0 for a standby or a dashboard of its own",
            value=1 if self._leading() else 0,
        )

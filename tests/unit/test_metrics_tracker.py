"""The coordinator's task counters, counted from successive looks at a state: pure."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from eventsrc.dashboard.metrics import ClusterTracker
from eventsrc.projections.state import TaskState
from tests.unit.cluster import python_on


def ended(registry: CollectorRegistry) -> float:
    value = registry.get_sample_value(
        "eventsrc_tasks_ended_total", {"outcome": "succeeded", "skill": "python"}
    )
    return value or 0.0


def test_tasks_ended_after_the_first_look_are_counted_once() -> None:
    registry = CollectorRegistry()
    tracker = ClusterTracker(registry)
    cluster = python_on("a").results("a", ok=2)
    tracker.observe(cluster.state)  # the first look: what ended before is history
    assert ended(registry) == 0

    cluster.results("a", ok=3)
    tracker.observe(cluster.state)
    tracker.observe(cluster.state)  # nothing moved since: nothing counted twice
    assert ended(registry) == 3
    assert registry.get_sample_value("eventsrc_placements_total") == 3


def test_a_look_walks_open_and_newly_ended_tasks_not_the_finished_history() -> None:
    registry = CollectorRegistry()
    tracker = ClusterTracker(registry)
    cluster = python_on("a").results("a", ok=50).occupy("a")
    tracker.observe(cluster.state)
    old = next(iter(cluster.state.finished))
    # Changed behind the fold's back: a look that walked the history would count it.
    cluster.state.tasks[old].state = TaskState.FAILED
    cluster.results("a", ok=2)
    tracker.observe(cluster.state)
    assert ended(registry) == 2
    failed = registry.get_sample_value(
        "eventsrc_tasks_ended_total", {"outcome": "failed", "skill": "python"}
    )
    assert failed is None
    assert registry.get_sample_value("eventsrc_placements_total") == 2


def test_a_task_placed_and_ended_between_two_looks_counts_both() -> None:
    registry = CollectorRegistry()
    tracker = ClusterTracker(registry)
    cluster = python_on("a")
    tracker.observe(cluster.state)
    cluster.occupy("a")
    tracker.observe(cluster.state)  # the running one: one placement
    cluster.results("a", ok=1)
    tracker.observe(cluster.state)
    assert registry.get_sample_value("eventsrc_placements_total") == 2
    assert ended(registry) == 1


def test_a_state_no_event_moved_is_not_walked_again() -> None:
    registry = CollectorRegistry()
    tracker = ClusterTracker(registry)
    cluster = python_on("a")
    tracker.observe(cluster.state)
    cluster.occupy("a")
    tracker.observe(cluster.state)
    (task,) = cluster.state.tasks.values()
    task.attempt = 5  # behind the fold's back, at the same position
    tracker.observe(cluster.state)
    assert registry.get_sample_value("eventsrc_placements_total") == 1  # not walked
    cluster.state.last_seq += 1
    tracker.observe(cluster.state)
    assert registry.get_sample_value("eventsrc_placements_total") == 5

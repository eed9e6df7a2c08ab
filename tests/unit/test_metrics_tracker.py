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


def test_a_state_no_event_moved_is_not_walked_again() -> None:
    registry = CollectorRegistry()
    tracker = ClusterTracker(registry)
    cluster = python_on("a").occupy("a")
    tracker.observe(cluster.state)
    (task,) = cluster.state.tasks.values()
    task.state = TaskState.SUCCEEDED  # changed behind the fold's back: no event applied
    tracker.observe(cluster.state)
    assert ended(registry) == 0  # the same position: not walked
    cluster.state.last_seq += 1
    tracker.observe(cluster.state)
    assert ended(registry) == 1

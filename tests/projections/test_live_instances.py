"""Which instances count (live) and what get_stats says: pure folds, no server."""

from __future__ import annotations

from datetime import timedelta

from eventsrc.commands.base import COORDINATOR
from eventsrc.commands.registry import ExpireStale, decide_expire_stale
from eventsrc.commands.scheduler import Wait, place
from eventsrc.events import SkillInstanceExpired, SkillUpdated, TaskSpec
from eventsrc.projections.queries import registry_stats, skill_instances
from tests.projections.builders import (
    Fold,
    coord,
    instance,
    joined,
    left,
    skill_registered,
    uninstance,
)


def test_instances_of_a_node_that_left_are_offline_until_registered_again() -> None:
    run = Fold()
    run.fold(skill_registered("python"), joined("n1"), instance("python", "n1"))
    assert registry_stats(run.state)["total_instances"] == 1

    run.fold(left("n1"))
    stats = registry_stats(run.state)
    assert (stats["total_instances"], stats["offline_instances"]) == (0, 1)
    assert skill_instances(run.state, "python") == []
    assert [i.status for i in skill_instances(run.state, "python", include_offline=True)] == [
        "offline"
    ]

    # The week-5 registry-only use: registered again for the id, with no node behind it.
    run.fold(instance("python", "n1"))
    stats = registry_stats(run.state)
    assert (stats["total_instances"], stats["offline_instances"]) == (1, 0)
    assert stats["total_registrations"] == 2
    assert [i.node_id for i in skill_instances(run.state, "python")] == ["n1"]
    # It counts, but nothing is placed on a node that left.
    placement = place(run.state, TaskSpec(skills=("python",)))
    assert isinstance(placement, Wait) and "no live node holds python" in placement.reason

    # It expires on its own, like one for a node id that never joined.
    now = Fold.time(run.seq) + timedelta(seconds=60)
    events = decide_expire_stale(
        run.state, ExpireStale(stale_after_s=30), stamp=COORDINATOR.stamp(now)
    )
    assert [type(e) for e in events] == [SkillInstanceExpired]

    run.fold(uninstance("python", "n1"))
    assert registry_stats(run.state)["total_unregistrations"] == 1


def test_the_catalog_times_come_from_its_events() -> None:
    run = Fold()
    run.fold(skill_registered("python"))
    first = run.state.skills["python"]
    assert first.created_at == first.updated_at == Fold.time(1)
    changed = first.content().model_copy(update={"version": "2.0"})
    run.fold(SkillUpdated(**coord(), metadata=changed))
    updated = run.state.skills["python"]
    assert (updated.created_at, updated.updated_at) == (Fold.time(1), Fold.time(2))
    assert registry_stats(run.state)["category_counts"] == {"system": 1}

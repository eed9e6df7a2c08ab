"""Placement as pure code: qualitative resources rank and never exclude; priorities."""

from __future__ import annotations

from eventsrc.commands.base import COORDINATOR
from eventsrc.commands.scheduler import Assign, Wait, place
from eventsrc.commands.tasks import reconcile
from eventsrc.events import (
    EVENT_ADAPTER,
    NodeJoined,
    SkillMetadata,
    SkillRegistered,
    TaskAssigned,
    TaskPriority,
    TaskSpec,
    TaskSubmitted,
)
from eventsrc.projections.state import ClusterState
from tests.factories import T0
from tests.projections.builders import LATER, Fold, by_node, coord, instance


def catalog_skill(**resources: object) -> SkillRegistered:
    # Through JSON, as the event is stored: a boolean must come back a boolean.
    meta = SkillMetadata.model_validate({"name": "render", "required_resources": resources})
    event = SkillRegistered(**coord(), metadata=meta)
    decoded = EVENT_ADAPTER.validate_json(event.model_dump_json())
    assert isinstance(decoded, SkillRegistered)
    return decoded


def node(node_id: str, *, gpus: int = 0, capacity: int = 2) -> NodeJoined:
    return NodeJoined(
        **by_node(node_id), node_id=node_id, incarnation="i1", capacity=capacity, gpu_count=gpus
    )


def cluster(*nodes: NodeJoined, **resources: object) -> ClusterState:
    run = Fold()
    run.fold(catalog_skill(**resources))
    for joined in nodes:
        run.fold(joined, instance("render", joined.node_id))
    return run.state


def test_a_boolean_gpu_requirement_stays_a_boolean() -> None:
    state = cluster(node("a"), gpu=True)
    assert state.skills["render"].resources == {"gpu": True}
    assert state.skills["render"].required_resources["gpu"] is True


def test_a_boolean_gpu_requirement_never_excludes_a_node_without_one() -> None:
    state = cluster(node("cpu-only"), gpu=True)
    placement = place(state, TaskSpec(skills=("render",)))
    assert isinstance(placement, Assign) and placement.node_id == "cpu-only"


def test_a_qualitative_gpu_requirement_ranks_the_node_with_one_first() -> None:
    # Otherwise tied, the node id would pick "a"; the GPU on "b" weighs more.
    for want in (True, "recommended"):
        state = cluster(node("a"), node("b", gpus=1), gpu=want)
        placement = place(state, TaskSpec(skills=("render",)))
        assert isinstance(placement, Assign) and placement.node_id == "b", want


def test_no_gpu_wanted_leaves_the_ranking_alone() -> None:
    for want in (False, "none"):
        state = cluster(node("a"), node("b", gpus=1), gpu=want)
        placement = place(state, TaskSpec(skills=("render",)))
        assert isinstance(placement, Assign) and placement.node_id == "a", want


def test_a_numeric_gpu_requirement_is_still_a_hard_limit() -> None:
    state = cluster(node("cpu-only"), gpu=1)
    placement = place(state, TaskSpec(skills=("render",)))
    assert isinstance(placement, Wait)
    assert "has 0 gpus, render needs 1" in placement.reason


def test_week5_priorities_map_so_that_critical_runs_first() -> None:
    ranks = [TaskSpec(skills=("render",), priority=p).priority for p in TaskPriority]
    assert ranks == [20, 10, 0, -10]  # CRITICAL, HIGH, NORMAL, LOW: higher runs first
    assert TaskSpec(skills=("render",), priority=3).priority == 3  # eventsrc's own scale

    # One free slot, three waiting tasks: the CRITICAL one goes first, though submitted last.
    run = Fold(cluster(node("a", capacity=1)))
    run.seq = 10
    for task_id, priority in (
        ("low", TaskPriority.LOW),
        ("plain", 0),
        ("urgent", TaskPriority.CRITICAL),
    ):
        spec = TaskSpec(skills=("render",), priority=priority)
        run.fold(TaskSubmitted(**coord(), task_id=task_id, spec=spec, queue_deadline=LATER))
    decisions = reconcile(run.state, stamp=COORDINATOR.stamp(T0))
    assigned = [e.task_id for _, events in decisions for e in events if isinstance(e, TaskAssigned)]
    assert assigned == ["urgent"]

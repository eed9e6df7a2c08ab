"""Each decide function as pure code: the exact events it returns, or the error it raises."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from eventsrc.commands.base import COORDINATOR, Origin
from eventsrc.commands.registry import (
    ExpireStale,
    RegisterInstance,
    RegisterSkill,
    UnregisterInstance,
    decide_expire_stale,
    decide_register_instance,
    decide_register_skill,
    decide_unregister_instance,
    in_use_message,
    live_holder,
)
from eventsrc.commands.tasks import (
    CancelTask,
    DrainNode,
    Limits,
    QueueFullError,
    SubmitTask,
    decide_cancel,
    decide_drain,
    decide_submit,
)
from eventsrc.errors import DomainError, InvalidRequestError, NotFoundError, PayloadTooLargeError
from eventsrc.events import (
    Candidate,
    Event,
    NodeDrainCancelled,
    NodeDrainRequested,
    NodeExpired,
    SkillCategory,
    SkillInstanceExpired,
    SkillInstanceRegistered,
    SkillInstanceUnregistered,
    SkillMetadata,
    SkillRegistered,
    SkillUpdated,
    TaskAssigned,
    TaskCancelled,
    TaskCancelRequested,
    TaskQueued,
    TaskRejected,
    TaskSpec,
    TaskSubmitted,
)
from eventsrc.projections.state import ClusterState
from tests.factories import T0
from tests.projections.builders import (
    assigned,
    cancelled,
    failed,
    instance,
    requeued,
    started,
    submitted,
    succeeded,
    uninstance,
)
from tests.unit.cluster import Cluster, decided, made, python_on

NOW = T0 + timedelta(hours=2)
EPOCH_3 = Origin(producer="coordinator", epoch=3)


def stamp(n: int, **options: Any) -> dict[str, Any]:
    """The envelope of the ``n``-th event a decision made at NOW."""
    return made(n, NOW, **options)


def submit(task_id: str = "t1", **spec: Any) -> SubmitTask:
    return SubmitTask(
        task_id=task_id, spec=TaskSpec.model_validate({"skills": ("python",), **spec})
    )


def submitted_event(command: SubmitTask, *, origin: Origin = COORDINATOR, **extra: Any) -> Event:
    return TaskSubmitted(
        **stamp(1, origin=origin, causation_id=extra.pop("causation_id", None)),
        task_id=command.task_id,
        spec=command.spec,
        submitted_by=command.submitted_by,
        parent_task_id=command.parent_task_id,
        broadcast_id=command.broadcast_id,
        queue_deadline=NOW + timedelta(seconds=command.spec.queue_timeout_s),
    )


def assigned_event(command: SubmitTask, node_id: str, candidates: tuple[Candidate, ...]) -> Event:
    return TaskAssigned(
        **stamp(2, causation_id="e1"),
        task_id=command.task_id,
        node_id=node_id,
        attempt=1,
        skills=command.spec.skills,
        payload=command.spec.payload,
        task_type=command.spec.task_type,
        run_timeout_s=command.spec.run_timeout_s,
        run_deadline=NOW + timedelta(seconds=command.spec.run_timeout_s),
        candidates=candidates,
    )


def run_submit(
    state: ClusterState, command: SubmitTask, *, origin: Origin = COORDINATOR, **options: Any
) -> tuple[Event, ...]:
    return decide_submit(state, command, stamp=decided(NOW, origin=origin), **options)


def test_submit_places_the_task_on_a_free_node_at_once() -> None:
    command = submit(payload={"code": "1"}, run_timeout_s=30, task_type="eval")
    events = run_submit(python_on("a").state, command)
    candidates = (Candidate(node_id="a", running=0, capacity=2),)
    assert events == (submitted_event(command), assigned_event(command, "a", candidates))


def test_submit_queues_a_task_nobody_can_run_and_says_why() -> None:
    command = submit()
    events = run_submit(Cluster().skill("python").state, command)
    queued = TaskQueued(
        **stamp(2, causation_id="e1"), task_id="t1", reason="no live node holds python"
    )
    assert events == (submitted_event(command), queued)


def test_submit_rejects_unknown_skills_in_the_same_decision() -> None:
    command = SubmitTask(task_id="t1", spec=TaskSpec(skills=("nope",)))
    events = run_submit(ClusterState(), command)
    rejected = TaskRejected(
        **stamp(2, causation_id="e1"),
        task_id="t1",
        reason="unknown skills: nope (not in the catalog)",
        missing_skills=("nope",),
    )
    assert events == (submitted_event(command), rejected)


@pytest.mark.parametrize(
    ("build", "planned"),
    [
        pytest.param(lambda: python_on("a", capacity=1).occupy("a"), None, id="occupied"),
        pytest.param(lambda: python_on("a", capacity=1), {"a": 1}, id="planned"),
    ],
)
def test_submit_says_nothing_more_when_only_a_slot_is_missing(
    build: Callable[[], Cluster], planned: dict[str, int] | None
) -> None:
    command = submit()
    assert run_submit(build().state, command, planned=planned) == (submitted_event(command),)


def test_submit_says_why_when_a_label_is_missing_whatever_its_value_reads() -> None:
    # A label value with "is busy" in it once passed for a node short of a slot: the
    # task then waited silently, its reason left at "awaiting placement".
    command = submit(labels={"note": "never is busy"})
    events = run_submit(python_on("a").state, command)
    queued = TaskQueued(
        **stamp(2, causation_id="e1"), task_id="t1", reason="a lacks label note=never is busy"
    )
    assert events == (submitted_event(command), queued)


def test_submit_stamps_the_origin_and_keeps_who_and_what_broadcast() -> None:
    command = SubmitTask(
        task_id="t1",
        spec=TaskSpec(skills=("python",), queue_timeout_s=5),
        submitted_by="alice",
        broadcast_id="b1",
    )
    events = run_submit(Cluster().skill("python").state, command, origin=EPOCH_3)
    assert events[0] == submitted_event(command, origin=EPOCH_3)
    assert events[0].queue_deadline == NOW + timedelta(seconds=5)  # type: ignore[union-attr]
    assert (events[1].producer, events[1].epoch) == ("coordinator", 3)


@pytest.mark.parametrize(
    ("parent_known", "causation_id"), [(True, "parent-submission"), (False, None)]
)
def test_a_sub_task_is_caused_by_its_parents_submission_when_known(
    parent_known: bool, causation_id: str | None
) -> None:
    cluster = Cluster().skill("python")
    if parent_known:
        parent = submitted("parent").model_copy(update={"event_id": "parent-submission"})
        cluster.run.fold(parent)
    command = SubmitTask(
        task_id="child", spec=TaskSpec(skills=("python",)), parent_task_id="parent"
    )
    events = run_submit(cluster.state, command)
    assert events[0] == submitted_event(command, causation_id=causation_id)
    assert events[0].parent_task_id == "parent"  # type: ignore[union-attr]


def test_resubmitting_the_same_request_is_idempotent() -> None:
    cluster = Cluster().skill("python")
    cluster.run.fold(submitted("t1"))
    assert run_submit(cluster.state, submit("t1", max_attempts=3)) == ()


def test_resubmitting_an_id_with_another_request_is_refused() -> None:
    cluster = Cluster().skill("python")
    cluster.run.fold(submitted("t1"))
    with pytest.raises(DomainError, match=r"^task t1 exists with a different request; use an"):
        run_submit(cluster.state, submit("t1", priority=5))


def test_a_full_queue_refuses_new_tasks() -> None:
    cluster = Cluster().skill("python")
    cluster.run.fold(submitted("w1"), submitted("w2"))
    with pytest.raises(
        QueueFullError, match=r"^2 tasks are waiting \(limit 2\); submit later or add nodes$"
    ):
        run_submit(cluster.state, submit("t3"), limits=Limits(max_queued=2))
    assert len(run_submit(cluster.state, submit("t3"), limits=Limits(max_queued=3))) == 2


@pytest.mark.parametrize(
    ("payload", "limit", "size"),
    [("x" * 20, 21, 22), ({"k": [1, 2, 3]}, 10, 13)],
)
def test_a_payload_over_the_limit_is_refused_with_its_size(
    payload: Any, limit: int, size: int
) -> None:
    with pytest.raises(
        PayloadTooLargeError,
        match=rf"^the payload is {size} bytes as JSON; the limit is {limit} \(max_payload_bytes\)",
    ):
        run_submit(
            python_on("a").state, submit(payload=payload), limits=Limits(max_payload_bytes=limit)
        )


def test_a_payload_at_the_limit_is_accepted() -> None:
    events = run_submit(
        python_on("a").state, submit(payload="x" * 20), limits=Limits(max_payload_bytes=22)
    )
    assert [type(e) for e in events] == [TaskSubmitted, TaskAssigned]


def test_a_payload_that_is_not_json_is_an_invalid_request() -> None:
    with pytest.raises(InvalidRequestError, match=r"send numbers as strings$"):
        run_submit(python_on("a").state, submit(payload=[2**64]))


def task_in(*events: Event) -> ClusterState:
    cluster = python_on("n1")
    cluster.run.fold(*events)
    return cluster.state


CANCELS = [
    pytest.param(
        lambda: task_in(submitted("t1")),
        lambda: (TaskCancelled(**stamp(1), task_id="t1", reason="cancelled by user", attempt=1),),
        id="queued",
    ),
    pytest.param(
        lambda: task_in(submitted("t1"), assigned("t1", "n1")),
        lambda: (
            TaskCancelRequested(
                **stamp(1), task_id="t1", node_id="n1", attempt=1, reason="cancelled by user"
            ),
            TaskCancelled(**stamp(2), task_id="t1", reason="cancelled by user", attempt=1),
        ),
        id="assigned",
    ),
    pytest.param(
        lambda: task_in(submitted("t1"), assigned("t1", "n1"), started("t1", "n1")),
        lambda: (
            TaskCancelRequested(
                **stamp(1), task_id="t1", node_id="n1", attempt=1, reason="cancelled by user"
            ),
            TaskCancelled(**stamp(2), task_id="t1", reason="cancelled by user", attempt=1),
        ),
        id="running",
    ),
    pytest.param(
        lambda: task_in(submitted("t1"), assigned("t1", "n1"), requeued("t1", "n1")),
        lambda: (TaskCancelled(**stamp(1), task_id="t1", reason="cancelled by user", attempt=2),),
        id="requeued-waits-at-attempt-2",
    ),
    pytest.param(
        lambda: task_in(submitted("t1"), assigned("t1", "n1"), failed("t1", "n1", retryable=True)),
        lambda: (TaskCancelled(**stamp(1), task_id="t1", reason="cancelled by user", attempt=1),),
        id="retry-pending",
    ),
    pytest.param(
        lambda: task_in(
            submitted("t1"), assigned("t1", "n1"), started("t1", "n1"), succeeded("t1", "n1")
        ),
        lambda: (),
        id="succeeded",
    ),
    pytest.param(lambda: task_in(submitted("t1"), cancelled("t1")), lambda: (), id="cancelled"),
    pytest.param(
        lambda: task_in(submitted("t1"), assigned("t1", "n1"), failed("t1", "n1", retryable=False)),
        lambda: (),
        id="failed",
    ),
]


@pytest.mark.parametrize(("build", "expected"), CANCELS)
def test_cancel_tells_the_running_node_and_ends_the_task(
    build: Callable[[], ClusterState], expected: Callable[[], tuple[Event, ...]]
) -> None:
    events = decide_cancel(build(), CancelTask(task_id="t1"), stamp=decided(NOW))
    assert events == expected()


def test_cancel_carries_the_reason_and_origin() -> None:
    state = task_in(submitted("t1"))
    command = CancelTask(task_id="t1", reason="no longer needed")
    events = decide_cancel(state, command, stamp=decided(NOW, origin=EPOCH_3))
    assert events == (
        TaskCancelled(
            **stamp(1, origin=EPOCH_3), task_id="t1", reason="no longer needed", attempt=1
        ),
    )


def test_cancel_of_an_unknown_task_says_how_to_find_one() -> None:
    with pytest.raises(NotFoundError, match=r"^no task t9; check the id \(eventsrc tasks --all\)$"):
        decide_cancel(ClusterState(), CancelTask(task_id="t9"), stamp=decided(NOW))


DRAINS: list[Any] = [
    pytest.param(
        lambda: python_on("a"),
        DrainNode(node_id="a"),
        (NodeDrainRequested(**stamp(1), node_id="a", reason="drain requested"),),
        id="drain-alive",
    ),
    pytest.param(
        lambda: python_on("a"),
        DrainNode(node_id="a", reason="maintenance"),
        (NodeDrainRequested(**stamp(1), node_id="a", reason="maintenance"),),
        id="drain-with-reason",
    ),
    pytest.param(lambda: python_on("a").drain("a"), DrainNode(node_id="a"), (), id="drain-twice"),
    pytest.param(
        lambda: python_on("a").drain("a"),
        DrainNode(node_id="a", off=True),
        (NodeDrainCancelled(**stamp(1), node_id="a", reason="drain requested"),),
        id="undrain",
    ),
    pytest.param(
        lambda: python_on("a"), DrainNode(node_id="a", off=True), (), id="undrain-not-drained"
    ),
    pytest.param(
        lambda: python_on("a").drain("a").leave("a"),
        DrainNode(node_id="a", off=True, reason="back"),
        (NodeDrainCancelled(**stamp(1), node_id="a", reason="back"),),
        id="undrain-a-departed-node",
    ),
    pytest.param(
        lambda: python_on("a").drain("a").leave("a").node("a", "python", incarnation="i2"),
        DrainNode(node_id="a"),
        (),
        id="drain-holds-across-rejoin",
    ),
]


@pytest.mark.parametrize(("build", "command", "expected"), DRAINS)
def test_drain_and_undrain(
    build: Callable[[], Cluster], command: DrainNode, expected: tuple[Event, ...]
) -> None:
    assert decide_drain(build().state, command, stamp=decided(NOW)) == expected


def test_drain_refuses_a_node_it_never_saw() -> None:
    with pytest.raises(NotFoundError) as caught:
        decide_drain(Cluster().state, DrainNode(node_id="a"), stamp=decided(NOW))
    assert str(caught.value) == "no node a; see `eventsrc nodes`"


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda: python_on("a").leave("a"), id="left"),
        pytest.param(lambda: python_on("a").expire("a"), id="expired"),
    ],
)
def test_a_node_that_is_gone_may_be_drained_for_when_it_joins(
    build: Callable[[], Cluster],
) -> None:
    (event,) = decide_drain(build().state, DrainNode(node_id="a"), stamp=decided(NOW))
    assert isinstance(event, NodeDrainRequested) and event.until_undrained


def meta(name: str = "python", **fields: Any) -> SkillMetadata:
    return SkillMetadata.model_validate({"name": name, **fields})


REGISTRATIONS: list[Any] = [
    pytest.param(Cluster, meta(), SkillRegistered, id="new"),
    pytest.param(lambda: Cluster().skill("python"), meta(), None, id="unchanged"),
    pytest.param(
        lambda: Cluster().skill("python"),
        meta(created_at=T0, updated_at=T0),
        None,
        id="unchanged-but-for-catalog-times",
    ),
    pytest.param(
        lambda: Cluster().skill("python"), meta(version="2.0.0"), SkillUpdated, id="new-version"
    ),
    pytest.param(
        lambda: Cluster().skill("python"),
        meta(category=SkillCategory.SYSTEM),
        SkillUpdated,
        id="new-category",
    ),
    pytest.param(
        lambda: Cluster().skill("python"),
        meta(resources={"gpu": True}),
        SkillUpdated,
        id="resources",
    ),
    pytest.param(lambda: Cluster().skill("other"), meta(), SkillRegistered, id="other-name"),
]


@pytest.mark.parametrize(("build", "proposed", "expected"), REGISTRATIONS)
def test_register_skill_registers_updates_or_does_nothing(
    build: Callable[[], Cluster], proposed: SkillMetadata, expected: type[Event] | None
) -> None:
    events = decide_register_skill(
        build().state, RegisterSkill(metadata=proposed), stamp=decided(NOW)
    )
    if expected is None:
        assert events == ()
    else:
        # The catalog's times come from the events, never from the proposal.
        assert events == (expected(**stamp(1), metadata=proposed.content()),)


def test_register_instance_of_a_skill_outside_the_catalog_lists_the_known_ones() -> None:
    for cluster, known in ((Cluster(), "none"), (Cluster().skill("b").skill("a"), "a, b")):
        with pytest.raises(NotFoundError) as caught:
            decide_register_instance(
                cluster.state,
                RegisterInstance(skill="python", node_id="n1"),
                stamp=decided(NOW),
            )
        assert str(caught.value) == (
            f"skill 'python' is not in the catalog; register it first (register_skill) — "
            f"known: {known}"
        )


INSTANCES: list[Any] = [
    pytest.param(lambda: Cluster().skill("python"), "", id="node-never-joined"),
    pytest.param(lambda: Cluster().skill("python").node("n1", incarnation="i7"), "i7", id="member"),
    pytest.param(lambda: python_on("n1").leave("n1"), "i1", id="after-leaving"),
]


@pytest.mark.parametrize(("build", "incarnation"), INSTANCES)
def test_register_instance_records_the_nodes_incarnation(
    build: Callable[[], Cluster], incarnation: str
) -> None:
    events = decide_register_instance(
        build().state,
        RegisterInstance(skill="python", node_id="n1"),
        stamp=decided(NOW),
    )
    assert events == (
        SkillInstanceRegistered(**stamp(1), node_id="n1", skill="python", incarnation=incarnation),
    )


def test_register_instance_is_idempotent_while_active_and_renews_after_withdrawal() -> None:
    command = RegisterInstance(skill="python", node_id="n1")
    cluster = python_on("n1")
    assert decide_register_instance(cluster.state, command, stamp=decided(NOW)) == ()
    cluster.run.fold(uninstance("python", "n1"))
    events = decide_register_instance(cluster.state, command, stamp=decided(NOW))
    assert [type(e) for e in events] == [SkillInstanceRegistered]


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        pytest.param(
            lambda: python_on("n1"),
            (SkillInstanceUnregistered(**stamp(1), node_id="n1", skill="python", reason="gone"),),
            id="active",
        ),
        pytest.param(lambda: Cluster().skill("python"), (), id="never-registered"),
        pytest.param(lambda: python_on("n1").leave("n1"), (), id="offline"),
        pytest.param(lambda: python_on("n1").expire("n1"), (), id="expired"),
    ],
)
def test_unregister_instance_only_withdraws_an_active_one(
    build: Callable[[], Cluster], expected: tuple[Event, ...]
) -> None:
    command = UnregisterInstance(skill="python", node_id="n1", reason="gone")
    assert decide_unregister_instance(build().state, command, stamp=decided(NOW)) == expected


STALE = 60.0
SWEEP = T0 + timedelta(hours=1)


def sweep(cluster: Cluster, now: Any = SWEEP) -> tuple[Event, ...]:
    return decide_expire_stale(cluster.state, ExpireStale(stale_after_s=STALE), stamp=decided(now))


def expired(node_id: str, n: int = 1, **evidence: Any) -> NodeExpired:
    return NodeExpired(
        **{**stamp(n), "time": SWEEP},
        node_id=node_id,
        incarnation="i1",
        swept_at=SWEEP,
        stale_after_s=STALE,
        **evidence,
    )


def instance_expired(node_id: str, n: int = 1, **evidence: Any) -> SkillInstanceExpired:
    return SkillInstanceExpired(
        **{**stamp(n), "time": SWEEP},
        node_id=node_id,
        skill="python",
        swept_at=SWEEP,
        stale_after_s=STALE,
        **evidence,
    )


def orphan_instance(node_id: str) -> Cluster:
    """An instance registered through the registry alone, at the fold's time (T0+2s)."""
    cluster = Cluster().skill("python")
    cluster.run.fold(instance("python", node_id))
    return cluster


JUST_IN_TIME = SWEEP - timedelta(seconds=STALE)
TOO_LATE = JUST_IN_TIME - timedelta(microseconds=1)

EXPIRIES: list[Any] = [
    pytest.param(
        lambda: python_on("a").beat("a", at=SWEEP - timedelta(seconds=5)), (), id="fresh-heartbeat"
    ),
    pytest.param(lambda: python_on("a").beat("a", at=JUST_IN_TIME), (), id="heartbeat-at-horizon"),
    pytest.param(
        lambda: python_on("a").beat("a", at=TOO_LATE),
        (expired("a", last_heartbeat_at=TOO_LATE, last_heartbeat_seq=1),),
        id="heartbeat-past-horizon",
    ),
    pytest.param(lambda: python_on("a"), (expired("a"),), id="joined-long-ago-never-beat"),
    pytest.param(
        lambda: python_on("a").drain("a"), (expired("a"),), id="a-draining-node-expires-too"
    ),
    pytest.param(lambda: python_on("a").leave("a"), (), id="left-node-is-not-expired"),
    pytest.param(lambda: python_on("a").expire("a"), (), id="expired-node-is-not-again"),
    pytest.param(
        lambda: python_on("b", "a").beat("b", at=SWEEP),
        (expired("a"),),
        id="only-the-stale-one",
    ),
    pytest.param(lambda: python_on("b", "a"), (expired("a", 1), expired("b", 2)), id="by-node-id"),
    pytest.param(
        lambda: orphan_instance("ghost"),
        (instance_expired("ghost", last_seen_at=Cluster().run.time(2)),),
        id="registry-only-instance",
    ),
    pytest.param(
        lambda: orphan_instance("ghost").node("ghost", incarnation="i1").leave("ghost"),
        (),
        id="instance-offline-with-its-node",
    ),
    pytest.param(
        lambda: orphan_instance("ghost").beat("ghost", at=SWEEP),
        (),
        id="registry-only-instance-with-fresh-heartbeat",
    ),
]


@pytest.mark.parametrize(("build", "expected"), EXPIRIES)
def test_the_sweep_expires_what_stopped_signing_and_carries_the_evidence(
    build: Callable[[], Cluster], expected: tuple[Event, ...]
) -> None:
    assert sweep(build()) == expected


HOLDERS: list[Any] = [
    pytest.param(Cluster, "i2", "", None, id="unknown-id"),
    pytest.param(lambda: python_on("n1").leave("n1"), "i2", "", None, id="departed"),
    pytest.param(lambda: python_on("n1"), "i1", "", None, id="same-incarnation-returns"),
    pytest.param(lambda: python_on("n1"), "i2", "i1", None, id="replaces-a-dead-one"),
    pytest.param(lambda: python_on("n1"), "i2", "", None, id="silent-too-long"),
    pytest.param(
        lambda: python_on("n1").beat("n1", at=SWEEP - timedelta(seconds=5)),
        "i2",
        "",
        "n1",
        id="live-holder",
    ),
    pytest.param(
        lambda: python_on("n1").drain("n1").beat("n1", at=SWEEP),
        "i2",
        "",
        "n1",
        id="draining-holder-is-live",
    ),
    pytest.param(
        lambda: python_on("n1").beat("n1", at=SWEEP, incarnation="i0"),
        "i2",
        "",
        None,
        id="a-predecessors-heartbeat-vouches-for-nothing",
    ),
]


@pytest.mark.parametrize(("build", "incarnation", "replaces", "holder"), HOLDERS)
def test_a_node_id_is_held_by_a_live_process_only(
    build: Callable[[], Cluster], incarnation: str, replaces: str, holder: str | None
) -> None:
    found = live_holder(
        build().state,
        node_id="n1",
        incarnation=incarnation,
        replaces=replaces,
        now=SWEEP,
        stale_after_s=STALE,
    )
    assert (found.node_id if found is not None else None) == holder


def test_the_in_use_message_says_where_and_what_to_do() -> None:
    cluster = Cluster().skill("python").node("n1", hostname="box", pid=4242)
    cluster.beat("n1", at=T0 + timedelta(hours=1, seconds=3))
    holder = cluster.state.nodes["n1"]
    assert in_use_message(cluster.state, holder, stale_after_s=15.0) == (
        "node id n1 is in use by a live process on host box (pid 4242), joined "
        "2026-01-01 00:00:02 UTC (last seen 01:00:03 UTC; if it is gone, the id is free at "
        "01:00:18 UTC); give this node its own id with --node-id NAME, or stop that "
        "process first"
    )

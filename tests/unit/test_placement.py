"""Placement as pure code: eligibility, resources, labels, pinning, ranking, evidence."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pytest

from eventsrc.commands.scheduler import (
    MAX_EVIDENCE,
    Assign,
    Placement,
    Reject,
    Wait,
    place,
    unknown_skills,
)
from eventsrc.events import Candidate, TaskSpec, UnavailableSkill
from tests.projections.builders import instance
from tests.unit.cluster import Cluster, python_on

Build = Callable[[], Cluster]


def spec(*skills: str, **options: object) -> TaskSpec:
    return TaskSpec.model_validate({"skills": skills or ("python",), **options})


def decide(build: Build, task: TaskSpec, planned: Mapping[str, int] | None = None) -> Placement:
    return place(build().state, task, planned=planned)


REJECTED = [
    pytest.param(
        lambda: Cluster(),
        spec("nope"),
        Reject("unknown skills: nope (not in the catalog)", ("nope",)),
        id="unknown-skill",
    ),
    pytest.param(
        lambda: python_on("a"),
        spec("python", "zeta", "alpha"),
        Reject("unknown skills: alpha, zeta (not in the catalog)", ("alpha", "zeta")),
        id="unknown-skills-sorted",
    ),
    pytest.param(
        lambda: Cluster().skill("render", "codec").node("a", "render"),
        spec("render"),
        Reject("unknown skills: codec (not in the catalog)", ("codec",)),
        id="unknown-dependency",
    ),
    pytest.param(
        lambda: Cluster().skill("render", "codec").skill("codec", "libav").node("a", "render"),
        spec("render"),
        Reject("unknown skills: libav (not in the catalog)", ("libav",)),
        id="unknown-transitive-dependency",
    ),
]


@pytest.mark.parametrize(("build", "task", "expected"), REJECTED)
def test_a_task_that_can_never_run_is_rejected(
    build: Build, task: TaskSpec, expected: Reject
) -> None:
    assert decide(build, task) == expected


def dependency_cycle() -> Cluster:
    return Cluster().skill("a", "b").skill("b", "a").node("n1", "a", "b")


WAITING = [
    pytest.param(
        lambda: Cluster().skill("render", "codec").skill("codec").node("a", "render"),
        spec("render"),
        None,
        Wait("dependency codec has no live instance in the cluster"),
        id="dependency-without-instance",
    ),
    pytest.param(
        lambda: Cluster().skill("python"),
        spec("python"),
        None,
        Wait("no live node holds python"),
        id="no-holder",
    ),
    pytest.param(
        lambda: Cluster().skill("x").skill("y").node("a", "x").node("b", "y"),
        spec("x", "y"),
        None,
        Wait("no live node holds x, y"),
        id="no-node-holds-both",
    ),
    pytest.param(
        lambda: python_on("a").leave("a"),
        spec("python"),
        None,
        Wait("no live node holds python"),
        id="holder-left",
    ),
    pytest.param(
        lambda: python_on("a").expire("a"),
        spec("python"),
        None,
        Wait("no live node holds python"),
        id="holder-expired",
    ),
    pytest.param(
        lambda: python_on("a").drain("a"),
        spec("python"),
        None,
        Wait("a is draining"),
        id="draining",
    ),
    pytest.param(
        lambda: python_on("a", "b"),
        spec("python", node_id="c"),
        None,
        Wait("a is not the pinned node c; b is not the pinned node c"),
        id="pinned-to-absent-node",
    ),
    pytest.param(
        lambda: python_on("a", capacity=1).occupy("a"),
        spec("python"),
        None,
        Wait("a is busy (1/1)", busy=True),
        id="busy",
    ),
    pytest.param(
        lambda: python_on("a", capacity=2).occupy("a"),
        spec("python"),
        {"a": 1},
        Wait("a is busy (2/2)", busy=True),
        id="busy-with-planned",
    ),
    pytest.param(
        lambda: python_on("a", "b", capacity=1),
        spec("python"),
        {"a": 1, "b": 3},
        Wait("a is busy (1/1); b is busy (3/1)", busy=True),
        id="all-busy-by-plan",
    ),
    pytest.param(
        lambda: python_on("a", capacity=1).occupy("a").node("b", "python").drain("b"),
        spec("python"),
        None,
        Wait("a is busy (1/1); b is draining", busy=False),
        id="busy-and-draining-is-not-only-busy",
    ),
    pytest.param(
        lambda: python_on("a"),
        spec("python", labels={"zone": "eu"}),
        None,
        Wait("a lacks label zone=eu"),
        id="label-missing",
    ),
    pytest.param(
        lambda: python_on("a", labels={"zone": "us"}),
        spec("python", labels={"zone": "eu"}),
        None,
        Wait("a lacks label zone=eu"),
        id="label-other-value",
    ),
    pytest.param(
        lambda: python_on("a"),
        spec("python", labels={"note": "never is busy"}),
        None,
        Wait("a lacks label note=never is busy", busy=False),
        id="a-label-that-reads-busy-is-no-busy-node",
    ),
    pytest.param(
        lambda: python_on("a", labels={"zone": "eu"}),
        spec("python", labels={"zone": "eu", "disk": "ssd"}),
        None,
        Wait("a lacks label disk=ssd"),
        id="one-of-two-labels",
    ),
    pytest.param(
        lambda: Cluster().skill("big", memory_mb=4096).node("a", "big", memory_mb=2048),
        spec("big"),
        None,
        Wait("a has 2048 MB memory, big needs 4096"),
        id="memory-short",
    ),
    pytest.param(
        lambda: Cluster().skill("big", memory_mb=4096).node("a", "big").beat("a", memory_mb=1024),
        spec("big"),
        None,
        Wait("a has 1024 MB memory, big needs 4096"),
        id="memory-short-by-heartbeat",
    ),
    pytest.param(
        lambda: Cluster().skill("wide", cpu=8).node("a", "wide", cpus=4),
        spec("wide"),
        None,
        Wait("a has 4 cpus, wide needs 8"),
        id="cpus-short",
    ),
    pytest.param(
        lambda: Cluster().skill("wide", cpu=8).node("a", "wide").beat("a", cpus=2),
        spec("wide"),
        None,
        Wait("a has 2 cpus, wide needs 8"),
        id="cpus-short-by-heartbeat",
    ),
    pytest.param(
        lambda: Cluster().skill("ml", gpu=2).node("a", "ml", gpus=1),
        spec("ml"),
        None,
        Wait("a has 1 gpus, ml needs 2"),
        id="gpus-short",
    ),
    pytest.param(
        lambda: Cluster().skill("ml", gpu=1).node("a", "ml"),
        spec("ml"),
        None,
        Wait("a has 0 gpus, ml needs 1"),
        id="numeric-gpu-is-a-hard-limit",
    ),
    pytest.param(
        lambda: Cluster().skill("ml", gpu=1).skill("big", memory_mb=100).node("a", "ml", "big"),
        spec("ml", "big"),
        None,
        Wait("a has 0 gpus, ml needs 1"),
        id="first-shortfall-of-the-skills",
    ),
    pytest.param(
        lambda: python_on(*(f"n{i}" for i in range(10)), capacity=1),
        spec("python"),
        {f"n{i}": 1 for i in range(10)},
        Wait("; ".join(f"n{i} is busy (1/1)" for i in range(MAX_EVIDENCE)), busy=True),
        id="evidence-is-capped",
    ),
    pytest.param(
        lambda: python_on("a", capacity=1).occupy("a").drain("a"),
        spec("python"),
        None,
        Wait("a is draining"),
        id="draining-before-busy",
    ),
    pytest.param(
        lambda: python_on("a", capacity=1).occupy("a"),
        spec("python", node_id="a", labels={"zone": "eu"}),
        None,
        Wait("a is busy (1/1)", busy=True),
        id="busy-before-labels",
    ),
    pytest.param(
        lambda: python_on("a", labels={"zone": "us"}),
        spec("python", node_id="b", labels={"zone": "eu"}),
        None,
        Wait("a is not the pinned node b"),
        id="pinning-before-labels",
    ),
]


@pytest.mark.parametrize(("build", "task", "planned", "expected"), WAITING)
def test_a_task_that_cannot_run_now_waits_and_says_why(
    build: Build, task: TaskSpec, planned: Mapping[str, int] | None, expected: Wait
) -> None:
    assert decide(build, task, planned) == expected


def gated(name: str = "python", **lacks: object) -> UnavailableSkill:
    return UnavailableSkill.model_validate({"name": name, **lacks})


HINTS = [
    pytest.param(
        lambda: (
            Cluster()
            .skill("python")
            .node("a")
            .cannot_run(
                "a", gated(missing_bins=("python3",), install=({"kind": "apt", "package": "py"},))
            )
        ),
        ("a would run python with bin:python3 (install: kind=apt package=py)",),
        id="bin-with-install",
    ),
    pytest.param(
        lambda: Cluster().skill("python").node("a").cannot_run("a", gated(missing_env=("KEY",))),
        ("a would run python with env:KEY",),
        id="env-without-install",
    ),
    pytest.param(
        lambda: (
            Cluster()
            .skill("python")
            .node("a")
            .cannot_run("a", gated(missing_any_bins=("uv", "pip"), unsupported_os=("darwin",)))
        ),
        ("a would run python with os:darwin, anyBin:uv|pip",),
        id="any-bin-and-os",
    ),
    pytest.param(
        lambda: Cluster().skill("python").node("a").cannot_run("a", gated()),
        ("a would run python with ?",),
        id="lacks-unknown",
    ),
    pytest.param(
        lambda: Cluster().skill("python").node("a").cannot_run("a", gated("ffmpeg")),
        (),
        id="other-skill-is-no-hint",
    ),
    pytest.param(
        lambda: (
            Cluster()
            .skill("python")
            .node("b")
            .node("a")
            .cannot_run("b", gated(missing_bins=("x",)))
            .cannot_run("a", gated(missing_bins=("y",)))
        ),
        ("a would run python with bin:y", "b would run python with bin:x"),
        id="hints-by-node-id",
    ),
    pytest.param(
        lambda: (
            Cluster()
            .skill("python")
            .node("a")
            .cannot_run("a", gated(missing_bins=("x",)))
            .drain("a")
        ),
        (),
        id="draining-node-gives-no-hint",
    ),
    pytest.param(
        lambda: (
            Cluster()
            .skill("python")
            .node("a")
            .cannot_run("a", gated(missing_bins=("x",)))
            .leave("a")
        ),
        (),
        id="departed-node-gives-no-hint",
    ),
]


@pytest.mark.parametrize(("build", "hints"), HINTS)
def test_a_task_nobody_holds_names_who_would_qualify(build: Build, hints: tuple[str, ...]) -> None:
    # A skill some node found but cannot run is not "unknown": the reason says who would.
    reason = f"no node can run python now; {'; '.join(hints)}" if hints else None
    expected = Wait(reason or "no live node holds python", would_qualify=hints)
    assert decide(build, spec("python")) == expected


RANKED = [
    pytest.param(lambda: python_on("b", "a"), spec(), None, "a", id="tie-goes-to-node-id"),
    pytest.param(
        lambda: python_on("a", "b").occupy("a"), spec(), None, "b", id="fewer-running-wins"
    ),
    pytest.param(
        lambda: python_on("a", capacity=4).node("b", "python", capacity=2).occupy("a").occupy("b"),
        spec(),
        None,
        "a",
        id="running-over-capacity-not-count",
    ),
    pytest.param(lambda: python_on("a", "b"), spec(), {"a": 1}, "b", id="planned-counts-as-load"),
    pytest.param(
        lambda: python_on("a", "b").occupy("b"),
        spec(),
        {"a": 1},
        "a",
        id="equal-load-by-plan-ties-to-id",
    ),
    pytest.param(
        lambda: python_on("a", "b").results("a", ok=1, bad=1).results("b", ok=2),
        spec(),
        None,
        "b",
        id="higher-success-rate-wins",
    ),
    pytest.param(
        lambda: python_on("a", "b").results("b", bad=1).beat("a", cpu=90, memory=90),
        spec(),
        None,
        "a",
        id="success-rate-before-cpu",
    ),
    pytest.param(
        lambda: python_on("a", "b").occupy("b").results("a", bad=5),
        spec(),
        None,
        "a",
        id="load-before-success-rate",
    ),
    pytest.param(
        lambda: python_on("a", "b").beat("a", cpu=50).beat("b", cpu=30),
        spec(),
        None,
        "b",
        id="cpu-beyond-ten-points",
    ),
    pytest.param(
        lambda: python_on("a", "b").beat("a", cpu=40).beat("b", cpu=30),
        spec(),
        None,
        "a",
        id="cpu-within-ten-points-ties",
    ),
    pytest.param(
        lambda: python_on("a", "b").beat("a", memory=80).beat("b", memory=20),
        spec(),
        None,
        "b",
        id="memory-beyond-ten-points",
    ),
    pytest.param(
        lambda: python_on("a", "b").beat("a", memory=25).beat("b", memory=20),
        spec(),
        None,
        "a",
        id="memory-within-ten-points-ties",
    ),
    pytest.param(
        lambda: python_on("a", "b").beat("a", cpu=10, memory=90).beat("b", cpu=60, memory=0),
        spec(),
        None,
        "a",
        id="cpu-before-memory",
    ),
    pytest.param(
        lambda: python_on("a", "b", hostname="box").beat("a", cpu=90).beat("b", cpu=5),
        spec(),
        None,
        "a",
        id="same-host-load-ties",
    ),
    pytest.param(
        lambda: (
            python_on("a", hostname="one")
            .node("b", "python", hostname="two")
            .beat("a", cpu=90)
            .beat("b", cpu=5)
        ),
        spec(),
        None,
        "b",
        id="other-hosts-load-ranks",
    ),
    pytest.param(
        lambda: python_on("a", "b").beat("a", cpu=90),
        spec(),
        None,
        "b",
        id="no-heartbeat-reads-as-idle",
    ),
    pytest.param(lambda: python_on("a", "b"), spec(node_id="b"), None, "b", id="pinned"),
    pytest.param(
        lambda: python_on("a", "b").occupy("b"), spec(node_id="b"), None, "b", id="pinned-busier"
    ),
    pytest.param(
        lambda: python_on("a").node("b", "python", labels={"zone": "eu", "disk": "ssd"}),
        spec(labels={"zone": "eu"}),
        None,
        "b",
        id="labels-subset-match",
    ),
    pytest.param(
        lambda: python_on("a", "b", capacity=1).occupy("a"), spec(), None, "b", id="free-slot"
    ),
    pytest.param(
        lambda: python_on("a", "b").drain("a"), spec(), None, "b", id="draining-is-skipped"
    ),
    pytest.param(
        lambda: Cluster().skill("big", memory_mb=4096).node("a", "big"),
        spec("big"),
        None,
        "a",
        id="unknown-memory-does-not-exclude",
    ),
    pytest.param(
        lambda: (
            Cluster()
            .skill("big", memory_mb=4096)
            .node("a", "big", memory_mb=1024)
            .node("b", "big", memory_mb=4096)
        ),
        spec("big"),
        None,
        "b",
        id="memory-exactly-enough",
    ),
    pytest.param(
        lambda: Cluster().skill("ml", gpu=1).node("a", "ml").beat("a", gpus=1),
        spec("ml"),
        None,
        "a",
        id="gpu-seen-in-heartbeat",
    ),
    pytest.param(
        lambda: Cluster().skill("x", cpu="high", memory_mb="lots").node("a", "x", cpus=1),
        spec("x"),
        None,
        "a",
        id="qualitative-strings-never-exclude",
    ),
]


@pytest.mark.parametrize(("build", "task", "planned", "node_id"), RANKED)
def test_the_best_eligible_node_is_chosen(
    build: Build, task: TaskSpec, planned: Mapping[str, int] | None, node_id: str
) -> None:
    placement = decide(build, task, planned)
    assert isinstance(placement, Assign), placement
    assert placement.node_id == node_id


def gpu_pair(want: object) -> Cluster:
    """Nodes "a" (no GPU) and "b" (one GPU): tied on everything else, "a" by id."""
    return Cluster().skill("render", gpu=want).node("a", "render").node("b", "render", gpus=1)


@pytest.mark.parametrize(
    ("want", "node_id"),
    [
        (True, "b"),
        ("recommended", "b"),
        ("required", "b"),
        ("Yes", "b"),
        (" preferred ", "b"),
        (False, "a"),
        ("none", "a"),
        ("None", "a"),
        ("no", "a"),
        ("false", "a"),
        ("0", "a"),
        ("", "a"),
    ],
)
def test_a_qualitative_gpu_ranks_and_never_excludes(want: object, node_id: str) -> None:
    placement = place(gpu_pair(want).state, spec("render"))
    assert isinstance(placement, Assign) and placement.node_id == node_id


def test_a_qualitative_gpu_weighs_less_than_load() -> None:
    state = gpu_pair(True).occupy("b").state
    placement = place(state, spec("render"))
    assert isinstance(placement, Assign) and placement.node_id == "a"


def test_a_qualitative_gpu_alone_runs_on_a_node_without_one() -> None:
    state = Cluster().skill("render", gpu=True).node("cpu-only", "render").state
    placement = place(state, spec("render"))
    assert isinstance(placement, Assign) and placement.node_id == "cpu-only"


def test_the_evidence_lists_candidates_by_load_with_their_numbers() -> None:
    cluster = python_on("a", "b", "c", capacity=4).occupy("a", 2).beat("c", cpu=12.5, memory=40)
    placement = place(cluster.results("c", bad=1).state, spec(), planned={"b": 1})
    assert placement == Assign(
        "c",
        (
            Candidate(
                node_id="c",
                running=0,
                capacity=4,
                success_rate=0.0,
                cpu_percent=12.5,
                memory_percent=40.0,
            ),
            Candidate(node_id="b", running=1, capacity=4),
            Candidate(node_id="a", running=2, capacity=4),
        ),
    )


def test_the_evidence_is_capped() -> None:
    state = python_on(*(f"n{i:02}" for i in range(12))).state
    placement = place(state, spec())
    assert isinstance(placement, Assign) and placement.node_id == "n00"
    assert [c.node_id for c in placement.candidates] == [f"n{i:02}" for i in range(MAX_EVIDENCE)]


def test_ineligible_nodes_are_no_candidates() -> None:
    state = python_on("a", "b", "c").drain("b").state
    placement = place(state, spec())
    assert isinstance(placement, Assign)
    assert [c.node_id for c in placement.candidates] == ["a", "c"]


def test_an_instance_of_a_node_that_never_joined_is_not_placed_on() -> None:
    cluster = Cluster().skill("python")
    cluster.run.fold(instance("python", "ghost"))
    assert cluster.state.holders("python") == ("ghost",)
    assert place(cluster.state, spec()) == Wait("no live node holds python")


@pytest.mark.parametrize(
    ("skills", "missing"),
    [
        (("python",), ()),
        (("nope",), ("nope",)),
        (("render",), ("codec",)),
        (("b", "a", "python"), ("a", "b")),
    ],
)
def test_unknown_skills_include_dependencies(
    skills: tuple[str, ...], missing: tuple[str, ...]
) -> None:
    state = Cluster().skill("python").skill("render", "codec").state
    assert unknown_skills(state, skills) == missing


def test_a_dependency_cycle_terminates_and_places() -> None:
    placement = place(dependency_cycle().state, spec("a"))
    assert isinstance(placement, Assign) and placement.node_id == "n1"

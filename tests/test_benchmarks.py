"""Smoke tests of ``python -m benchmarks``: quick figures end to end on real servers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from benchmarks.__main__ import main
from benchmarks.harness import Figure, Shared, percentile
from benchmarks.history import NODES, T0, history_chunks, task_lifecycles, tasks_in
from benchmarks.registry import SKILLS, SKILLS_PER_NODE, registry_events
from eventsrc.projections.apply import apply
from eventsrc.projections.state import ClusterState


def test_quick_json_run_reports_positive_figures(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--quick", "--json", "--only", "append.single"]) == 0

    report = json.loads(capsys.readouterr().out)
    assert report["machine"]["cpu_count"] >= 1
    assert report["machine"]["nats_server"].startswith("v")
    figures = {f["figure"]: f for f in report["figures"]}
    assert set(figures) == {"append.single", "append.single.p50", "append.single.p99"}
    single = figures["append.single"]
    assert single["unit"] == "msg/s"
    assert single["ours"] > 0 and single["raw"] > 0 and single["ratio"] > 0
    assert len(single["samples"]["ours"]) == single["samples"]["rounds"] >= 1


def test_loop_switch_runs_and_names_the_loop(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVENTSRC_UVLOOP", "1")  # restored after: --loop sets it for children
    assert main(["--quick", "--json", "--only", "append.single", "--loop", "asyncio"]) == 0
    assert json.loads(capsys.readouterr().out)["mode"]["loop"] == "asyncio"


def test_only_that_matches_nothing_is_a_usage_error() -> None:
    assert main(["--quick", "--only", "no.such.figure"]) == 2


def test_ratio_is_oriented_so_that_one_means_as_fast_as_raw() -> None:
    throughput = Figure("t", "msg/s", 50.0, 100.0, True, 1, (50.0,), (100.0,))
    latency = Figure("l", "µs", 200.0, 100.0, False, 1, (200.0,), (100.0,))
    assert throughput.ratio == latency.ratio == 0.5


def test_percentile_interpolates_between_ranks() -> None:
    values = [4.0, 1.0, 3.0, 2.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 50) == 2.5
    assert percentile(values, 100) == 4.0


def test_history_has_exactly_n_events_and_replays_without_problems() -> None:
    n = 1_003
    events = [event for chunk in history_chunks(n) for event in chunk]
    assert len(events) == n
    # The tail restart.snapshot appends continues the numbering without a clash.
    events += task_lifecycles(tasks_in(n), 2)
    state = ClusterState()
    for seq, event in enumerate(events, start=1):
        apply(state, event, seq=seq, time=T0)
    assert state.last_seq == n + 8
    assert (state.problems.illegal, state.problems.late) == (0, 0)
    assert len(state.nodes) == NODES
    assert {task.state for task in state.tasks.values()} == {"succeeded", "queued"}


def test_registry_state_has_the_planned_shape() -> None:
    nodes = 50
    state = ClusterState()
    for seq, event in enumerate(registry_events(nodes), start=1):
        apply(state, event, seq=seq, time=T0)
    assert len(state.nodes) == nodes
    assert all(len(skills) == SKILLS_PER_NODE for skills in state.node_skills.values())
    holders = {len(state.active_instance_nodes(skill)) for skill in state.skills}
    assert holders == {nodes * SKILLS_PER_NODE // SKILLS}


async def test_shared_setups_are_made_once_and_left_at_the_end() -> None:
    made: list[str] = []

    @asynccontextmanager
    async def setup() -> AsyncIterator[str]:
        made.append("entered")
        yield "thing"
        made.append("left")

    shared = Shared()
    assert await shared.get("k", setup) == await shared.get("k", setup) == "thing"
    await shared.aclose()
    await shared.aclose()
    assert made == ["entered", "left"]


@pytest.mark.parametrize(
    ("only", "expected"),
    [
        ("restart", {"restart.snapshot", "restart.full"}),
        ("task.latency", {"task.latency.p50", "task.latency.p99"}),
        ("task.batch", {"task.batch"}),
        (
            "durability",
            {
                f"durability.{mode}.{name}"
                for mode in ("always", "interval")
                for name in (
                    "append.single",
                    "append.single.p50",
                    "append.single.p99",
                    "append.pipelined",
                    "task.latency.p50",
                    "task.latency.p99",
                    "task.throughput.w4",
                    "task.batch",
                )
            },
        ),
    ],
)
def test_quick_run_of_a_new_figure(
    only: str, expected: set[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # restart: history, cold start, snapshot, tail; task.latency: a coordinator and
    # worker processes on a server of their own. Each a few seconds.
    assert main(["--quick", "--json", "--only", only]) == 0

    figures = {f["figure"]: f for f in json.loads(capsys.readouterr().out)["figures"]}
    assert set(figures) == expected
    assert all(f["ours"] > 0 and f["raw"] > 0 for f in figures.values())


async def test_a_short_soak_reports_memory_and_latency_and_loses_nothing() -> None:
    from benchmarks.soak import soak, summary

    reports = await soak(minutes=0.1, rate=50, workers=1, every_s=2.0)
    assert len(reports) >= 3
    assert sum(r.done for r in reports) >= 200
    assert {"coordinator", "nats-server", "nodes"} <= set(reports[0].rss_mb)
    assert all(r.p50_ms > 0 for r in reports if r.done)
    text, passed = summary(reports)
    assert passed, text
    assert "0 failed" in text
    assert "too short to compare: " in text  # 6 s of 2 s intervals: the ends overlap


def test_the_soak_summary_compares_medians_of_the_ends_after_the_warm_up() -> None:
    from benchmarks.soak import Report, summary

    def report(p50: float, coordinator: float, server: float) -> Report:
        rss = {"coordinator": coordinator, "nats-server": server}
        return Report(elapsed_s=0, done=10, failed=0, p50_ms=p50, p99_ms=2 * p50, rss_mb=rss)

    warm_up = [report(9.0, 50.0, 10.0)]  # left out: far below the steady figures
    steady = [report(p, 100.0 + i, 10.0 * (i + 1)) for i, p in enumerate([2, 2, 9, 2, 2.1, 2])]
    text, passed = summary([*warm_up, *steady, report(1.0, 1.0, 1.0)])
    assert passed
    lines = text.splitlines()
    # Coordinator 101 → 104: flat. One slow interval at the start is not the median.
    assert "memory of the coordinator, MB: 101.0 → 104.0 (+3%, flat)" in lines, text
    assert "memory of the nats-server, MB: 20.0 → 50.0 (+150%, moved)" in lines, text
    assert "submit→result p50, ms: 2.0 → 2.0 (+0%, flat)" in lines, text
    short, passed = summary([*warm_up, *steady[:5], report(1.0, 1.0, 1.0)])
    assert passed and "too short to compare: 5 full intervals" in short, short


def test_quick_memory_figures_measure_real_processes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--quick", "--json", "--only", "memory"]) == 0

    figures = {f["figure"]: f for f in json.loads(capsys.readouterr().out)["figures"]}
    assert set(figures) == {"memory.rss.12k", "memory.rss.24k", "memory.growth"}
    for name in ("memory.rss.12k", "memory.rss.24k"):
        # A Python process with nats-py alone takes tens of MB; the coordinator more.
        assert 20 < figures[name]["raw"] < figures[name]["ours"] < 1000, figures[name]
    assert figures["memory.growth"]["ours"] > 0


def test_quick_openclaw_start_measures_a_real_node_starting_real_agent_turns(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A coordinator, a node process and the real openclaw (installed like the tests'
    # toolchain) behind a timing wrapper, with the scripted model: 6 turns, ~2 minutes.
    assert main(["--quick", "--json", "--only", "node.openclaw.start"]) == 0

    figures = {f["figure"]: f for f in json.loads(capsys.readouterr().out)["figures"]}
    assert set(figures) == {"node.openclaw.start.p50", "node.openclaw.start.p99"}
    p50, p99 = figures["node.openclaw.start.p50"], figures["node.openclaw.start.p99"]
    assert p50["unit"] == "ms" and p50["samples"]["n"] == 5
    # Both are times between two real events of this machine: after the assignment was
    # stored (after the spawn began for raw), before any turn ended.
    for side in ("ours", "raw"):
        assert 0 < p50[side] <= p99[side] < 10_000, (p50, p99)

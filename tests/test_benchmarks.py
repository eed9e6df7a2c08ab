"""Smoke test of ``python -m benchmarks``: one quick figure end to end on a real server."""

from __future__ import annotations

import json

import pytest

from benchmarks.__main__ import main
from benchmarks.harness import Figure, percentile


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

"""The what-if option reader (one for the command line and the dashboard's query string)
and the waits-over-time series the dashboard charts: pure, no server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from eventsrc.commands.scenario import scenario_from_options, scenario_from_query
from eventsrc.commands.simulate import NewNode, Scenario, Simulation, TaskOutcome, waits_over_time
from eventsrc.errors import InvalidRequestError

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def test_a_query_string_reads_like_the_flags_in_order() -> None:
    pairs = [
        ("skill_on", "python=n2,n3"),
        ("add_node", "big"),
        ("skills", "python,render"),
        ("capacity", "8"),
        ("labels", "zone=b"),
        ("capacity", "n1=3"),
        ("remove_node", "n4"),
        ("from", "2026-12-01T12:00:00"),
        ("until", "2026-12-01T13:00:00Z"),
    ]
    assert scenario_from_query(pairs) == Scenario(
        add_nodes=(NewNode("big", ("python", "render"), 8, (("zone", "b"),)),),
        remove_nodes=("n4",),
        capacity=(("n1", 3),),
        skill_on=(("python", ("n2", "n3")),),
        since=T0,
        until=T0 + timedelta(hours=1),
    )
    flags = scenario_from_options(
        [("add-node", "big"), ("skills", "python,render"), ("capacity", "8")],
        skill_on=["python=n2,n3"],
    )
    assert flags.add_nodes == (NewNode("big", ("python", "render"), 8),)


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        ([("skills", "a")], "skills a: it belongs to an add_node NAME given before it"),
        ([("drain", "n1")], "drain n1: write NODE@TIME"),
        ([("from", "2026-12-02"), ("until", "2026-12-01")], "from is after until"),
        ([("remove_node", "a.b")], "remove_node 'a.b': not a node or skill name"),
        ([("seq", "3")], "seq is not a what-if option; use skill_on, add_node"),
    ],
)
def test_a_bad_query_value_is_one_line_naming_the_key(
    pairs: list[tuple[str, str]], message: str
) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        scenario_from_query(pairs)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def _task(n: int, at_s: float, recorded: float, simulated: float | None) -> TaskOutcome:
    return TaskOutcome(
        task_id=f"t{n}",
        skills=("python",),
        priority=0,
        submitted_at=T0 + timedelta(seconds=at_s),
        run_s=1.0,
        run_time_from="recorded",
        recorded_node="n1",
        recorded_wait_s=recorded,
        recorded_waited=recorded > 0,
        simulated_node="n1" if simulated is not None else None,
        simulated_wait_s=simulated,
        simulated_waited=bool(simulated),
        simulated_state="succeeded" if simulated is not None else "queued",
        untried_node=False,
    )


def test_waits_over_time_slices_the_submissions_evenly_and_keeps_empty_slices() -> None:
    report = Simulation(Scenario())
    report.tasks = [_task(0, 0, 1, 0), _task(1, 1, 3, 1), _task(2, 9, 5, None), _task(3, 10, 7, 2)]
    series = waits_over_time(report, 5)
    assert [b["tasks"] for b in series] == [2, 0, 0, 0, 2]
    assert series[0]["start"] == "2026-12-01T12:00:00Z"
    assert series[-1]["end"] == "2026-12-01T12:00:10Z"
    assert series[0]["recorded"] == {"count": 2, "p50": 1, "p95": 3, "max": 3}
    assert series[1]["recorded"] == {"count": 0, "p50": None, "p95": None, "max": None}
    assert series[-1]["simulated"] == {"count": 1, "p50": 2, "p95": 2, "max": 2}


def test_waits_over_time_of_one_instant_is_one_slice() -> None:
    report = Simulation(Scenario())
    report.tasks = [_task(0, 0, 1, 0), _task(1, 0, 2, 1)]
    (only,) = waits_over_time(report, 40)
    assert only["tasks"] == 2 and only["start"] == only["end"] == "2026-12-01T12:00:00Z"
    assert waits_over_time(Simulation(Scenario()), 40) == []

"""``what-if`` placement on real recorded histories: a real nats-server, the coordinator
and nodes as processes, real tasks (the built-in ``python`` skill sleeping), then the
simulator against a second real run of the same workload on the changed cluster.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import statistics
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

import eventsrc
from tests.conftest import MakeServer
from tests.e2e.conftest import E2E
from tests.replay_tools.conftest import Run

TASKS = 8
RUN_S = 0.6
CODE = f"import time; time.sleep({RUN_S})"


async def _workload(url: str, count: int = TASKS, **options: Any) -> dict[str, str]:
    """``count`` python tasks submitted at once; waits for all; their final states."""
    async with eventsrc.connect(url, project=False) as cluster:
        ids = [f"t{n:02d}" for n in range(count)]
        await asyncio.gather(
            *(
                cluster.submit("python", {"code": CODE}, task_id=task_id, **options)
                for task_id in ids
            )
        )
        done = await asyncio.gather(*(cluster.wait(task_id, timeout=60) for task_id in ids))
        return {task.task_id: task.state for task in done}


@pytest.fixture
def e2e(make_server: MakeServer, tmp_path: Path) -> Iterator[E2E]:
    """A fresh server with a coordinator process leading it (as in tests/e2e)."""
    with ExitStack() as stack:
        cluster = E2E(make_server(), tmp_path, stack)
        cluster.start_coordinator()
        yield cluster


def _record(cluster: E2E, nodes: dict[str, Sequence[str]], count: int = TASKS) -> None:
    asyncio.run(
        cluster.start_nodes(nodes, extra=["--capacity", "1"])  # one slot each: queues show
    )
    states = asyncio.run(_workload(cluster.url, count))
    assert set(states.values()) == {"succeeded"}, states


def _what_if(cli: Run, url: str, *args: str) -> dict[str, Any]:
    result = cli("what-if", *args, "--json", url=url)
    assert result.code == 0, result.err
    document: dict[str, Any] = json.loads(result.out)
    return document


def _median(document: dict[str, Any], world: str) -> float:
    waits = [t[world]["wait_s"] for t in document["tasks"]]
    return float(statistics.median(waits))


def test_a_popular_skill_on_a_second_node_matches_a_real_second_run(
    e2e: E2E, make_server: MakeServer, tmp_path: Path, cli: Run
) -> None:
    # Run 1: only n1 holds python; eight tasks queue behind its one slot.
    _record(e2e, {"n1": ["python"], "n2": ["search"]})
    as_recorded = _what_if(cli, e2e.url)
    simulated = _what_if(cli, e2e.url, "--skill-on", "python=n2")

    # Run 2, for real: the same workload with python on n2 too.
    with ExitStack() as stack:
        second = E2E(make_server(), tmp_path / "second", stack)
        second.workdir.mkdir()
        second.start_coordinator()
        _record(second, {"n1": ["python"], "n2": ["python", "search"]})
        real = _what_if(cli, second.url)

    recorded_1 = _median(as_recorded, "recorded")
    replayed_1 = _median(as_recorded, "simulated")
    simulated_1 = _median(simulated, "simulated")
    recorded_2 = _median(real, "recorded")
    print(
        f"median wait s: run 1 recorded {recorded_1:.3f}, replayed unchanged {replayed_1:.3f}; "
        f"--skill-on python=n2 simulated {simulated_1:.3f}; run 2 recorded {recorded_2:.3f}"
    )
    # The waits drop: about half the queue moves to n2.
    assert simulated_1 < 0.7 * recorded_1
    assert simulated["overall"]["simulated"]["max"] < 0.7 * simulated["overall"]["recorded"]["max"]
    assert set(simulated["moved"]) and len(simulated["no_longer_wait"]) >= 1
    assert any("never ran them (n2)" in note for note in simulated["notes"])
    nodes = {n["node_id"]: n for n in simulated["nodes"]}
    assert nodes["n2"]["recorded"]["tasks"] == 0 and nodes["n2"]["simulated"]["tasks"] >= 3
    assert nodes["n2"]["simulated"]["utilisation"] > 0.3
    # Replaying the recorded cluster reproduces the recorded waits: the simulator
    # misses only the coordinator's hand-over latency after each result.
    assert abs(replayed_1 - recorded_1) <= 0.15 * recorded_1 + 0.1
    # And the simulation matches the real second run within the noise of run times.
    assert abs(simulated_1 - recorded_2) <= 0.2 * recorded_2 + 0.15, (simulated_1, recorded_2)


def test_removing_one_of_three_nodes_shows_who_would_have_waited(e2e: E2E, cli: Run) -> None:
    _record(e2e, {"n1": ["python"], "n2": ["python"], "n3": ["python"]}, count=3)
    document = _what_if(cli, e2e.url, "--remove-node", "n3")
    text = cli("what-if", "--remove-node", "n3", url=e2e.url)

    tasks = {t["task_id"]: t for t in document["tasks"]}
    assert all(not t["recorded"]["waited"] for t in tasks.values())
    assert {t["recorded"]["node_id"] for t in tasks.values()} == {"n1", "n2", "n3"}
    (late,) = document["newly_wait"]
    # It waits for the first of the other two to finish: about one run time.
    wait = tasks[late]["simulated"]["wait_s"]
    assert RUN_S * 0.8 < wait < RUN_S * 3, wait
    assert tasks[late]["simulated"]["node_id"] in {"n1", "n2"}
    assert "n3" not in {n["node_id"] for n in document["nodes"] if n["simulated"]["capacity"]}
    assert text.code == 0
    assert "would have waited (placed at once as recorded): 1" in text.out
    assert late in text.out


def test_the_same_history_gives_the_same_report_byte_for_byte(e2e: E2E, cli: Run) -> None:
    _record(e2e, {"n1": ["python"], "n2": ["search"]}, count=4)
    args = ("what-if", "--skill-on", "python=n2", "--capacity", "n1=2")

    first, second = cli(*args, url=e2e.url), cli(*args, url=e2e.url)
    first_json, second_json = cli(*args, "--json", url=e2e.url), cli(*args, "--json", url=e2e.url)

    assert first.code == 0 and first.out == second.out
    assert first_json.out == second_json.out and json.loads(first_json.out)["tasks"]


def test_a_limit_on_a_key_holds_back_the_tasks_that_ran_two_at_a_time(e2e: E2E, cli: Run) -> None:
    asyncio.run(e2e.start_nodes({"n1": ["python"], "n2": ["python"]}, extra=["--capacity", "1"]))
    states = asyncio.run(_workload(e2e.url, 6, limit_key="shared-key"))
    assert set(states.values()) == {"succeeded"}, states

    recorded = _what_if(cli, e2e.url)
    limited = _what_if(cli, e2e.url, "--limit", "shared-key=1")

    # Two slots ran them two at a time; one at a time, the median wait about doubles.
    assert _median(limited, "simulated") > 1.5 * _median(recorded, "simulated"), (
        _median(recorded, "simulated"),
        _median(limited, "simulated"),
    )
    starts = sorted(t["simulated"]["wait_s"] for t in limited["tasks"])
    assert all(later - earlier >= 0.4 for earlier, later in itertools.pairwise(starts)), starts


def test_bad_options_are_one_line_and_exit_2(e2e: E2E, cli: Run) -> None:
    _record(e2e, {"n1": ["python"]}, count=1)
    for args in [
        ("--remove-node", "n9"),
        ("--skill-on", "python"),
        ("--skill-on", "gpu=n1"),
        ("--skills", "python"),
        ("--add-node", "n5"),
        ("--add-node", "n1", "--skills", "python"),
        ("--capacity", "n1=0"),
        ("--drain", "n1@yesterday"),
        ("--from", "2026-01-02", "--until", "2026-01-01"),
        ("--limit", "gpu=0"),
        ("--limit", "a.b=1"),
        ("--stale-after", "2", "--remove-node", "n1"),
        ("--sweep-interval", "1"),
    ]:
        result = cli("what-if", *args, url=e2e.url)
        assert result.code == 2, (args, result)
        assert len(result.err.strip().splitlines()) == 1, (args, result.err)
        assert "Traceback" not in result.err


def test_an_added_node_a_drain_and_a_window_on_a_recorded_history(e2e: E2E, cli: Run) -> None:
    _record(e2e, {"n1": ["python"]}, count=4)
    recorded = _what_if(cli, e2e.url)
    first = min(t["submitted_at"] for t in recorded["tasks"])
    last = max(t["submitted_at"] for t in recorded["tasks"])

    added = _what_if(
        cli,
        e2e.url,
        "--add-node",
        "n3",
        "--skills",
        "python",
        "--capacity",
        "2",
        "--labels",
        "zone=b",
    )
    nodes = {n["node_id"]: n for n in added["nodes"]}
    assert nodes["n3"]["recorded"]["capacity"] is None
    assert nodes["n3"]["simulated"]["capacity"] == 2 and nodes["n3"]["simulated"]["tasks"] >= 2
    assert added["overall"]["simulated"]["max"] < 0.6 * added["overall"]["recorded"]["max"]
    assert "add node n3 (skills python, capacity 2, labels zone=b)" in added["scenario"]["changes"]

    # Drained as soon as the first task was placed: the others never run.
    drained = _what_if(cli, e2e.url, "--drain", f"n1@{first}")
    states = sorted(t["simulated"]["state"] for t in drained["tasks"])
    assert [t["simulated"]["node_id"] for t in drained["tasks"]].count("n1") <= 1
    assert "timed_out" in states
    assert any("never placed in the simulation" in note for note in drained["notes"])

    after = cli("what-if", "--from", last, "--until", last, url=e2e.url)
    empty = cli("what-if", "--from", "2000-01-01", "--until", "2000-01-02", url=e2e.url)
    assert after.code == 0 and "1 tasks" in after.out
    assert empty.code == 0 and "no task was submitted in the window" in empty.out

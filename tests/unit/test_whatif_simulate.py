"""The what-if placement simulator on synthetic histories: table-driven, no server.

One node ``n1`` (capacity 1) holds ``python``; ``n2`` holds only ``search``. Four python
tasks of 1 s arrive together at 0 s and ran one after the other on n1: recorded waits
0, 1, 2 and 3 s.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import pytest

from eventsrc.commands import scheduler, tasks
from eventsrc.commands import simulate as simulate_module
from eventsrc.commands.simulate import NewNode, Scenario, Simulation, percentile, simulate
from eventsrc.coordinator import tasking
from eventsrc.errors import InvalidRequestError
from eventsrc.events import Event, LimitSet, TaskAssigned, TaskSpec, TaskSubmitted
from eventsrc.ports import Record, StoredEvent
from tests.factories import T0
from tests.projections.builders import (
    LATER,
    coord,
    instance,
    joined,
    leader,
    left,
    skill_registered,
    started,
    succeeded,
)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


class History:
    """Events with server times in seconds after T0."""

    def __init__(self) -> None:
        self.records: list[Record] = []

    def add(self, seconds: float, *events: Event) -> None:
        for event in events:
            seq = len(self.records) + 1
            self.records.append(StoredEvent(seq, event.subject, at(seconds), event))

    def task(
        self,
        task_id: str,
        node: str,
        submit: float,
        start: float,
        run: float = 1.0,
        priority: int = 0,
        limit_key: str | None = None,
    ) -> None:
        spec = TaskSpec(skills=("python",), priority=priority, limit_key=limit_key)
        sub = TaskSubmitted(**coord(), task_id=task_id, spec=spec, queue_deadline=LATER)
        assign = TaskAssigned(
            **coord(),
            task_id=task_id,
            node_id=node,
            attempt=1,
            skills=("python",),
            run_timeout_s=60,
            run_deadline=LATER,
        )
        if start == submit:
            assign = assign.model_copy(update={"causation_id": sub.event_id})
        self.add(submit, sub)
        self.pending.append((start, assign))
        self.pending.append((start + 0.01, started(task_id, node)))
        self.pending.append((start + run, succeeded(task_id, node)))

    pending: list[tuple[float, Event]]

    def close(self) -> list[Record]:
        for seconds, event in sorted(self.pending, key=lambda p: p[0]):
            self.add(seconds, event)
        self.records.sort(key=lambda r: r.time if isinstance(r, StoredEvent) else T0)
        return [
            StoredEvent(n, r.subject, r.time, r.event)
            for n, r in enumerate(self.records, 1)
            if isinstance(r, StoredEvent)
        ]


def queued_behind_n1(priority_last: int = 0) -> list[Record]:
    history = History()
    history.pending = []
    history.add(0, leader(1), skill_registered("python"), skill_registered("search"))
    history.add(0, joined("n1", capacity=1), instance("python", "n1"))
    history.add(0, joined("n2", capacity=1), instance("search", "n2"))
    for n in range(4):
        history.task(
            f"t{n + 1}", "n1", submit=0.5, start=0.5 + n, priority=priority_last if n == 3 else 0
        )
    return history.close()


def waits(result: Simulation) -> dict[str, float | None]:
    return {t.task_id: t.simulated_wait_s for t in result.tasks}


def nodes(result: Simulation) -> dict[str, str | None]:
    return {t.task_id: t.simulated_node for t in result.tasks}


CASES: list[tuple[str, Scenario, dict[str, float | None], dict[str, str | None]]] = [
    (
        "unchanged",
        Scenario(),
        {"t1": 0, "t2": 1, "t3": 2, "t4": 3},
        {"t1": "n1", "t2": "n1", "t3": "n1", "t4": "n1"},
    ),
    (
        "skill on a second node",
        Scenario(skill_on=(("python", ("n2",)),)),
        {"t1": 0, "t2": 0, "t3": 1, "t4": 1},
        {"t1": "n1", "t2": "n2", "t3": "n1", "t4": "n2"},
    ),
    (
        "a new node of two slots",
        Scenario(add_nodes=(NewNode("n3", ("python",), capacity=2),)),
        {"t1": 0, "t2": 0, "t3": 0, "t4": 1},
        {"t1": "n1", "t2": "n3", "t3": "n3", "t4": "n1"},
    ),
    (
        "more capacity",
        Scenario(capacity=(("n1", 2),)),
        {"t1": 0, "t2": 0, "t3": 1, "t4": 1},
        {"t1": "n1", "t2": "n1", "t3": "n1", "t4": "n1"},
    ),
    (
        "drained after two",
        Scenario(drains=(("n1", at(2.0)),)),
        {"t1": 0, "t2": 1, "t3": None, "t4": None},
        {"t1": "n1", "t2": "n1", "t3": None, "t4": None},
    ),
    (
        "the only holder removed",
        Scenario(remove_nodes=("n1",)),
        {"t1": None, "t2": None, "t3": None, "t4": None},
        {"t1": None, "t2": None, "t3": None, "t4": None},
    ),
    (
        "window",
        Scenario(until=at(0.4)),
        {},
        {},
    ),
]


@pytest.mark.parametrize(("name", "scenario", "wait", "node"), CASES, ids=[c[0] for c in CASES])
def test_the_loop(
    name: str,
    scenario: Scenario,
    wait: dict[str, float | None],
    node: dict[str, str | None],
) -> None:
    result = simulate(queued_behind_n1(), [], scenario)

    assert waits(result) == wait
    assert nodes(result) == node


def test_recorded_waits_and_who_waited() -> None:
    result = simulate(queued_behind_n1(), [], Scenario(skill_on=(("python", ("n2",)),)))

    by_id = {t.task_id: t for t in result.tasks}
    assert [by_id[t].recorded_wait_s for t in ("t1", "t2", "t3", "t4")] == [0, 1, 2, 3]
    assert [by_id[t].recorded_waited for t in ("t1", "t2", "t3", "t4")] == [False, True, True, True]
    assert [t for t, o in by_id.items() if o.recorded_waited and not o.simulated_waited] == ["t2"]
    assert by_id["t2"].untried_node and by_id["t2"].moved
    assert any("never ran them (n2)" in note for note in result.notes)
    assert result.overall is not None
    assert result.overall.recorded.max == 3 and result.overall.simulated.max == 1
    util = {line.node_id: line for line in result.nodes}
    # 4 s of work over the 4 s window, on one slot; then split over two.
    assert util["n1"].recorded_utilisation == 1.0
    assert util["n1"].simulated_utilisation == 0.5 and util["n2"].simulated_utilisation == 0.5


def test_priority_orders_the_waiting_tasks() -> None:
    result = simulate(queued_behind_n1(priority_last=5), [], Scenario())

    assert waits(result) == {"t1": 0, "t2": 2, "t3": 3, "t4": 1}


def test_the_same_history_gives_the_same_simulation() -> None:
    scenario = Scenario(skill_on=(("python", ("n2",)),))
    assert simulate(queued_behind_n1(), [], scenario) == simulate(queued_behind_n1(), [], scenario)


def test_it_places_with_the_schedulers_own_function(monkeypatch: pytest.MonkeyPatch) -> None:
    # The coordinator's decide_submit and reconcile call tasks.place (scheduler.place):
    # replacing it changes what the simulator decides.
    assert vars(tasks)["place"] is scheduler.place
    assert vars(tasking)["decide_submit"] is tasks.decide_submit  # the coordinator's
    assert vars(tasking)["reconcile"] is tasks.reconcile
    assert vars(simulate_module)["task_commands"] is tasks
    calls: list[str] = []
    real: Callable[..., scheduler.Placement] = scheduler.place

    def only_waits(state: object, spec: TaskSpec, **kwargs: object) -> scheduler.Placement:
        calls.append(spec.skills[0])
        return scheduler.Wait("held by the test", busy=True)

    monkeypatch.setattr(tasks, "place", only_waits)
    result = simulate(queued_behind_n1(), [], Scenario())
    assert calls and all(t.simulated_node is None for t in result.tasks)
    monkeypatch.setattr(tasks, "place", real)
    assert all(t.simulated_node == "n1" for t in simulate(queued_behind_n1(), [], Scenario()).tasks)


@pytest.mark.parametrize(
    ("scenario", "text"),
    [
        (Scenario(remove_nodes=("n9",)), "node n9 is not in the recorded history"),
        (Scenario(capacity=(("n9", 2),)), "node n9 is not in the recorded history"),
        (Scenario(skill_on=(("gpu", ("n2",)),)), "--skill-on gpu: no node"),
        (Scenario(skill_on=(("python", ("n9",)),)), "add it with --add-node"),
        (Scenario(add_nodes=(NewNode("n1", ("python",)),)), "use --capacity or --skill-on"),
    ],
)
def test_options_the_history_cannot_take(scenario: Scenario, text: str) -> None:
    with pytest.raises(InvalidRequestError, match=text):
        simulate(queued_behind_n1(), [], scenario)


@pytest.mark.parametrize(
    ("values", "share", "expected"),
    [([], 0.5, None), ([3.0], 0.95, 3.0), ([1, 2, 3, 4], 0.5, 2), ([1, 2, 3, 4], 0.95, 4)],
)
def test_percentile_is_nearest_rank(values: list[float], share: float, expected: float) -> None:
    assert percentile(values, share) == expected


@pytest.mark.parametrize(("name", "scenario", "wait", "node"), CASES, ids=[c[0] for c in CASES])
def test_every_simulated_event_applies(
    name: str, scenario: Scenario, wait: object, node: object
) -> None:
    notes = simulate(queued_behind_n1(), [], scenario).notes

    assert not [note for note in notes if "set aside" in note]


def test_a_node_stopped_after_the_recorded_work_keeps_running_the_delayed_work() -> None:
    # n1 ran two at a time and was stopped at 4 s; with one slot the work runs to 4.5 s.
    history = History()
    history.pending = []
    history.add(0, leader(1), skill_registered("python"))
    history.add(0, joined("n1", capacity=2), instance("python", "n1"))
    for n, start in enumerate([0.5, 0.5, 1.5, 1.5]):
        history.task(f"t{n + 1}", "n1", submit=0.5, start=start)
    history.add(4.0, left("n1"))

    result = simulate(history.close(), [], Scenario(capacity=(("n1", 1),)))

    assert waits(result) == {"t1": 0, "t2": 1, "t3": 2, "t4": 3}
    assert any("1 membership or skill event(s) recorded after" in n for n in result.notes)


def limited_on_a_big_node(recorded_limit: int | None) -> list[Record]:
    """Four tasks of key ``k`` on ``n1`` with four slots: all at once, or (under a
    recorded limit of 1) one after the other."""
    history = History()
    history.pending = []
    history.add(0, leader(1), skill_registered("python"))
    history.add(0, joined("n1", capacity=4), instance("python", "n1"))
    if recorded_limit is not None:
        history.add(0, LimitSet(**coord(), key="k", max_running=recorded_limit))
    for n in range(4):
        start = 0.5 + (n if recorded_limit == 1 else 0)
        history.task(f"t{n + 1}", "n1", submit=0.5, start=start, limit_key="k")
    return history.close()


@pytest.mark.parametrize(
    ("recorded", "scenario", "wait"),
    [
        (None, Scenario(), {"t1": 0, "t2": 0, "t3": 0, "t4": 0}),
        (None, Scenario(limits=(("k", 1),)), {"t1": 0, "t2": 1, "t3": 2, "t4": 3}),
        (None, Scenario(limits=(("k", 2),)), {"t1": 0, "t2": 0, "t3": 1, "t4": 1}),
        (1, Scenario(), {"t1": 0, "t2": 1, "t3": 2, "t4": 3}),
        (1, Scenario(limits=(("k", 4),)), {"t1": 0, "t2": 0, "t3": 0, "t4": 0}),
        (1, Scenario(limits=(("other", 1),)), {"t1": 0, "t2": 1, "t3": 2, "t4": 3}),
    ],
    ids=["none", "limit 1", "limit 2", "recorded 1", "recorded 1 raised to 4", "other key"],
)
def test_a_limit_holds_the_simulated_tasks_of_its_key(
    recorded: int | None, scenario: Scenario, wait: dict[str, float | None]
) -> None:
    result = simulate(limited_on_a_big_node(recorded), [], scenario)

    assert waits(result) == pytest.approx(wait, abs=0.02)

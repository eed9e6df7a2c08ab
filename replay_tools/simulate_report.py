"""``what-if`` placement around the pure simulator: load the streams, then report."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from eventsrc.runtime import format_table as table
from eventsrc.store import JetStreamEventStore
from replay_tools.common import UsageError, iso, parse_time, short_time
from replay_tools.simulate import (
    NewNode,
    Scenario,
    Simulation,
    SkillLine,
    TaskOutcome,
    Waits,
    simulate,
)
from replay_tools.whatif_report import load_streams

MAX_ROWS = 50
"""Tasks listed in the text report; ``--json`` lists them all."""

SAME_WAIT_S = 0.1
"""Waits closer than this count as unchanged in the text's task list: the simulator
places the instant a slot frees, without the coordinator's hand-over latency."""


async def load_and_simulate(store: JetStreamEventStore, scenario: Scenario) -> Simulation:
    """Read the recorded history of both streams and run ``simulate`` on it."""
    events, heartbeats, _ = await load_streams(store)
    return simulate(events, heartbeats, scenario)


def _waits_json(waits: Waits) -> dict[str, Any]:
    return {"count": waits.count, "p50": waits.p50, "p95": waits.p95, "max": waits.max}


def _line_json(line: SkillLine) -> dict[str, Any]:
    return {
        "skills": line.skills,
        "tasks": line.tasks,
        "recorded": _waits_json(line.recorded),
        "simulated": _waits_json(line.simulated),
    }


def _task_json(task: TaskOutcome) -> dict[str, Any]:
    return {
        "task_id": task.task_id,
        "skills": list(task.skills),
        "priority": task.priority,
        "submitted_at": iso(task.submitted_at),
        "run_s": task.run_s,
        "run_time_from": task.run_time_from,
        "recorded": {
            "node_id": task.recorded_node,
            "wait_s": task.recorded_wait_s,
            "waited": task.recorded_waited,
        },
        "simulated": {
            "node_id": task.simulated_node,
            "wait_s": task.simulated_wait_s,
            "waited": task.simulated_waited,
            "state": task.simulated_state,
        },
        "moved": task.moved,
        "untried_node": task.untried_node,
    }


def to_json(report: Simulation) -> dict[str, Any]:
    """The ``--json`` document."""
    scenario = report.scenario
    return {
        "scenario": {
            "changes": scenario.describe(),
            "from": iso(scenario.since),
            "until": iso(scenario.until),
        },
        "window": [iso(t) for t in report.window] if report.window else None,
        "overall": _line_json(report.overall) if report.overall else None,
        "skills": [_line_json(line) for line in report.skills],
        "nodes": [
            {
                "node_id": n.node_id,
                "recorded": {
                    "capacity": n.recorded_capacity,
                    "utilisation": n.recorded_utilisation,
                    "tasks": n.recorded_tasks,
                },
                "simulated": {
                    "capacity": n.simulated_capacity,
                    "utilisation": n.simulated_utilisation,
                    "tasks": n.simulated_tasks,
                },
            }
            for n in report.nodes
        ],
        "no_longer_wait": [t.task_id for t in no_longer_wait(report)],
        "newly_wait": [t.task_id for t in newly_wait(report)],
        "moved": [t.task_id for t in report.tasks if t.moved],
        "tasks": [_task_json(task) for task in report.tasks],
        "notes": report.notes,
    }


def no_longer_wait(report: Simulation) -> list[TaskOutcome]:
    """Tasks that waited in the queue and would have been placed on arrival."""
    return [
        t for t in report.tasks if t.recorded_waited and t.simulated_node and not t.simulated_waited
    ]


def newly_wait(report: Simulation) -> list[TaskOutcome]:
    """Tasks placed on arrival that would have waited (or never been placed)."""
    return [
        t
        for t in report.tasks
        if t.recorded_node is not None
        and not t.recorded_waited
        and (t.simulated_waited or t.simulated_node is None)
    ]


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _waits_text(waits: Waits) -> str:
    return f"{_s(waits.p50)}/{_s(waits.p95)}/{_s(waits.max)}"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _changed(task: TaskOutcome) -> bool:
    return (
        task.moved
        or task.recorded_waited != task.simulated_waited
        or task.simulated_node is None
        or abs((task.simulated_wait_s or 0.0) - (task.recorded_wait_s or 0.0)) >= SAME_WAIT_S
    )


def to_text(report: Simulation) -> str:
    """Waits per skill and overall, utilisation per node, then the tasks that differ."""
    scenario = report.scenario
    lines = [f"what if: {'; '.join(scenario.describe())}"]
    if scenario.since or scenario.until:
        lines.append(
            f"window: tasks submitted {short_time(scenario.since)} .. {short_time(scenario.until)}"
        )
    if report.window is None or report.overall is None:
        lines += [f"note: {note}" for note in report.notes]
        return "\n".join(lines)
    lines.append(
        f"history {short_time(report.window[0])} .. {short_time(report.window[1])}, "
        f"{report.overall.tasks} tasks"
    )
    header = ["SKILLS", "TASKS", "RECORDED WAIT S p50/p95/max", "SIMULATED WAIT S p50/p95/max"]
    rows = [
        [line.skills, line.tasks, _waits_text(line.recorded), _waits_text(line.simulated)]
        for line in [*report.skills, report.overall]
    ]
    lines += ["", table(rows, header)]
    node_rows = [
        [
            n.node_id,
            f"{n.recorded_capacity or '-'} / {n.simulated_capacity or '-'}",
            f"{n.recorded_tasks} / {n.simulated_tasks}",
            _share(n.recorded_utilisation),
            _share(n.simulated_utilisation),
        ]
        for n in report.nodes
    ]
    header = ["NODE", "CAPACITY REC / SIM", "TASKS REC / SIM", "BUSY RECORDED", "BUSY SIMULATED"]
    lines += ["", table(node_rows, header)]
    gone = no_longer_wait(report)
    new = newly_wait(report)
    moved = [t for t in report.tasks if t.moved]
    lines += [
        "",
        f"would not have waited at all: {len(gone)} of "
        f"{sum(1 for t in report.tasks if t.recorded_waited)} that waited",
        f"would have waited (placed at once as recorded): {len(new)}",
        f"would have run on another node: {len(moved)}",
    ]
    changed = [t for t in report.tasks if _changed(t)]
    if changed:
        rows = [
            [
                t.task_id,
                "+".join(t.skills),
                t.recorded_node or "-",
                (t.simulated_node or "-") + (" *" if t.untried_node else ""),
                _s(t.recorded_wait_s),
                _s(t.simulated_wait_s) if t.simulated_node else f"never ({t.simulated_state})",
                f"{t.run_s:.3f}",
            ]
            for t in changed[:MAX_ROWS]
        ]
        header = ["TASK", "SKILLS", "NODE REC", "NODE SIM", "WAIT REC S", "WAIT SIM S", "RUN S"]
        lines += ["", table(rows, header)]
        if len(changed) > MAX_ROWS:
            lines.append(f"... {len(changed) - MAX_ROWS} more (--json lists every task)")
        if any(t.untried_node for t in changed):
            lines.append("* a node that never ran the task: its recorded run time is used")
    else:
        lines.append(
            f"no task would have been placed differently (waits within {SAME_WAIT_S:g} s "
            f"count as the same)"
        )
    lines += [f"note: {note}" for note in report.notes]
    return "\n".join(lines)


# -- the options ------------------------------------------------------------------------


def scenario_from_options(
    ordered: list[tuple[str, str]],
    *,
    remove: list[str],
    drains: list[str],
    skill_on: list[str],
    limits: list[str],
    since: datetime | None,
    until: datetime | None,
) -> Scenario:
    """The scenario the flags ask for; raises UsageError (one line) for a bad value.

    ``ordered`` holds ``--add-node``, ``--skills``, ``--capacity`` and ``--labels`` in
    the order given: ``--skills``, ``--labels`` and a bare ``--capacity N`` belong to
    the ``--add-node`` before them, ``--capacity NAME=N`` changes a recorded node.
    """
    added: list[dict[str, Any]] = []
    capacity: list[tuple[str, int]] = []
    for flag, value in ordered:
        if flag == "--add-node":
            added.append({"node_id": _name(flag, value), "skills": (), "labels": ()})
        elif flag == "--capacity" and "=" in value:
            name, _, number = value.partition("=")
            capacity.append((_name(flag, name), _count(flag, number, value)))
        elif not added:
            raise UsageError(f"{flag} {value}: it belongs to an --add-node NAME given before it")
        elif flag == "--skills":
            added[-1]["skills"] = _names(flag, value)
        elif flag == "--capacity":
            added[-1]["capacity"] = _count(flag, value, value)
        else:
            added[-1]["labels"] = _pairs(flag, value)
    for node in added:
        if not node["skills"]:
            raise UsageError(f"--add-node {node['node_id']} needs --skills a,b after it")
    if since is not None and until is not None and since > until:
        raise UsageError("--from is after --until; give the window's start first")
    return Scenario(
        add_nodes=tuple(NewNode(**node) for node in added),
        remove_nodes=tuple(_name("--remove-node", n) for n in remove),
        capacity=tuple(capacity),
        drains=tuple(_drain(value) for value in drains),
        skill_on=tuple(_skill_on(value) for value in skill_on),
        since=since,
        until=until,
        limits=tuple(_limit(value) for value in limits),
    )


def _name(flag: str, text: str) -> str:
    name = text.strip()
    if not name or any(c in name for c in ".*> ,=@"):
        raise UsageError(f"{flag} {text!r}: not a node or skill name (no . * > , = @ or spaces)")
    return name


def _names(flag: str, text: str) -> tuple[str, ...]:
    return tuple(_name(flag, part) for part in text.split(","))


def _count(flag: str, text: str, value: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise UsageError(f"{flag} {value}: the capacity must be a whole number of slots, 1 or more")
    return number


def _pairs(flag: str, text: str) -> tuple[tuple[str, str], ...]:
    pairs = []
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{flag} {text}: write labels as key=value[,key=value]")
        pairs.append((key.strip(), value.strip()))
    return tuple(sorted(pairs))


def _drain(text: str) -> tuple[str, datetime]:
    name, sep, when = text.partition("@")
    if not sep:
        raise UsageError(f"--drain {text}: write NODE@TIME, e.g. n1@2026-01-31T12:00:00Z")
    return _name("--drain", name), parse_time(when, flag="--drain")


def _skill_on(text: str) -> tuple[str, tuple[str, ...]]:
    skill, sep, nodes = text.partition("=")
    if not sep or not nodes:
        raise UsageError(f"--skill-on {text}: write SKILL=NODE[,NODE]")
    return _name("--skill-on", skill), _names("--skill-on", nodes)


def _limit(text: str) -> tuple[str, int]:
    key, sep, number = text.partition("=")
    if not sep:
        raise UsageError(f"--limit {text}: write KEY=N")
    return key.strip(), _count("--limit", number, text)

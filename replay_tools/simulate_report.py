"""``what-if`` placement around the pure simulator (``eventsrc.commands.simulate``):
load the streams, then report as text (``to_json`` is the simulator's own document)."""

from __future__ import annotations

from eventsrc.commands.simulate import (
    Scenario,
    Simulation,
    TaskOutcome,
    Waits,
    newly_wait,
    no_longer_wait,
    simulate,
    to_json,
)
from eventsrc.runtime import format_table as table
from eventsrc.store import JetStreamEventStore
from replay_tools.common import short_time
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


__all__ = ["load_and_simulate", "to_json", "to_text"]

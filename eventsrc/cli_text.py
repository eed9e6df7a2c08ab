"""How ``eventsrc`` shows the cluster's answers to people (``--json`` is for programs):
a task, the tables of tasks, nodes and skills, a drain, the status block."""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Sequence
from typing import Any

from eventsrc.commands.views import SubmittedTask, TaskInfo
from eventsrc.events import TaskOutput
from eventsrc.projections.state import MEMBER_STATES
from eventsrc.runtime import EXIT_OK, format_table


def show_task(task: TaskInfo, as_json: bool, *, output_shown: bool = False) -> int:
    """One task; ``output_shown``: its stdout/stderr lines were already printed live
    (``get --follow``), so the result does not print them a second time."""
    if as_json:
        print(task.model_dump_json())
        return EXIT_OK
    print(
        f"task {task.task_id}: {task.state} (attempt {task.attempts}"
        f"{', node ' + task.node_id if task.node_id else ''})"
    )
    if task.reason:
        print(f"  reason: {task.reason}")
    for hint in task.would_qualify:
        print(f"  would qualify: {hint}")
    if task.error:
        print(f"  error: {task.error}")
    if task.agent is not None:
        print(f"  agent: {task.agent.summary()}")
    if task.result is not None:
        result = task.result
        if isinstance(result, dict) and "stdout" in result and output_shown:
            print("  output: shown above as it came")
        elif isinstance(result, dict) and "stdout" in result:
            sys.stdout.write(str(result["stdout"]))
            if result.get("stderr"):
                sys.stderr.write(str(result["stderr"]))
        else:
            print(json.dumps(result, indent=2, default=str))
    return EXIT_OK


def show_output(output: TaskOutput, as_json: bool) -> None:
    """A batch of a running task's output lines, as ``get --follow`` prints them:
    ``  | line`` for stdout, ``  ! line`` for stderr, ``  [ 40%] message`` for progress."""
    if as_json:
        print(output.model_dump_json(include=_OUTPUT_FIELDS))
        return
    for line in output.lines:
        if line.kind == "progress":
            print(f"  {progress_text(line.fraction, line.text)}")
        else:
            print(f"  {'|' if line.kind == 'stdout' else '!'} {line.text}")
    if output.dropped:
        print(f"  ... {output.dropped} lines dropped (they came faster than they are sent)")


_OUTPUT_FIELDS = {
    "type",
    "task_id",
    "node_id",
    "attempt",
    "lines",
    "progress",
    "progress_message",
    "dropped",
}


def progress_text(fraction: float | None, message: str) -> str:
    """A progress report in a few characters: ``[ 40%] fetching pages``."""
    percent = "    " if fraction is None else f"{fraction * 100:3.0f}%"
    return f"[{percent}] {message}".rstrip()


def show(data: Any, as_json: bool, text: Any) -> int:
    if as_json:
        print(json.dumps(data, default=str))
    else:
        print(text(data))
    return EXIT_OK


def submitted_table(tasks: Sequence[SubmittedTask]) -> str:
    """``submit --from``'s answer: each task as it stands, then a count per state."""
    rows = [(t.task_id, t.state, t.node_id or "-", t.reason) for t in tasks]
    counts = Counter(t.state for t in tasks)
    summary = ", ".join(f"{count} {state}" for state, count in sorted(counts.items()))
    table = format_table(rows, ["TASK", "STATE", "NODE", "REASON"])
    return f"{table}\n{len(tasks)} tasks: {summary}"


TASKS_HEADER = ["TASK", "STATE", "NODE", "ATTEMPTS", "SKILLS", "PROGRESS", "REASON"]


def task_cells(task: dict[str, Any]) -> list[str]:
    """One task as the columns of TASKS_HEADER."""
    return [
        task["task_id"],
        task["state"],
        task["node_id"] or "-",
        str(task["attempts"]),
        ",".join(task["skills"]),
        _progress_cell(task.get("progress")),
        task["reason"] or "",
    ]


def _progress_cell(progress: dict[str, Any] | None) -> str:
    """The PROGRESS column: the latest report of a running task (``-`` for none)."""
    if not progress or progress.get("fraction") is None:
        return "-"
    text = f"{progress['fraction'] * 100:.0f}% {progress.get('message') or ''}".rstrip()
    return text if len(text) <= 40 else text[:39] + "…"


def tasks_table(data: dict[str, Any]) -> str:
    rows = [task_cells(t) for t in data["tasks"]]
    return format_table(rows, TASKS_HEADER) if rows else "no tasks (use --all for finished ones)"


def _timing(schedule: dict[str, Any]) -> str:
    if schedule["cron"] is not None:
        return f"cron {schedule['cron']} ({schedule['tz']})"
    return f"every {schedule['every_s']}s"


def schedule_text(schedule: dict[str, Any]) -> str:
    """One schedule: its timing, state and next occurrence."""
    upcoming = schedule["next_fire"] or "-"
    return (
        f"schedule {schedule['name']}: {schedule['state']}, {_timing(schedule)}, catch-up "
        f"{schedule['catch_up']}; next {upcoming}; fired {schedule['fired']}, skipped "
        f"{schedule['skipped']}"
    )


SCHEDULES_HEADER = ["SCHEDULE", "STATE", "TIMING", "SKILLS", "NEXT", "FIRED", "SKIPPED", "LAST"]


def schedules_table(data: dict[str, Any]) -> str:
    rows = [
        [
            s["name"],
            s["state"],
            _timing(s),
            ",".join(s["skills"]),
            str(s["next_fire"] or "-"),
            str(s["fired"]),
            str(s["skipped"]),
            s["last_task_id"] or "-",
        ]
        for s in data["schedules"]
    ]
    return format_table(rows, SCHEDULES_HEADER) if rows else "no schedules"


def next_fires_text(data: dict[str, Any]) -> str:
    lines = [schedule_text(data["schedule"])]
    lines += [f"  {at}" for at in data["next"]] or ["  (paused: resume it to fire)"]
    return "\n".join(lines)


def nodes_table(data: dict[str, Any]) -> str:
    rows = [
        [
            n["node_id"],
            n["state"],
            f"{n['running']}/{n['capacity']}",
            ",".join(n["skills"]) or "-",
            "; ".join(
                f"{name} ({', '.join(lacks) or '?'})"
                for name, lacks in sorted(n["cannot_run"].items())
            )
            or "-",
            f"{n['cpu_percent']:.0f}%" if n["cpu_percent"] is not None else "-",
            str(n["last_heartbeat_at"] or "-"),
        ]
        for n in data["nodes"]
    ]
    header = ["NODE", "STATE", "RUNNING", "SKILLS", "CANNOT RUN (LACKS)", "CPU", "LAST HEARTBEAT"]
    return format_table(rows, header) if rows else "no nodes have joined"


def drained_text(node: dict[str, Any]) -> str:
    node_id = node["node_id"]
    if node["drained"] and node["state"] not in MEMBER_STATES:
        return (
            f"node {node_id} is {node['state']} and drained: it takes no work when it joins "
            f"again; `eventsrc undrain {node_id}` undoes it"
        )
    if node["drained"]:
        said = "draining" if node["changed"] else "was already draining"
        return (
            f"node {node_id} {said}: no new work is placed on it, running tasks finish, and "
            f"the drain holds if it restarts; `eventsrc undrain {node_id}` undoes it"
        )
    if node["state"] not in MEMBER_STATES:
        said = "will take work when it joins" if node["changed"] else "was not drained"
        return f"node {node_id} {said} (state: {node['state']})"
    said = "takes work again" if node["changed"] else "was not drained"
    return f"node {node_id} {said} (state: {node['state']})"


def limits_table(rows: list[dict[str, Any]]) -> str:
    """Every limit in force: ``NAME  RUNNING  MAX  RATE``."""
    if not rows:
        return "no limits (eventsrc limit set KEY --max N; skills: metadata.eventsrc)"
    cells = [
        [row["name"], str(row["running"]), str(row["max_running"] or "-"), row["rate"] or "-"]
        for row in rows
    ]
    return format_table(cells, ["LIMIT", "RUNNING", "MAX", "RATE"])


def skills_table(data: dict[str, Any]) -> str:
    rows = []
    for skill in data["skills"]:
        would = "; ".join(
            f"{h['node_id']} lacks {', '.join(h['lacks'])}"
            + (f" (install: {h['install']})" if h.get("install") else "")
            for h in skill["would_be_holders"]
        )
        rows.append(
            [
                skill["name"],
                skill["category"],
                ",".join(skill["holders"]) or "-",
                ",".join(skill["dependencies"]) or "-",
                would or "-",
            ]
        )
    return (
        format_table(rows, ["SKILL", "CATEGORY", "HOLDERS", "DEPENDS ON", "WOULD RUN WITH"])
        if rows
        else "the catalog is empty"
    )


def status_text(data: dict[str, Any]) -> str:
    """The status as a block of ``name: value`` lines, the NATS stream leaders and the
    recent problems below it."""
    standbys = data.get("standbys")
    rows = [
        ("leader", f"{data['leader'] or 'none'} (epoch {data['epoch']})"),
        ("standbys", "unknown" if standbys is None else ", ".join(standbys) or "none"),
        ("events", _positions(data["last_seq"], data.get("stream_seq"))),
        ("nodes", _counts(data["nodes"])),
        ("tasks", f"{_counts(data['tasks'])} (in memory)" if data["tasks"] else "none in memory"),
        ("skills", str(data["skills"])),
        ("problems", _counts(data["problems"], keep_zero=True)),
    ]
    width = max(len(name) for name, _ in rows) + 1
    lines = [f"{name + ':':<{width}} {value}" for name, value in rows]
    if data.get("stream_leaders"):
        lines.append("NATS leaders (stream: server; a stream without one cannot store):")
        lines += [f"  {name}: {where}" for name, where in data["stream_leaders"].items()]
    if data["recent_problems"]:
        lines.append("recent problems:")
        lines += [f"  {line}" for line in data["recent_problems"]]
    return "\n".join(lines)


def _positions(applied: int, stream: int | None) -> str:
    if stream is None:
        return f"applied up to {applied} (the stream's position unknown)"
    lag = max(stream - applied, 0)
    return f"stream at {stream}, applied up to {applied} (projection lag {lag})"


def _counts(counts: dict[str, int], *, keep_zero: bool = False) -> str:
    """``{"alive": 2, "dead": 1}`` -> ``2 alive, 1 dead``; ``none`` when there are none."""
    shown = [
        f"{name.replace('_', ' ')} {count}" if keep_zero else f"{count} {name}"
        for name, count in counts.items()
        if count or keep_zero
    ]
    return ", ".join(shown) or "none"

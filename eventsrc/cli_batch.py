"""``eventsrc submit --from FILE``: tasks as JSON lines, one task a line, each with the
fields of ``submit``'s flags (``{"skill": "python", "payload": {...}, "priority": 2}``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Final

import orjson

from eventsrc.client import submission
from eventsrc.commands import api
from eventsrc.commands.tasks import SubmitTask
from eventsrc.errors import InvalidRequestError
from eventsrc.runtime import parse_labels

FIELDS: Final = {
    # line field -> submit_many's key (the flag's name with "_" for "-", as in --task-id)
    "skill": "skills",
    "payload": "payload",
    "task_id": "task_id",
    "task_type": "task_type",
    "priority": "priority",
    "label": "labels",
    "node": "node_id",
    "run_timeout": "run_timeout_s",
    "queue_timeout": "queue_timeout_s",
    "max_attempts": "max_attempts",
    "model": "model",
    "limit_key": "limit_key",
    "after": "after",
    "not_before": "not_before",
    "delay": "delay_s",
    "deadline": "deadline",
}


def read_batch(path: str, *, parent_task_id: str | None = None) -> api.SubmitTasks:
    """The batch request of a JSON-lines file (``-``: standard input); blank lines are
    skipped. Any bad line: InvalidRequestError naming the file and the line's number."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise InvalidRequestError(f"--from {path}: cannot read it ({err})") from err
    tasks: list[SubmitTask] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            tasks.append(submission(_spec(line), parent_task_id=parent_task_id))
        except InvalidRequestError as err:
            raise InvalidRequestError(f"{path} line {number}: {err}") from err
    if not tasks:
        raise InvalidRequestError(f"{path}: no tasks in it; give one JSON object a line")
    if len(tasks) > api.MAX_BATCH:
        raise InvalidRequestError(
            f"{path}: {len(tasks)} tasks; at most {api.MAX_BATCH} go in one batch: split the file"
        )
    return api.SubmitTasks.model_construct(tasks=tuple(tasks))


def _spec(line: str) -> dict[str, Any]:
    try:
        document = orjson.loads(line)
    except orjson.JSONDecodeError as err:
        raise InvalidRequestError(f"not valid JSON ({err})") from err
    if not isinstance(document, dict):
        raise InvalidRequestError('not a JSON object; write e.g. {"skill": "python"}')
    unknown = sorted(set(document) - set(FIELDS))
    if unknown:
        raise InvalidRequestError(
            f"unknown field(s) {', '.join(unknown)}; the fields are {', '.join(FIELDS)}"
        )
    if "skill" not in document:
        raise InvalidRequestError('no "skill"; give the skill (or a list of skills) it needs')
    spec = {FIELDS[key]: value for key, value in document.items() if value is not None}
    labels = spec.get("labels")
    if isinstance(labels, list):
        if not all(isinstance(label, str) for label in labels):
            raise InvalidRequestError('"label" holds K=V strings or is an object')
        spec["labels"] = parse_labels(labels, flag="label")
    skills = spec.get("skills")
    if not isinstance(skills, str | list) or not all(isinstance(s, str) for s in skills):
        raise InvalidRequestError('"skill" is a skill name or a list of them')
    return spec

"""The tree of tasks one task belongs to: its parent chain and the sub-tasks it started,
and the chain of tasks run one after another (``--after``).

A sub-task's submission names its parent (``parent_task_id``), a chained task's spec
the task it runs after (``after``), so both are read from the submissions: the
``TaskSubmitted`` events on ``evt.task.*.lifecycle`` and the ``TaskAssigned`` events on
``evt.task.*.to.*`` that carry the submission of a task placed at once. ``audit task``
shows them below the task's own timeline, followed by the timelines of its sub-tasks and
of the other tasks of its chain.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from eventsrc.events import submission_of, validate_token
from eventsrc.events.subjects import SUBMISSION_FILTERS
from eventsrc.ports import StoredEvent
from eventsrc.store import JetStreamEventStore
from replay_tools import audit
from replay_tools.common import read_records

MAX_SHOWN = 50
"""Sub-task timelines shown in full below the tree; the tree itself lists every task."""


@dataclass(frozen=True, slots=True)
class TaskTree:
    """Who submitted whom, around one task."""

    task_id: str
    root: str
    parent: dict[str, str] = field(default_factory=dict)
    children: dict[str, list[str]] = field(default_factory=dict)
    skills: dict[str, tuple[str, ...]] = field(default_factory=dict)
    after: dict[str, str] = field(default_factory=dict)
    """Task -> the task it runs after."""
    then: dict[str, list[str]] = field(default_factory=dict)
    """Task -> the tasks that run after it, in submission order."""

    def chain(self) -> list[list[str]]:
        """The chain ``task_id`` is in, as its paths from the first task to each last
        one (one path for a plain A -> B -> C); empty when it is in no chain."""
        first, seen = self.task_id, {self.task_id}
        while first in self.after and self.after[first] not in seen:
            first = self.after[first]
            seen.add(first)

        def paths(task_id: str, visited: frozenset[str]) -> list[list[str]]:
            nexts = [t for t in self.then.get(task_id, []) if t not in visited]
            if not nexts:
                return [[task_id]]
            return [[task_id, *rest] for t in nexts for rest in paths(t, visited | {t})]

        found = paths(first, frozenset({first}))
        return [] if found == [[self.task_id]] else found

    def descendants(self, task_id: str) -> list[str]:
        """The sub-tasks of ``task_id``, depth first, in submission order."""
        found: list[str] = []
        for child in self.children.get(task_id, []):
            found += [child, *self.descendants(child)]
        return found

    @property
    def size(self) -> int:
        return 1 + len(self.descendants(self.root))


async def task_tree(store: JetStreamEventStore, task_id: str) -> TaskTree:
    """The tree around ``task_id`` (just the task when it has no parent and no sub-task)."""
    validate_token(task_id, what="task id")
    parent: dict[str, str] = {}
    children: dict[str, list[str]] = {}
    skills: dict[str, tuple[str, ...]] = {}
    after: dict[str, str] = {}
    then: dict[str, list[str]] = {}
    async with read_records(store, subjects=list(SUBMISSION_FILTERS)) as records:
        async for record in records:
            if not isinstance(record, StoredEvent):
                continue
            event = submission_of(record.event)
            if event is None or event.task_id in skills:
                continue  # a resubmission of the same id repeats nothing new
            skills[event.task_id] = event.spec.skills
            if event.parent_task_id:
                parent[event.task_id] = event.parent_task_id
                children.setdefault(event.parent_task_id, []).append(event.task_id)
            if event.spec.after:
                after[event.task_id] = event.spec.after
                then.setdefault(event.spec.after, []).append(event.task_id)
    root, seen = task_id, {task_id}
    while root in parent and parent[root] not in seen:  # a cycle of ids ends the walk
        root = parent[root]
        seen.add(root)
    return TaskTree(
        task_id=task_id,
        root=root,
        parent=parent,
        children=children,
        skills=skills,
        after=after,
        then=then,
    )


def tree_lines(tree: TaskTree) -> list[str]:
    """The tree drawn from its root, the audited task marked."""
    lines: list[str] = []

    def draw(task_id: str, prefix: str, last: bool, depth: int, seen: set[str]) -> None:
        branch = "" if depth == 0 else ("└─ " if last else "├─ ")
        skills = ", ".join(tree.skills.get(task_id, ())) or "?"
        mark = "  <- this task" if task_id == tree.task_id else ""
        lines.append(f"{prefix}{branch}{task_id} [{skills}]{mark}")
        kids = [kid for kid in tree.children.get(task_id, []) if kid not in seen]
        below = prefix + ("" if depth == 0 else ("   " if last else "│  "))
        for index, kid in enumerate(kids):
            draw(kid, below, index == len(kids) - 1, depth + 1, seen | {kid})

    draw(tree.root, "", True, 0, {tree.root})
    return lines


def to_json(tree: TaskTree) -> dict[str, Any]:
    """The tree for ``--json``: root, and per task its parent and sub-tasks."""
    members = [tree.root, *tree.descendants(tree.root)]
    return {
        "root": tree.root,
        "chain": tree.chain(),
        "tasks": [
            {
                "task_id": member,
                "parent_task_id": tree.parent.get(member),
                "sub_tasks": tree.children.get(member, []),
                "skills": list(tree.skills.get(member, ())),
            }
            for member in members
        ],
    }


async def task_tree_text(store: JetStreamEventStore, task_id: str) -> str:
    """The task's timeline; with a parent or sub-tasks, the tree and the sub-tasks'
    timelines after it."""
    text = audit.to_text("task", task_id, await audit.audit(store, "task", task_id))
    tree = await task_tree(store, task_id)
    chain = tree.chain()
    if tree.size == 1 and not chain:
        return text
    parts = [text]
    if tree.size > 1:
        parts.append("tree of tasks:\n" + "\n".join(tree_lines(tree)))
    for sub_task in tree.descendants(task_id)[:MAX_SHOWN]:
        entries = await audit.audit(store, "task", sub_task)
        parts.append(
            f"sub-task of {tree.parent[sub_task]}: " + audit.to_text("task", sub_task, entries)
        )
    if chain:
        parts.append("\n".join("chain: " + " -> ".join(path) for path in chain))
        linked = dict.fromkeys(t for path in chain for t in path if t != task_id)
        for other in list(linked)[:MAX_SHOWN]:
            entries = await audit.audit(store, "task", other)
            parts.append(f"in the chain: {audit.to_text('task', other, entries)}")
    return "\n\n".join(parts)

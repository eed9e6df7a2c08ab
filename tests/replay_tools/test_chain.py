"""The chain a task is in, as ``audit task`` draws it: its paths from the first task."""

from __future__ import annotations

import pytest

from replay_tools.tree import TaskTree

CHAINS = [
    # (task -> the task it runs after, audited task, paths)
    pytest.param({}, "a", [], id="no-chain"),
    pytest.param({"b": "a", "c": "b"}, "b", [["a", "b", "c"]], id="line-from-the-middle"),
    pytest.param({"b": "a", "c": "b"}, "c", [["a", "b", "c"]], id="line-from-the-end"),
    pytest.param({"b": "a", "c": "a"}, "a", [["a", "b"], ["a", "c"]], id="fork"),
    pytest.param({"a": "b", "b": "a"}, "a", [["b", "a"]], id="a-cycle-of-ids-ends"),
]


@pytest.mark.parametrize(("after", "task_id", "paths"), CHAINS)
def test_the_chain_of_a_task(after: dict[str, str], task_id: str, paths: list[list[str]]) -> None:
    then: dict[str, list[str]] = {}
    for task, before in after.items():
        then.setdefault(before, []).append(task)
    tree = TaskTree(task_id=task_id, root=task_id, after=after, then=then)
    assert tree.chain() == paths

"""The task and node states: one definition, values unchanged on the wire."""

from __future__ import annotations

import json

import orjson

from eventsrc.commands.views import TaskInfo, status_info
from eventsrc.events import TaskSpec
from eventsrc.projections.state import (
    ACTIVE_TASK_STATES,
    MEMBER_STATES,
    TERMINAL_STATES,
    UNSUCCESSFUL_STATES,
    ClusterState,
    InstanceStatus,
    NodeState,
    NodeView,
    TaskState,
    TaskView,
)


def test_state_values_are_the_strings_the_api_shows() -> None:
    assert [s.value for s in TaskState] == [
        "queued",
        "assigned",
        "running",
        "succeeded",
        "failed",
        "timed_out",
        "cancelled",
        "rejected",
    ]
    assert [s.value for s in NodeState] == ["alive", "draining", "left", "expired"]
    assert [s.value for s in InstanceStatus] == ["active", "unregistered", "expired", "offline"]


def test_the_sets_partition_the_task_states() -> None:
    assert {"succeeded", "failed", "timed_out", "cancelled", "rejected"} == TERMINAL_STATES
    assert TERMINAL_STATES - {"succeeded"} == UNSUCCESSFUL_STATES
    assert {"assigned", "running"} == ACTIVE_TASK_STATES
    assert not TERMINAL_STATES & ACTIVE_TASK_STATES
    assert set(TaskState) - TERMINAL_STATES - ACTIVE_TASK_STATES == {TaskState.QUEUED}
    assert {"alive", "draining"} == MEMBER_STATES


def test_states_serialise_as_their_plain_values() -> None:
    assert orjson.dumps({"state": TaskState.TIMED_OUT}) == b'{"state":"timed_out"}'
    assert json.dumps({"state": NodeState.DRAINING}) == '{"state": "draining"}'
    assert f"{TaskState.CANCELLED}" == "cancelled"


def test_a_task_view_is_terminal_by_the_one_set() -> None:
    for state in TaskState:
        info = TaskInfo(task_id="t1", state=state, node_id=None, attempts=1)
        assert info.terminal == (state in TERMINAL_STATES)
        assert info.model_dump(mode="json")["state"] == state.value


def test_status_counts_states_under_their_plain_values() -> None:
    # orjson refuses str-subclass dict keys: the view must hand it plain strings.
    state = ClusterState()
    state.tasks["t1"] = TaskView(task_id="t1", spec=TaskSpec(skills=("python",)))
    state.tasks["t2"] = TaskView(
        task_id="t2", spec=TaskSpec(skills=("python",)), state=TaskState.FAILED
    )
    state.nodes["n1"] = NodeView(node_id="n1", state=NodeState.DRAINING)
    dumped = orjson.loads(orjson.dumps(status_info(state).model_dump()))
    assert dumped["tasks"] == {"failed": 1, "queued": 1}
    assert dumped["nodes"] == {"draining": 1}

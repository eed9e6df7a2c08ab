"""The subjects events are stored under and the filters that read them, made in one
place (docs/design.md, Streams and subjects). Every id given here is a validated
subject token.

::

    evt.cluster                         leader elections, cluster settings
    evt.node.<node>                     membership and instances of one node
    evt.skill.<name>                    the catalog entry of one skill
    evt.schedule.<name>                 one schedule: added, fired, skipped, paused...
    evt.limit.<key>                     the cluster-wide limit of one key
    evt.task.<task>.lifecycle           what the coordinator decides about a task
    evt.task.<task>.to.<node>           an attempt assigned to a node
    evt.task.<task>.from.<node>         what the node reports back about it
    hb.<node>                           heartbeats (EVENTSRC_HEARTBEATS)
    out.<task>.<node>                   a running task's progress and output lines
                                        (EVENTSRC_OUTPUT)
    evt.bench.raw.<task>...             the store benchmark's raw copies (never read)
    eventsrc.rpc.<node>.<action>        plain node-to-node requests (not stored)

A task's aggregate is ``evt.task.<task>.>``: every subject of one task; every other
subject is its own aggregate.
"""

from __future__ import annotations

from typing import Final

EVENTS_FILTER: Final = "evt.>"
"""Every subject of EVENTSRC_EVENTS."""
HEARTBEATS_FILTER: Final = "hb.>"
"""Every subject of EVENTSRC_HEARTBEATS."""
OUTPUT_FILTER: Final = "out.>"
"""Every subject of EVENTSRC_OUTPUT."""
CLUSTER_SUBJECT: Final = "evt.cluster"
"""Leader elections and cluster settings."""
ALL_NODES_FILTER: Final = "evt.node.*"
"""Membership and instance events of every node."""
ALL_SUBMISSIONS_FILTER: Final = "evt.task.*.lifecycle"
"""The lifecycle subjects of every task (where each TaskSubmitted is)."""
ALL_ASSIGNMENTS_FILTER: Final = "evt.task.*.to.*"
"""Every assignment (and cancel request) of every task to a node."""
SUBMISSION_FILTERS: Final = (ALL_SUBMISSIONS_FILTER, ALL_ASSIGNMENTS_FILTER)
"""Where every submission is: a ``TaskSubmitted``, or the ``TaskAssigned`` of a task
placed at once, which carries its submission."""
ALL_TASKS_FILTER: Final = "evt.task.>"
"""Every subject of every task."""
ALL_SCHEDULES_FILTER: Final = "evt.schedule.*"
"""The subjects of every schedule."""

_TASK_PREFIX: Final = "evt.task."
_HEARTBEAT_PREFIX: Final = "hb."
_OUTPUT_PREFIX: Final = "out."
_TASK_ID_AT: Final = len(_TASK_PREFIX)


def node_subject(node_id: str) -> str:
    """Membership and instance events of one node: ``evt.node.<node_id>``."""
    return f"evt.node.{node_id}"


def heartbeat_subject(node_id: str) -> str:
    """A node's heartbeats in EVENTSRC_HEARTBEATS: ``hb.<node_id>``."""
    return f"{_HEARTBEAT_PREFIX}{node_id}"


def output_subject(task_id: str, node_id: str) -> str:
    """A running task's progress and output lines from the node running it, in
    EVENTSRC_OUTPUT: ``out.<task_id>.<node_id>``."""
    return f"{_OUTPUT_PREFIX}{task_id}.{node_id}"


def task_output_filter(task_id: str) -> str:
    """The progress and output of a task from every node: ``out.<task_id>.*``."""
    return output_subject(task_id, "*")


def skill_subject(name: str) -> str:
    """The catalog events of one skill: ``evt.skill.<name>``."""
    return f"evt.skill.{name}"


def schedule_subject(name: str) -> str:
    """Every event of one schedule, its aggregate: ``evt.schedule.<name>``."""
    return f"evt.schedule.{name}"


def limit_subject(key: str) -> str:
    """The limit of one key (``limit_key`` of tasks): ``evt.limit.<key>``."""
    return f"evt.limit.{key}"


def task_filter(task_id: str) -> str:
    """A task's aggregate, every subject of it: ``evt.task.<task_id>.>``."""
    return f"{_TASK_PREFIX}{task_id}.>"


def lifecycle_subject(task_id: str) -> str:
    """The coordinator's decisions about a task: ``evt.task.<task_id>.lifecycle``."""
    return f"{_TASK_PREFIX}{task_id}.lifecycle"


def to_node_subject(task_id: str, node_id: str) -> str:
    """An attempt of a task assigned to a node: ``evt.task.<task_id>.to.<node_id>``."""
    return f"{_TASK_PREFIX}{task_id}.to.{node_id}"


def from_node_subject(task_id: str, node_id: str) -> str:
    """A node's report on a task: ``evt.task.<task_id>.from.<node_id>``."""
    return f"{_TASK_PREFIX}{task_id}.from.{node_id}"


def assignments_filter(node_id: str) -> str:
    """Every assignment to one node (its work queue): ``evt.task.*.to.<node_id>``."""
    return to_node_subject("*", node_id)


def reports_filter(node_id: str) -> str:
    """Every report of one node on its tasks: ``evt.task.*.from.<node_id>``."""
    return from_node_subject("*", node_id)


def task_id_of(subject: str) -> str | None:
    """The task id of a task subject or aggregate (``evt.task.<id>...``), else None."""
    # Called for every event a projection folds: no split, no len() per call.
    if subject.startswith(_TASK_PREFIX):
        return subject[_TASK_ID_AT:].partition(".")[0]
    return None


def aggregate_of(subject: str) -> str:
    """The aggregate a stored subject belongs to.

    ``evt.task.<id>.<anything>`` -> ``evt.task.<id>.>``; every other subject is its
    own aggregate.
    """
    task_id = task_id_of(subject)
    return subject if task_id is None else task_filter(task_id)


def bench_raw_subject(subject: str) -> str:
    """Where the store benchmark stores a raw nats-py copy of a task subject or filter:
    ``evt.task.<rest>`` -> ``evt.bench.raw.<rest>``, outside every filter eventsrc reads."""
    return f"evt.bench.raw.{subject.removeprefix(_TASK_PREFIX)}"


def node_rpc_subject(node_id: str, action: str) -> str:
    """Where a node answers plain ``action`` requests from other nodes (not an event
    subject: nothing is stored there)."""
    return f"eventsrc.rpc.{node_id}.{action}"


def is_heartbeat_subject(subject: str) -> bool:
    """Whether a subject belongs to EVENTSRC_HEARTBEATS rather than EVENTSRC_EVENTS."""
    return subject.startswith(_HEARTBEAT_PREFIX)


def is_output_subject(subject: str) -> bool:
    """Whether a subject belongs to EVENTSRC_OUTPUT rather than EVENTSRC_EVENTS."""
    return subject.startswith(_OUTPUT_PREFIX)


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` is one token, a final ``>`` one or more."""
    want, have = pattern.split("."), subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(have) > i
        if i >= len(have) or (token != "*" and token != have[i]):
            return False
    return len(want) == len(have)

"""``replay_tools audit``: timelines of a task, a node and a skill, with causation."""

from __future__ import annotations

import json

from tests.factories import T0
from tests.projections.builders import instance, joined, uninstance
from tests.replay_tools.conftest import Run, seed
from tests.replay_tools.history import cluster_start, expired, requeued_task


def test_task_timeline_submit_assign_requeue_result_in_order(url: str, cli: Run) -> None:
    task = requeued_task(expiry=expired("n1", swept_at=T0))
    seqs = seed(url, [*cluster_start(), *task])

    result = cli("audit", "task", "t1", "--json", url=url)

    assert result.code == 0, result.err
    events = json.loads(result.out)["events"]
    assert [e["type"] for e in events] == [
        "TaskSubmitted",
        "TaskAssigned",
        "TaskStarted",
        "TaskRequeued",
        "TaskAssigned",
        "TaskStarted",
        "TaskSucceeded",
        "TaskSucceeded",
    ]
    task_seqs = [
        seq for seq, event in zip(seqs[6:], task, strict=True) if event.type != "NodeExpired"
    ]
    assert [e["seq"] for e in events] == task_seqs
    submit, first, _, requeue, second, _, done, late = events
    assert first["causation_id"] == submit["event_id"]
    assert (first["caused_by_seq"], first["caused_by_type"]) == (submit["seq"], "TaskSubmitted")
    assert (second["caused_by_seq"], second["caused_by_type"]) == (requeue["seq"], "TaskRequeued")
    assert done["caused_by_type"] == "TaskAssigned" and done["problem"] is None
    assert "attempt 2 succeeded on n2" in done["summary"]
    assert late["problem"] is not None and "after it ended succeeded" in late["problem"]
    assert all(e["time"] and e["producer"] for e in events)


def test_task_timeline_as_a_table(url: str, cli: Run) -> None:
    seed(url, [*cluster_start(), *requeued_task(expiry=expired("n1", swept_at=T0))])

    result = cli("audit", "task", "t1", url=url)

    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0] == "task t1: 8 events"
    assert lines[1].split()[:7] == ["SEQ", "TIME", "TYPE", "PRODUCER", "EVENT", "CAUSED", "BY"]
    assert "seq 7 TaskSubmitted" in lines[3]  # the first TaskAssigned
    assert "attempt 1 -> n1" in lines[3]
    assert "[TaskSucceeded" in lines[-1]  # the late result, with the projection's verdict


def test_node_timeline_includes_tasks_addressed_to_and_from_it(url: str, cli: Run) -> None:
    seed(url, [*cluster_start(), *requeued_task(expiry=expired("n1", swept_at=T0))])

    result = cli("audit", "node", "n1", "--json", url=url)

    assert result.code == 0, result.err
    events = json.loads(result.out)["events"]
    assert [(e["type"], e["subject"]) for e in events] == [
        ("NodeJoined", "evt.node.n1"),
        ("SkillInstanceRegistered", "evt.node.n1"),
        ("TaskAssigned", "evt.task.t1.to.n1"),
        ("TaskStarted", "evt.task.t1.from.n1"),
        ("NodeExpired", "evt.node.n1"),
        ("TaskSucceeded", "evt.task.t1.from.n1"),
    ]


def test_skill_timeline_includes_instances_on_every_node(url: str, cli: Run) -> None:
    seed(
        url, [*cluster_start(), joined("n3"), instance("search", "n3"), uninstance("python", "n2")]
    )

    result = cli("audit", "skill", "python", "--json", url=url)

    assert result.code == 0, result.err
    events = json.loads(result.out)["events"]
    assert [(e["type"], e["subject"]) for e in events] == [
        ("SkillRegistered", "evt.skill.python"),
        ("SkillInstanceRegistered", "evt.node.n1"),
        ("SkillInstanceRegistered", "evt.node.n2"),
        ("SkillInstanceUnregistered", "evt.node.n2"),
    ]


def test_unknown_ids_and_bad_ids_are_one_line_errors(url: str, cli: Run) -> None:
    seed(url, cluster_start())

    unknown = cli("audit", "task", "nope", url=url)
    bad = cli("audit", "node", "a.b", url=url)
    unknown_skill = cli("audit", "skill", "ffmpeg", url=url)

    assert unknown.code == 1 and unknown.err.startswith("error: no events for task nope")
    assert unknown_skill.code == 1 and "no events for skill ffmpeg" in unknown_skill.err
    assert bad.code == 2 and "node id 'a.b' contains '.'" in bad.err
    for result in (unknown, bad, unknown_skill):
        assert len(result.err.splitlines()) == 1 and result.out == ""

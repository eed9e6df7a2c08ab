"""``replay_tools rebuild`` against a real server: any point of the history."""

from __future__ import annotations

import json
from datetime import timedelta

from tests.factories import T0
from tests.projections.builders import joined
from tests.replay_tools.conftest import Run, seed, take_snapshot
from tests.replay_tools.history import cluster_start, expired, heartbeat, requeued_task


def test_until_seq_shows_a_node_alive_that_later_expired(url: str, cli: Run) -> None:
    seqs = seed(url, [*cluster_start(), *requeued_task(expiry=expired("n1", swept_at=T0))])
    expiry_seq = seqs[9]  # cluster_start has 6 events; NodeExpired is the 4th of the task's

    before = cli("rebuild", "--until-seq", str(expiry_seq - 1), "--json", url=url)
    after = cli("rebuild", "--json", url=url)

    assert before.code == 0, before.err
    then, now = json.loads(before.out), json.loads(after.out)
    assert then["last_seq"] == expiry_seq - 1
    assert {n["id"]: n["state"] for n in then["nodes"]} == {"n1": "alive", "n2": "alive"}
    assert {n["node_id"]: n["state"] for n in now["nodes"]} == {"n1": "expired", "n2": "alive"}
    assert [(t["id"], t["state"], t["node_id"]) for t in then["tasks"]] == [("t1", "running", "n1")]
    assert [(t["task_id"], t["state"], t["attempts"]) for t in now["tasks"]] == [
        ("t1", "succeeded", 2)
    ]
    assert now["skills"] == [
        {
            "id": "python",
            "state": "registered",
            "name": "python",
            "category": "system",
            "version": "1.0.0",
            "description": "",
            "dependencies": [],
            "holders": ["n2"],
            "would_be_holders": [],
        }
    ]
    assert now["problems"]["late"] == 1  # n1's result for the requeued attempt
    assert now["start"] == "replayed from sequence 1"


def test_tables_for_people(url: str, cli: Run) -> None:
    seed(url, [*cluster_start(), *requeued_task(expiry=expired("n1", swept_at=T0))])

    result = cli("rebuild", url=url)

    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].startswith("state at seq 15 of 15")
    assert "replayed from sequence 1" in lines[0]
    for header in ("SKILLS", "NODES", "TASKS"):
        assert header in lines
    assert any(line.split()[:2] == ["n1", "expired"] for line in lines)
    assert any(line.split()[:3] == ["t1", "succeeded", "n2"] for line in lines)
    assert "late 1" in result.out


def test_until_time_and_the_heartbeats_up_to_then(url: str, cli: Run) -> None:
    seed(url, [*cluster_start(), heartbeat("n1", cpu_percent=10.0), joined("n3")])
    cut = json.loads(cli("rebuild", "--json", url=url).out)["last_event_time"]
    seed(url, [heartbeat("n1", cpu_percent=90.0), joined("n4")])

    at_cut = json.loads(cli("rebuild", "--until-time", cut, "--json", url=url).out)
    now = json.loads(cli("rebuild", "--json", url=url).out)

    assert [n["id"] for n in at_cut["nodes"]] == ["n1", "n2", "n3"]
    assert [n["id"] for n in now["nodes"]] == ["n1", "n2", "n3", "n4"]
    cpu_then = {n["id"]: n["cpu_percent"] for n in at_cut["nodes"]}
    cpu_now = {n["id"]: n["cpu_percent"] for n in now["nodes"]}
    assert cpu_then == {"n1": 10.0, "n2": None, "n3": None}
    assert cpu_now == {"n1": 90.0, "n2": None, "n3": None, "n4": None}
    assert at_cut["heartbeats"]["until"] == cut
    assert at_cut["heartbeats"]["applied"] == 1


def test_until_time_before_the_first_event_is_an_error(url: str, cli: Run) -> None:
    seed(url, cluster_start())
    first = json.loads(cli("rebuild", "--until-seq", "1", "--json", url=url).out)
    early = (T0 - timedelta(days=1)).isoformat()

    result = cli("rebuild", "--until-time", early, url=url)

    assert result.code == 1
    assert result.out == ""
    assert len(result.err.splitlines()) == 1
    assert "before the first event" in result.err
    assert first["last_seq"] == 1


def test_bad_time_and_bad_sequence_are_usage_errors(url: str, cli: Run) -> None:
    seed(url, cluster_start())

    bad_time = cli("rebuild", "--until-time", "yesterday", url=url)
    bad_seq = cli("rebuild", "--until-seq", "0", url=url)

    for result in (bad_time, bad_seq):
        assert result.code == 2
        assert len(result.err.splitlines()) == 1, result.err
        assert "Traceback" not in result.err
    assert "ISO 8601" in bad_time.err


def test_from_snapshot_starts_there_and_agrees_with_a_full_replay(url: str, cli: Run) -> None:
    seed(url, cluster_start())
    covered = take_snapshot(url)
    seed(url, requeued_task(expiry=expired("n1", swept_at=T0)))

    scratch = json.loads(cli("rebuild", "--from-scratch", "--json", url=url).out)
    fast = json.loads(cli("rebuild", "--from-snapshot", "--json", url=url).out)
    early = json.loads(cli("rebuild", "--from-snapshot", "--until-seq", "3", "--json", url=url).out)

    assert fast["snapshot_seq"] == covered == 6
    assert "snapshot at seq 6" in fast["start"]
    assert early["snapshot_seq"] is None and "past the target" in early["start"]
    for key in ("skills", "nodes", "tasks", "problems", "last_seq"):
        assert fast[key] == scratch[key], key


def test_no_events_stream_is_a_clear_error(url: str, cli: Run) -> None:
    result = cli("rebuild", url=url)

    assert result.code == 1
    assert "no EVENTSRC_EVENTS stream" in result.err
    assert len(result.err.splitlines()) == 1


def test_a_sequence_past_the_end_shows_the_end_and_says_so(url: str, cli: Run) -> None:
    seqs = seed(url, cluster_start())
    past = seqs[-1] + 1000

    text = cli("rebuild", "--until-seq", str(past), url=url)
    data = json.loads(cli("rebuild", "--until-seq", str(past), "--json", url=url).out)

    assert text.code == 0, text.err
    assert text.out.startswith(f"note: --until-seq {past} is past the end of EVENTSRC_EVENTS")
    assert data["last_seq"] == seqs[-1]
    assert "past the end" in data["note"]
    assert json.loads(cli("rebuild", "--json", url=url).out)["note"] == ""

"""The status block as pure code: what each field shows, known or not."""

from __future__ import annotations

from typing import Any

import pytest

from eventsrc.cli_text import status_text

BASE: dict[str, Any] = {
    "leader": "c-1",
    "epoch": 2,
    "last_seq": 90,
    "stream_seq": 100,
    "standbys": ["c-2", "c-3"],
    "nodes": {"alive": 2, "expired": 1},
    "tasks": {"running": 1, "succeeded": 4},
    "skills": 3,
    "problems": {"undecodable": 0, "illegal": 2, "late": 0, "fenced": 0},
    "recent_problems": [],
    "stream_leaders": {},
}


@pytest.mark.parametrize(
    ("change", "field", "shown"),
    [
        ({}, "leader", "c-1 (epoch 2)"),
        ({"leader": None, "epoch": 0}, "leader", "none (epoch 0)"),
        ({}, "standbys", "c-2, c-3"),
        ({"standbys": []}, "standbys", "none"),
        ({"standbys": None}, "standbys", "unknown"),
        ({}, "events", "stream at 100, applied up to 90 (projection lag 10)"),
        ({"stream_seq": None}, "events", "applied up to 90 (the stream's position unknown)"),
        ({}, "nodes", "2 alive, 1 expired"),
        ({"nodes": {}}, "nodes", "none"),
        ({}, "tasks", "1 running, 4 succeeded (in memory)"),
        ({"tasks": {}}, "tasks", "none in memory"),
        ({}, "problems", "undecodable 0, illegal 2, late 0, fenced 0"),
    ],
)
def test_each_field_reads_as_words(change: dict[str, Any], field: str, shown: str) -> None:
    lines = status_text({**BASE, **change}).splitlines()
    fields = {name: value.strip() for name, value in (line.split(":", 1) for line in lines)}
    assert fields[field] == shown


def test_an_answer_from_an_older_coordinator_still_reads() -> None:
    # Without the fields newer coordinators add: shown as unknown, no KeyError.
    older = {k: v for k, v in BASE.items() if k not in ("stream_seq", "standbys")}
    text = status_text(older)
    assert "standbys: unknown" in text and "position unknown" in text


def test_stream_leaders_and_recent_problems_follow_the_block() -> None:
    text = status_text(
        {**BASE, "stream_leaders": {"EVENTSRC_EVENTS": "nats-1"}, "recent_problems": ["seq 7: x"]}
    )
    assert text.splitlines()[-4:] == [
        "NATS leaders (stream: server; a stream without one cannot store):",
        "  EVENTSRC_EVENTS: nats-1",
        "recent problems:",
        "  seq 7: x",
    ]

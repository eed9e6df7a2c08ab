"""``replay_tools verify``: a sound history passes, every kind of damage fails."""

from __future__ import annotations

import asyncio
import json

import nats

from eventsrc.events import Event, canonical_hash, encode
from eventsrc.ports import EVENTS_STREAM
from eventsrc.projections.snapshot import encode_snapshot, read_document
from eventsrc.store.snapshots import SnapshotStore
from tests.factories import T0
from tests.projections.builders import started
from tests.replay_tools.conftest import Run, publish_raw, seed, take_snapshot
from tests.replay_tools.history import cluster_start, expired, heartbeat, requeued_task


def history() -> list[Event]:
    return [
        *cluster_start(),
        heartbeat("n1"),
        *requeued_task(expiry=expired("n1", swept_at=T0)),
    ]


def levels(out: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in out.splitlines():
        if line[:1].strip() and ":" in line and not line.startswith("verify"):
            level, name = line.split()[:2]
            found.setdefault(name.rstrip(":"), []).append(level)
    return found


def test_a_clean_history_with_its_snapshot_passes(url: str, cli: Run) -> None:
    seed(url, history()[:10])
    take_snapshot(url)
    seed(url, history()[10:])

    result = cli("verify", url=url)

    assert result.code == 0, result.out + result.err
    assert result.out.splitlines()[-1] == "verify: ok"
    assert levels(result.out) == {
        "events": ["ok"],
        "decoding": ["ok"],
        "transitions": ["ok"],
        "snapshot": ["ok"],
        "restart": ["ok"],
        "heartbeats": ["ok"],
    }
    assert "snapshot + events 10..15 equals a full replay" in result.out


def test_without_a_snapshot_it_says_so_and_checks_the_stream(url: str, cli: Run) -> None:
    seed(url, history())

    result = cli("verify", "--json", url=url)

    assert result.code == 0
    report = json.loads(result.out)
    assert report["ok"] is True
    snapshot = [c for c in report["checks"] if c["name"] == "snapshot"]
    assert snapshot == [
        {
            "name": "snapshot",
            "level": "info",
            "text": "no snapshot stored; checked the stream only",
            "details": [],
        }
    ]


def test_a_planted_bad_message_fails_and_is_named(url: str, cli: Run) -> None:
    seed(url, history()[:5])
    bad_seq = publish_raw(url, "evt.node.n1", b"\x00 garbage, not an event")
    seed(url, history()[5:])
    take_snapshot(url)

    result = cli("verify", url=url)

    assert result.code == 1
    assert levels(result.out)["decoding"] == ["FAIL"]
    assert f"seq {bad_seq} evt.node.n1: not JSON" in result.out
    assert levels(result.out)["snapshot"] == ["ok"]  # counted the same way in both
    assert result.out.splitlines()[-1] == "verify: 1 check(s) failed"


def test_an_illegal_event_fails(url: str, cli: Run) -> None:
    seed(url, [*cluster_start(), started("ghost", "n1")])

    result = cli("verify", url=url)

    assert result.code == 1
    assert levels(result.out)["transitions"] == ["FAIL"]
    assert "TaskStarted for unknown task ghost" in result.out


async def _tamper_snapshot(url: str) -> None:
    nc = await nats.connect(url)
    try:
        snapshots = SnapshotStore(nc.jetstream())
        raw = await snapshots.load()
        assert raw is not None
        document = read_document(raw)
        document["state"]["nodes"]["n2"]["capacity"] = 99
        document["hash"] = canonical_hash(document["state"])
        await snapshots.save(encode_snapshot(document))
    finally:
        await nc.close()


def test_a_snapshot_that_disagrees_with_the_history_fails(url: str, cli: Run) -> None:
    seed(url, history())
    take_snapshot(url)
    asyncio.run(_tamper_snapshot(url))

    result = cli("verify", url=url)

    assert result.code == 1
    assert levels(result.out)["snapshot"] == ["FAIL"]
    assert levels(result.out)["restart"] == ["FAIL"]
    assert "the snapshot and the history disagree" in result.out


async def _delete(url: str, seq: int) -> None:
    nc = await nats.connect(url)
    try:
        await nc.jetstream().delete_msg(EVENTS_STREAM, seq)
    finally:
        await nc.close()


def test_an_event_deleted_from_the_middle_fails(url: str, cli: Run) -> None:
    seqs = seed(url, history())
    asyncio.run(_delete(url, seqs[3]))

    result = cli("verify", url=url)

    assert result.code == 1
    assert levels(result.out)["events"] == ["FAIL"]
    assert f"seq {seqs[3]}..{seqs[3]} missing" in result.out


def test_a_heartbeat_forged_for_another_node_fails(url: str, cli: Run) -> None:
    seed(url, [*cluster_start(), heartbeat("n1")])
    forged_seq = publish_raw(url, "hb.n1", encode(heartbeat("n2")))

    result = cli("verify", url=url)

    assert result.code == 1
    assert levels(result.out)["heartbeats"] == ["FAIL"]
    assert f"seq {forged_seq} hb.n1: a Heartbeat for hb.n2 was stored under hb.n1" in result.out

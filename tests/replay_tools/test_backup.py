"""``export`` and ``import``: a faithful copy, idempotent, and loud about bad files."""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from pathlib import Path
from typing import Any

import nats
import nats.js.errors

from eventsrc.events import Event
from eventsrc.ports import EVENTS_STREAM, HEARTBEATS_STREAM
from eventsrc.store import JetStreamEventStore, StreamSettings
from tests.conftest import MakeServer
from tests.factories import T0
from tests.projections.builders import joined
from tests.replay_tools.conftest import Run, publish_raw, seed
from tests.replay_tools.history import cluster_start, expired, heartbeat, requeued_task

# The server stamps every message when it stores it, so an import carries the import
# time, not the original one (which travels along in a header). Everything else must
# be equal.
SERVER_TIMES = {
    "submitted_at",
    "finished_at",
    "last_heartbeat_at",
    "last_event_time",
    "retained_from",
}


def history() -> list[Event]:
    return [
        *cluster_start(),
        heartbeat("n1", cpu_percent=12.5),
        heartbeat("n2", cpu_percent=50.0),
        *requeued_task(expiry=expired("n1", swept_at=T0)),
    ]


def without_server_times(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_server_times(v) for k, v in value.items() if k not in SERVER_TIMES}
    if isinstance(value, list):
        return [without_server_times(item) for item in value]
    return value


def fresh(make_server: MakeServer) -> str:
    server = make_server()
    assert server.url is not None
    return server.url


async def _counts(url: str) -> dict[str, int]:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        found = {}
        for name in (EVENTS_STREAM, HEARTBEATS_STREAM):
            try:
                found[name] = (await js.stream_info(name)).state.messages
            except nats.js.errors.NotFoundError:
                found[name] = 0
        return found
    finally:
        await nc.close()


def counts(url: str) -> dict[str, int]:
    return asyncio.run(_counts(url))


def test_export_then_import_rebuilds_the_same_state(
    url: str, cli: Run, make_server: MakeServer, tmp_path: Path
) -> None:
    seed(url, history()[:5])
    publish_raw(url, "evt.node.n9", b"\xff\xfe not utf-8")
    publish_raw(url, "evt.node.n9", b"{not json")
    seed(url, history()[5:])
    original = json.loads(cli("rebuild", "--json", url=url).out)
    path = tmp_path / "backup.jsonl.gz"

    exported = cli("export", "--out", str(path), url=url)
    target = fresh(make_server)
    imported = cli("import", "--in", str(path), url=target)
    rebuilt = cli("rebuild", "--json", url=target)
    assert rebuilt.code == 0, (imported, rebuilt)
    copy = json.loads(rebuilt.out)

    assert exported.code == 0, exported.err
    assert "EVENTSRC_EVENTS: exported 17" in exported.out
    assert imported.code == 0, imported.err
    assert imported.out.splitlines() == [
        "EVENTSRC_EVENTS: imported 17",
        "EVENTSRC_HEARTBEATS: imported 2",
    ]
    assert original["problems"]["undecodable"] == 2
    assert without_server_times(copy) == without_server_times(original)
    assert copy["last_seq"] == original["last_seq"] == 17
    assert [n["last_heartbeat_at"] is not None for n in copy["nodes"]] == [True, True]
    # Exported again, the copy names the original sequence and time of every message.
    again = path.with_name("again.jsonl")
    assert cli("export", "--out", str(again), url=target).code == 0
    first_lines = [json.loads(line) for line in gzip.decompress(path.read_bytes()).splitlines()]
    second_lines = [json.loads(line) for line in again.read_text().splitlines()]
    origins = [
        (line["headers"]["Eventsrc-Origin-Seq"], line["headers"]["Eventsrc-Origin-Time"])
        for line in second_lines[1:-1]
    ]
    assert origins == [(str(line["seq"]), line["time"]) for line in first_lines[1:-1]]


def test_export_file_format(url: str, cli: Run, tmp_path: Path) -> None:
    seed(url, [*cluster_start()[:2], heartbeat("n1")])
    publish_raw(url, "evt.node.n1", b"\xff oops")
    path = tmp_path / "backup.jsonl"

    assert cli("export", "--out", str(path), url=url).code == 0

    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0] == {
        "format": "eventsrc-export",
        "version": 1,
        "streams": [EVENTS_STREAM, HEARTBEATS_STREAM],
    }
    leader = lines[1]
    assert (leader["stream"], leader["seq"], leader["subject"]) == (EVENTS_STREAM, 1, "evt.cluster")
    assert leader["data"]["type"] == "LeaderElected"
    assert leader["headers"]["Nats-Msg-Id"] == leader["data"]["event_id"]
    assert lines[3]["data_base64"] and "not JSON" in lines[3]["undecodable"]
    assert lines[4]["stream"] == HEARTBEATS_STREAM and lines[4]["data"]["type"] == "Heartbeat"
    assert lines[5] == {"end": True, "messages": {EVENTS_STREAM: 3, HEARTBEATS_STREAM: 1}}


def test_importing_twice_stores_nothing_twice(
    url: str, cli: Run, make_server: MakeServer, tmp_path: Path
) -> None:
    seed(url, history())
    publish_raw(url, "evt.node.n1", b"raw, without an event id")
    path = tmp_path / "backup.jsonl"
    cli("export", "--out", str(path), url=url)
    target = fresh(make_server)

    first = cli("import", "--in", str(path), url=target)
    after_first = counts(target)
    second = cli("import", "--in", str(path), url=target)

    assert first.code == second.code == 0
    assert after_first == counts(url) == counts(target)
    assert second.out.splitlines() == [
        "EVENTSRC_EVENTS: imported 0, skipped 16 already present",
        "EVENTSRC_HEARTBEATS: imported 0, skipped 2 already present",
    ]
    # Into the deployment the file came from: nothing new either.
    same = cli("import", "--in", str(path), url=url)
    assert same.code == 0 and "imported 0, skipped 16" in same.out


async def _short_dedup_window(url: str) -> None:
    nc = await nats.connect(url)
    try:
        await JetStreamEventStore(
            nc, settings=StreamSettings(duplicate_window_s=0.2)
        ).ensure_streams()
    finally:
        await nc.close()


def test_importing_twice_outside_the_dedup_window(
    url: str, cli: Run, make_server: MakeServer, tmp_path: Path
) -> None:
    seed(url, history())
    path = tmp_path / "backup.jsonl"
    cli("export", "--out", str(path), url=url)
    target = fresh(make_server)
    asyncio.run(_short_dedup_window(target))

    cli("import", "--in", str(path), url=target)
    # Time passing is the point here, not a wait for something: once the server's 0.2 s
    # dedup window is over, only the importer's own check stands between us and doubles.
    time.sleep(0.3)
    again = cli("import", "--in", str(path), url=target)

    assert again.code == 0
    assert counts(target) == counts(url)


def test_interrupted_import_resumes(
    url: str, cli: Run, make_server: MakeServer, tmp_path: Path
) -> None:
    events = history()
    seed(url, events)
    path = tmp_path / "backup.jsonl"
    cli("export", "--out", str(path), url=url)
    target = fresh(make_server)
    seed(target, [event for event in events[:4]])  # the same first events, the same ids

    result = cli("import", "--in", str(path), url=target)

    assert result.code == 0, result.err
    assert counts(target) == counts(url)


def test_a_different_history_is_refused(
    url: str, cli: Run, make_server: MakeServer, tmp_path: Path
) -> None:
    seed(url, history())
    path = tmp_path / "backup.jsonl"
    cli("export", "--out", str(path), url=url)
    target = fresh(make_server)
    seed(target, [joined("somebody-else")])

    result = cli("import", "--in", str(path), url=target)

    assert result.code == 1
    assert "already holds a different history" in result.err
    assert len(result.err.splitlines()) == 1
    assert counts(target)[EVENTS_STREAM] == 1


def test_corrupt_files_name_the_line(
    url: str, cli: Run, make_server: MakeServer, tmp_path: Path
) -> None:
    seed(url, history())
    good = tmp_path / "good.jsonl"
    cli("export", "--out", str(good), url=url)
    lines = good.read_text().splitlines()
    target = fresh(make_server)

    def attempt(name: str, text: str) -> str:
        path = tmp_path / name
        path.write_text(text)
        result = cli("import", "--in", str(path), url=target)
        assert result.code == 1, result.out
        assert len(result.err.splitlines()) == 1 and "Traceback" not in result.err
        return result.err

    broken = [*lines[:5], lines[5][:-7], *lines[6:]]
    assert "line 6: not valid JSON" in attempt("broken.jsonl", "\n".join(broken) + "\n")
    assert "line 9: the file ends without its end marker" in attempt(
        "cut.jsonl", "\n".join(lines[:9]) + "\n"
    )
    assert "line 1: not an eventsrc export" in attempt("other.jsonl", '{"hello": 1}\n')
    wrong = [*lines[:3], json.dumps({**json.loads(lines[3]), "stream": "X"}), *lines[4:]]
    assert "line 4: unknown stream 'X'" in attempt("wrong.jsonl", "\n".join(wrong) + "\n")
    missing = cli("import", "--in", str(tmp_path / "nope.jsonl"), url=target)
    assert missing.code == 1 and "does not exist" in missing.err
    gz = tmp_path / "cut.jsonl.gz"
    gz.write_bytes(gzip.compress(good.read_bytes())[:-40])
    truncated = cli("import", "--in", str(gz), url=target)
    assert truncated.code == 1 and "cannot read it" in truncated.err
    assert counts(target) == {EVENTS_STREAM: 0, HEARTBEATS_STREAM: 0}

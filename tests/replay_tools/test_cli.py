"""``stats``, ``schema``, the console entry, and the errors every subcommand shares."""

from __future__ import annotations

import io
import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from eventsrc.events import EVENT_CLASSES
from eventsrc.progress import hidden
from replay_tools.render import Progress
from tests.factories import T0
from tests.replay_tools.conftest import Run, publish_raw, seed
from tests.replay_tools.history import cluster_start, expired, heartbeat, requeued_task

ROOT = Path(__file__).resolve().parents[2]


def test_stats_counts_by_type_and_subject(url: str, cli: Run) -> None:
    seed(url, [*cluster_start(), heartbeat("n1"), heartbeat("n2"), heartbeat("n1")])
    seed(url, requeued_task(expiry=expired("n1", swept_at=T0)))
    publish_raw(url, "evt.task.t1.lifecycle", b"junk")

    result = cli("stats", "--json", url=url)

    assert result.code == 0, result.err
    stats = json.loads(result.out)
    assert stats["by_prefix"] == {
        "evt.cluster": 1,
        "evt.node": 5,
        "evt.skill": 1,
        "evt.task": 9,
        "hb": 3,
    }
    assert stats["by_type"]["TaskSucceeded"] == 2
    assert stats["by_type"]["Heartbeat"] == 3
    assert stats["by_type"]["(undecodable)"] == 1
    events = stats["streams"]["EVENTSRC_EVENTS"]
    assert (events["messages"], events["first_seq"], events["last_seq"]) == (16, 1, 16)
    assert events["bytes"] > 0 and events["first_time"] <= events["last_time"]
    assert stats["streams"]["EVENTSRC_HEARTBEATS"]["messages"] == 3

    text = cli("stats", url=url).out
    assert text.splitlines()[0].split() == [
        "STREAM",
        "MESSAGES",
        "BYTES",
        "SEQUENCES",
        "DELETED",
        "FIRST",
        "LAST",
    ]
    assert any(line.split()[:2] == ["evt.task", "9"] for line in text.splitlines())


def test_schema_to_stdout_and_to_a_folder(cli: Run, tmp_path: Path) -> None:
    printed = cli("schema")
    written = cli("schema", "--out", str(tmp_path / "schemas"))

    schemas = json.loads(printed.out)
    assert set(schemas) == set(EVENT_CLASSES)
    assert schemas["TaskAssigned"]["properties"]["type"]["const"] == "TaskAssigned"
    assert "event_id" in schemas["Heartbeat"]["required"]
    assert written.code == 0
    files = sorted(p.name for p in (tmp_path / "schemas").iterdir())
    assert files == sorted(f"{name}.schema.json" for name in EVENT_CLASSES)
    on_disk = json.loads((tmp_path / "schemas" / "NodeExpired.schema.json").read_text())
    assert on_disk == schemas["NodeExpired"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    "args",
    [
        ["rebuild"],
        ["audit", "task", "t1"],
        ["verify"],
        ["what-if", "--stale-after", "5"],
        ["export", "--out", "unused.jsonl"],
        ["import", "--in", "unused.jsonl"],
        ["stats"],
    ],
)
def test_a_dead_server_is_one_line_and_exit_3(cli: Run, args: list[str]) -> None:
    dead = f"nats://127.0.0.1:{free_port()}"

    result = cli(*args, url=dead)

    assert result.code == 3
    assert result.out == ""
    assert len(result.err.splitlines()) == 1
    assert result.err.startswith(f"error: cannot reach NATS at {dead}")


def test_the_url_may_come_before_the_subcommand_or_from_the_environment(
    url: str, cli: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(url, cluster_start())

    before = cli("--nats-url", url, "stats", "--json")
    monkeypatch.setenv("EVENTSRC_NATS_URL", url)
    from_env = cli("stats", "--json")

    assert before.code == from_env.code == 0
    assert json.loads(before.out)["by_prefix"] == json.loads(from_env.out)["by_prefix"]


def test_the_console_entry_runs_as_a_program(url: str, tmp_path: Path) -> None:
    seed(url, [*cluster_start(), *requeued_task(expiry=expired("n1", swept_at=T0))])

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "replay_tools", *args],
            cwd=tmp_path,
            env={"PATH": "", "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=60,
        )

    ok = run("audit", "task", "t1", "--nats-url", url)
    missing = run("audit", "task", "t404", "--nats-url", url)
    usage = run("frobnicate")

    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("task t1: 8 events")
    assert missing.returncode == 1
    assert len(missing.stderr.splitlines()) == 1
    assert "no events for task t404" in missing.stderr
    assert usage.returncode == 2 and len(usage.stderr.splitlines()) == 1


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_shows_only_on_a_terminal_for_long_jobs() -> None:
    terminal, pipe, short = _Terminal(), io.StringIO(), _Terminal()

    for stream, total in ((terminal, 50_000), (pipe, 50_000), (short, 10)):
        progress = Progress("replaying events", total, stream=stream, refresh_s=0)
        progress.update(25_000)
        progress.done()

    # The count, the rate and the time left; the line is cleared at the end.
    drawn = [line for line in terminal.getvalue().split("\r") if line.strip()][-1]
    assert re.fullmatch(
        r"replaying events:  50%\|.*\| 25\.0k/50\.0k \[\d\d:\d\d<\d\d:\d\d, +[\d.]+\w? events/s\]",
        drawn,
    ), terminal.getvalue()
    assert not terminal.getvalue().split("\r")[-2].strip()
    assert pipe.getvalue() == short.getvalue() == ""


def test_no_progress_for_json_output() -> None:
    terminal = _Terminal()
    with hidden():
        progress = Progress("replaying events", 50_000, stream=terminal, refresh_s=0)
        progress.update(25_000)
        progress.done()
    assert terminal.getvalue() == ""

"""``eventsrc status`` for people (a block without Python reprs, naming the standbys,
the stream position and the projection lag) and for programs (``--json``); the global
options after the command on real runs."""

from __future__ import annotations

import json
import re

from tests.cli.conftest import eventsrc_cli
from tests.e2e.conftest import E2E, poll


async def test_status_is_a_readable_block_naming_the_standbys(e2e: E2E) -> None:
    await e2e.start_node("n-1", "python")
    ran = await eventsrc_cli(
        ["submit", "--skill", "python", "--payload", '{"code": "print(1)"}', "--wait", "--json"],
        cwd=e2e.workdir,
        url=e2e.url,
    )
    assert ran.code == 0 and ran.json["state"] == "succeeded", ran
    standby = e2e.start_coordinator()  # the lease is held: this one stands by
    pid = f"-{standby.proc.pid}-"

    async def with_standby() -> dict[str, object] | None:
        status = await eventsrc_cli(["status", "--json"], cwd=e2e.workdir, url=e2e.url)
        assert status.code == 0, status
        data: dict[str, object] = status.json
        standbys = data["standbys"]
        return data if isinstance(standbys, list) and any(pid in s for s in standbys) else None

    data = await poll(with_standby, "the second coordinator listed as a standby")
    # The structure programs read: counts stay objects, the new fields are plain values.
    assert data["nodes"] == {"alive": 1}, data
    assert isinstance(data["problems"], dict) and data["problems"]["fenced"] == 0, data
    assert isinstance(data["stream_seq"], int) and isinstance(data["last_seq"], int), data
    assert data["stream_seq"] >= data["last_seq"] > 0, data

    text = await eventsrc_cli(["status"], cwd=e2e.workdir, url=e2e.url)
    assert text.code == 0, text
    assert not re.search(r"[{}\[\]]|'\w+':", text.out), text.out  # no dict or list reprs
    fields = {
        name: value.strip()
        for name, value in (line.split(":", 1) for line in text.out.splitlines())
        if not name.startswith(" ")
    }
    assert fields["leader"] == f"{data['leader']} (epoch {data['epoch']})", text.out
    assert pid in fields["standbys"], text.out
    assert re.fullmatch(
        r"stream at \d+, applied up to \d+ \(projection lag \d+\)", fields["events"]
    ), text.out
    assert fields["nodes"] == "1 alive", text.out
    assert fields["problems"] == (
        "undecodable 0, illegal 0, late 0, fenced 0, undecodable heartbeats 0"
    ), text.out
    assert "  EVENTSRC_EVENTS: " in text.out, text.out


async def test_global_options_after_the_command_on_real_runs(e2e: E2E) -> None:
    await e2e.start_node("n-1", "python")
    nodes = await eventsrc_cli(["nodes", "--json"], cwd=e2e.workdir, url=e2e.url)
    assert nodes.code == 0 and [n["node_id"] for n in nodes.json["nodes"]] == ["n-1"], nodes
    skills = await eventsrc_cli(["skills"], cwd=e2e.workdir, url=e2e.url)
    assert skills.code == 0 and "python" in skills.out, skills
    # Before the command too, and --json before, --nats-url after.
    tasks = await eventsrc_cli(["--json", "tasks", "--all"], cwd=e2e.workdir, url=e2e.url)
    assert tasks.code == 0 and tasks.json == {"tasks": []}, tasks
    stats = await eventsrc_cli(
        ["stats", "--json"], cwd=e2e.workdir, url=e2e.url, module="replay_tools"
    )
    assert stats.code == 0 and json.loads(stats.out)["streams"]["EVENTSRC_EVENTS"]["exists"], stats

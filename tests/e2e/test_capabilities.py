"""A skill a node found but cannot run, end to end: listed with what it lacks, a task for
it waits saying so and times out with that reason; once the binary is on the PATH the
node's rescan (its timer, or SIGHUP) makes it held, without a restart."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

from tests.e2e.conftest import E2E, poll

GHOST_SKILL = """\
---
name: ghost-tool
description: Haunts things
metadata: {"openclaw": {"requires": {"bins": ["ghost-bin"]}, "install": [{"id": "brew",
  "kind": "brew", "formula": "ghost", "bins": ["ghost-bin"]}]}, "eventsrc": {"run": "./run.sh"}}
---
"""


def ghost_folder(root: Path) -> Path:
    folder = root / "ghost-tool"
    folder.mkdir(parents=True)
    (folder / "SKILL.md").write_text(GHOST_SKILL)
    (folder / "run.sh").write_text("#!/bin/sh\nghost-bin\n")
    (folder / "run.sh").chmod(0o755)
    return root


async def test_ghost_tool_is_listed_waits_times_out_and_is_held_after_a_rescan(
    e2e: E2E, tmp_path: Path
) -> None:
    skills_dir = ghost_folder(tmp_path / "skills")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    env = {"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}
    rescan = ["--skills-dir", str(skills_dir), "--rescan-interval", "1"]
    await e2e.start_node("alpha", extra=rescan, env=env)

    async def ghost_listed() -> dict[str, Any] | None:
        listing = (await e2e.cli("skills", "--json")).json["skills"]
        return next((s for s in listing if s["name"] == "ghost-tool"), None)

    ghost = await poll(ghost_listed, "ghost-tool in eventsrc skills")
    assert ghost["holders"] == []
    assert ghost["would_be_holders"] == [
        {
            "node_id": "alpha",
            "lacks": ["bin:ghost-bin"],
            "install": "bins=ghost-bin formula=ghost id=brew kind=brew",
        }
    ]
    table = await e2e.cli("skills")
    assert "alpha lacks bin:ghost-bin (install: bins=ghost-bin" in table.out

    why = "no node can run ghost-tool now; alpha would run ghost-tool with bin:ghost-bin"
    now = await e2e.cli("submit", "--skill", "ghost-tool", "--queue-timeout", "0", "--json")
    assert now.code != 0
    assert now.json["state"] == "rejected" and now.json["reason"].startswith(why)
    waited = await e2e.cli(
        "submit", "--skill", "ghost-tool", "--queue-timeout", "2", "--wait", "--json"
    )
    assert waited.json["state"] == "timed_out", waited
    assert "passed while waiting: " + why in waited.json["reason"]

    (bindir / "ghost-bin").write_text("#!/bin/sh\necho boo\n")
    (bindir / "ghost-bin").chmod(0o755)
    installed = time.monotonic()
    await e2e.wait_node("alpha", "alive", skills=["ghost-tool"])
    assert time.monotonic() - installed < 10, "not held within the rescan interval"
    done = await e2e.cli("submit", "--skill", "ghost-tool", "--wait", "--json")
    assert done.code == 0, done
    assert done.json["result"] == "boo"


async def test_sighup_rescans_at_once_when_the_timer_is_off(e2e: E2E, tmp_path: Path) -> None:
    skills_dir = ghost_folder(tmp_path / "skills")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    env = {"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}
    node = await e2e.start_node(
        "alpha", extra=["--skills-dir", str(skills_dir), "--rescan-interval", "0"], env=env
    )
    (bindir / "ghost-bin").write_text("#!/bin/sh\necho boo\n")
    (bindir / "ghost-bin").chmod(0o755)
    await asyncio.sleep(1.5)  # a timer, were one on, would have fired by now
    view = await e2e.node_view("alpha")
    assert view is not None and "ghost-tool" not in view["skills"]
    node.proc.send_signal(signal.SIGHUP)
    await e2e.wait_node("alpha", "alive", skills=["ghost-tool"])

"""A node process on a machine with the real openclaw: it offers OpenClaw's own skills.

HOME is a temporary folder; ``openclaw`` and its Node.js come first on the node's PATH,
as on a user's machine.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.conftest import E2E
from tests.openclaw_toolchain import OpenClawToolchain


def shadow_skill(home: Path, name: str, reply: str) -> None:
    """A workspace skill with our ``run`` that has the name of a bundled one."""
    folder = home / ".openclaw" / "workspace" / "skills" / name
    folder.mkdir(parents=True)
    (folder / "SKILL.md").write_text(
        f"---\nname: {name}\ndescription: the workspace's own {name}\n"
        'metadata: {"eventsrc": {"run": "./run.sh"}}\n---\n'
    )
    (folder / "run.sh").write_text(f"#!/bin/sh\necho '{reply}'\n")
    (folder / "run.sh").chmod(0o755)


async def test_a_node_advertises_openclaws_eligible_skills_and_a_workspace_one_shadows(
    e2e: E2E, openclaw: OpenClawToolchain, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    shadow_skill(home, "healthcheck", "the workspace healthcheck ran")
    listed = openclaw.run(["skills", "list", "--json"], home=home)
    assert listed.returncode == 0, listed.stderr
    theirs = {s["name"]: s for s in json.loads(listed.stdout)["skills"]}
    eligible = sorted(name for name, s in theirs.items() if s["eligible"])
    bundled = [n for n in eligible if theirs[n]["source"] == "openclaw-bundled"]
    assert len(bundled) >= 5 and theirs["healthcheck"]["source"] == "openclaw-workspace"

    await e2e.start_node("claw", env=openclaw.env(home))
    await e2e.wait_node("claw", "alive", skills=eligible)
    (node,) = (await e2e.cli("nodes", "--json")).json["nodes"]
    assert sorted(node["skills"]) == eligible
    assert sorted(node["unavailable"]) == sorted(set(theirs) - set(eligible))

    done = await e2e.cli("submit", "--skill", "healthcheck", "--wait", "--json")
    assert done.code == 0, done
    assert done.json["result"] == "the workspace healthcheck ran"

"""Two nodes with OpenClaw skill folders: tasks go where the skill is, gated skills don't."""

from __future__ import annotations

import textwrap
from pathlib import Path

from tests.e2e.conftest import E2E


def skill_folder(root: Path, name: str, script: str, *, bins: tuple[str, ...] = ()) -> None:
    folder = root / name
    folder.mkdir(parents=True)
    requires = f'"requires": {{"bins": {list(bins)!r}}}'.replace("'", '"') if bins else ""
    (folder / "SKILL.md").write_text(
        textwrap.dedent(f"""\
        ---
        name: {name}
        description: {name} for the e2e test
        metadata: {{"openclaw": {{{requires}}}, "eventsrc": {{"run": "./run.py"}}}}
        ---
        """)
    )
    run = folder / "run.py"
    run.write_text("#!/usr/bin/env python3\nimport json, sys\n" + script)
    run.chmod(0o755)


async def test_tasks_land_on_the_node_with_the_skill_folder(e2e: E2E, tmp_path: Path) -> None:
    dir_a, dir_b = tmp_path / "skills-a", tmp_path / "skills-b"
    skill_folder(
        dir_a,
        "greet",
        "payload = json.load(sys.stdin)\nprint(json.dumps({'hello': payload['name']}))\n",
    )
    skill_folder(dir_b, "count", "print(len(json.load(sys.stdin)['items']))\n")
    skill_folder(dir_b, "transcode", "print('never')\n", bins=("no-such-binary-xyz",))
    # No --skill: each node advertises what its folder holds and OpenClaw's gating allows.
    await e2e.start_node("node_a", extra=["--skills-dir", str(dir_a)])
    await e2e.start_node("node_b", extra=["--skills-dir", str(dir_b)])
    await e2e.wait_node("node_a", "alive", skills=["greet"])
    await e2e.wait_node("node_b", "alive", skills=["count"])

    greet = await e2e.cli(
        "submit", "--skill", "greet", "--payload", '{"name": "ada"}', "--wait", "--json"
    )
    assert greet.code == 0, greet
    assert greet.json["node_id"] == "node_a"
    assert greet.json["result"] == {"hello": "ada"}

    count = await e2e.cli(
        "submit", "--skill", "count", "--payload", '{"items": [1, 2, 3]}', "--wait", "--json"
    )
    assert count.code == 0, count
    assert (count.json["node_id"], count.json["result"]) == ("node_b", 3)

    skills = {s["name"]: s for s in (await e2e.cli("skills", "--json")).json["skills"]}
    assert "transcode" not in skills or skills["transcode"]["holders"] == []
    nodes = {n["node_id"]: n for n in (await e2e.cli("nodes", "--json")).json["nodes"]}
    assert "transcode" not in nodes["node_b"]["skills"]
    assert nodes["node_b"]["unavailable"] == ["transcode"]

"""OpenClaw's own skills on a node: its ``skills list`` answer is the authority, the folder
scan adds our keys; against the real openclaw and as pure functions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eventsrc.config import NodeConfig
from eventsrc.node.discovery import DiscoveryResult, load_skill
from eventsrc.node.executors import CommandExecutor, OpenClawExecutor
from eventsrc.node.openclaw import OpenClawListError, merge, parse_list
from eventsrc.node.setup import discover
from tests.openclaw_toolchain import OpenClawToolchain

LISTED = {
    "workspaceDir": "/home/u/.openclaw/workspace",
    "skills": [
        {
            "name": "tmux",
            "description": "Control tmux",
            "eligible": True,
            "source": "openclaw-bundled",
            "missing": {"bins": [], "anyBins": [], "env": [], "config": [], "os": []},
        },
        {
            "name": "1password",
            "description": "1Password CLI",
            "eligible": False,
            "disabled": False,
            "blockedByAllowlist": False,
            "source": "openclaw-bundled",
            "missing": {"bins": ["op"], "anyBins": [], "env": [], "config": [], "os": []},
        },
        {
            "name": "narrowed",
            "eligible": True,
            "blockedByAgentFilter": True,
            "source": "openclaw-bundled",
            "missing": {},
        },
        {"name": "bad name!", "eligible": True},
    ],
}
CHECKED = {
    "missingRequirements": [
        {
            "name": "1password",
            "install": [
                {
                    "id": "brew",
                    "kind": "brew",
                    "label": "Install 1Password CLI (brew)",
                    "bins": ["op"],
                }
            ],
        }
    ]
}


def test_the_list_is_read_with_verdicts_missing_items_and_install_hints() -> None:
    listed = parse_list("[plugins] loading\n" + json.dumps(LISTED), json.dumps(CHECKED))
    assert listed.workspace == Path("/home/u/.openclaw/workspace")
    assert sorted(listed.skills) == ["1password", "narrowed", "tmux"]
    assert listed.skills["tmux"].eligible and listed.skills["tmux"].source == "openclaw-bundled"
    missing = listed.skills["1password"].missing
    assert missing is not None and missing.missing_bins == ("op",)
    assert missing.install_text() == "Install 1Password CLI (brew)"
    narrowed = listed.skills["narrowed"].missing
    assert narrowed is not None and narrowed.lacks() == ("not in the agent's skills",)
    assert len(listed.errors) == 1 and "bad name!" in listed.errors[0]


def test_an_answer_without_a_skills_list_is_an_error() -> None:
    with pytest.raises(OpenClawListError, match="no skills list"):
        parse_list("Config invalid: ...")


def test_merge_keeps_our_keys_takes_openclaws_verdict_and_the_extra_folders(
    tmp_path: Path,
) -> None:
    def folder(root: Path, name: str, run: str | None) -> Path:
        (root / name).mkdir(parents=True)
        ours = f', "eventsrc": {{"run": "{run}"}}' if run else ""
        (root / name / "SKILL.md").write_text(
            f'---\nname: {name}\ndescription: ours\nmetadata: {{"openclaw": {{}}{ours}}}\n---\n'
        )
        return root / name

    scan = DiscoveryResult(
        skills={
            s.name: s
            for s in (
                load_skill(
                    folder(tmp_path / "ws", "1password", "./run.sh"), source="workspace", env={}
                ),
                load_skill(folder(tmp_path / "x", "tmux", None), source="extra", env={}),
                load_skill(folder(tmp_path / "x", "mine", "./run.sh"), source="extra", env={}),
            )
        }
    )
    merged = merge(scan, parse_list(json.dumps(LISTED)))
    one = merged.skills["1password"]
    assert (one.run, one.source, one.eligible) == ("./run.sh", "openclaw-bundled", False)
    assert merged.skills["tmux"].folder is None  # OpenClaw's wins over a run-less extra copy
    assert merged.skills["mine"].source == "extra"


def test_a_node_offers_openclaws_eligible_skills_and_a_workspace_skill_shadows_a_bundled_one(
    openclaw: OpenClawToolchain, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    shadow = home / ".openclaw" / "workspace" / "skills" / "healthcheck"
    shadow.mkdir(parents=True)
    (shadow / "SKILL.md").write_text(
        '---\nname: healthcheck\ndescription: ours\nmetadata: {"eventsrc": {"run": "./run.sh"}}'
        "\n---\n"
    )
    env = openclaw.env(home)
    done = openclaw.run(["skills", "list", "--json"], home=home)
    assert done.returncode == 0, done.stderr
    theirs = {s["name"]: s for s in json.loads(done.stdout)["skills"]}
    assert theirs["healthcheck"]["source"] == "openclaw-workspace"

    found = discover(NodeConfig(), env)
    eligible = {name for name, s in theirs.items() if s["eligible"]}
    assert set(found.skills) == eligible
    assert "skill-creator" in eligible
    bundled = [n for n, s in found.skills.items() if s.source == "openclaw-bundled"]
    assert len(bundled) >= 5
    assert isinstance(found.executors[bundled[0]], OpenClawExecutor)
    healthcheck = found.skills["healthcheck"]
    assert (healthcheck.run, healthcheck.folder) == ("./run.sh", shadow)
    assert isinstance(found.executors["healthcheck"], CommandExecutor)
    reported = {u.name: u for u in found.unavailable}
    assert set(reported) == set(theirs) - eligible
    assert any(u.install for u in reported.values()), "no install hint from skills check"

"""eventsrc's gating against the real OpenClaw: the same folders, config and environment
must give the same eligibility and the same missing items for every skill.

``openclaw skills list --json`` is the authority. The skills are OpenClaw's own (bundled,
custodian, plugin) plus generated edge cases in the workspace, each probing one rule:
``skillKey``, ``enabled: false``, ``allowBundled``, ``os`` before ``always``, ``bins``
(an executable file, a folder, a file without the x bit), ``anyBins``, ``env`` from the
process, from ``entries.<key>.env`` and from ``apiKey`` for ``primaryEnv``, ``config``
paths with OpenClaw's defaults, JSON5 and YAML metadata, comma-separated lists.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from eventsrc.node.discovery import DiscoveredSkill, SkillDiscovery, load_skill
from eventsrc.node.gating import parse_openclaw_config
from tests.openclaw_toolchain import OpenClawToolchain

PLATFORM = "linux"

# name -> the front matter lines after ``name``/``description`` (the gating under test).
EDGE_CASES: dict[str, str] = {
    "e-bins-present": 'metadata: {"openclaw": {"requires": {"bins": ["have-a"]}}}',
    "e-bins-missing": 'metadata: {"openclaw": {"requires": {"bins": ["have-a", "nope-x"]}}}',
    "e-bins-csv": 'metadata: {"openclaw": {"requires": {"bins": "have-a, nope-y ,"}}}',
    "e-bins-number": 'metadata: {"openclaw": {"requires": {"bins": [123, "have-b"]}}}',
    "e-bins-folder": 'metadata: {"openclaw": {"requires": {"bins": ["dir-bin"]}}}',
    "e-bins-noexec": 'metadata: {"openclaw": {"requires": {"bins": ["noexec-bin"]}}}',
    "e-anybins-one": 'metadata: {"openclaw": {"requires": {"anyBins": ["nope-z", "have-b"]}}}',
    "e-anybins-none": 'metadata: {"openclaw": {"requires": {"anyBins": ["nope-z", "nope-w"]}}}',
    "e-env-process": 'metadata: {"openclaw": {"requires": {"env": ["SET_VAR"]}}}',
    "e-env-blank": 'metadata: {"openclaw": {"requires": {"env": ["BLANK_VAR", "UNSET_VAR"]}}}',
    "e-env-csv": 'metadata: {"openclaw": {"requires": {"env": "SET_VAR,UNSET_VAR"}}}',
    "e-env-entry": 'metadata: {"openclaw": {"requires": {"env": ["ENTRY_VAR"]}}}',
    "e-env-keyed": (
        'metadata: {"openclaw": {"skillKey": "custom-key", "requires": {"env": ["KEYED_VAR"]}}}'
    ),
    "e-apikey-primary": (
        'metadata: {"openclaw": {"primaryEnv": "PRIMARY_KEY", '
        '"requires": {"env": ["PRIMARY_KEY"]}}}'
    ),
    "e-apikey-not-primary": (
        'metadata: {"openclaw": {"primaryEnv": "OTHER_KEY", "requires": {"env": ["PRIMARY_KEY"]}}}'
    ),
    "e-disabled": 'metadata: {"openclaw": {"requires": {"bins": ["nope-x"]}}}',
    "e-disabled-by-key": 'metadata: {"openclaw": {"skillKey": "disabled-key"}}',
    "e-enabled-name-other-key": 'metadata: {"openclaw": {"skillKey": "fine-key"}}',
    "e-key-with-spaces": 'metadata: {"openclaw": {"skillKey": " spaced "}}',
    "e-config-true": 'metadata: {"openclaw": {"requires": {"config": ["browser.enabled"]}}}',
    "e-config-false": (
        'metadata: {"openclaw": {"requires": {"config": ["browser.evaluateEnabled"]}}}'
    ),
    "e-config-unset": (
        'metadata: {"openclaw": {"requires": {"config": ["channels.discord.token", '
        '"browser.enabled"]}}}'
    ),
    "e-config-blocked": 'metadata: {"openclaw": {"requires": {"config": ["__proto__.x"]}}}',
    "e-os-linux": 'metadata: {"openclaw": {"os": ["linux"]}}',
    "e-os-darwin": 'metadata: {"openclaw": {"os": ["darwin"], "requires": {"bins": ["nope-x"]}}}',
    "e-os-macos": 'metadata: {"openclaw": {"os": "macos"}}',
    "e-os-upper": 'metadata: {"openclaw": {"os": ["Linux"]}}',
    "e-always": (
        'metadata: {"openclaw": {"always": true, "requires": {"bins": ["nope-x"], '
        '"env": ["UNSET_VAR"]}}}'
    ),
    "e-always-wrong-os": (
        'metadata: {"openclaw": {"always": true, "os": ["win32"], "requires": {"bins": ["x1"]}}}'
    ),
    "e-always-string": 'metadata: {"openclaw": {"always": "true", "requires": {"bins": ["n1"]}}}',
    "e-always-yaml-yes": (
        "metadata:\n  openclaw:\n    always: yes\n    requires:\n      bins: [nope-x]"
    ),
    "e-yaml-map": (
        "metadata:\n  openclaw:\n    requires:\n      bins:\n        - have-a\n"
        "      env: SET_VAR, UNSET_VAR"
    ),
    "e-json5": (
        "metadata: \"{openclaw: {requires: {bins: ['have-a', 'nope-x',],},}, // note\\n}\""
    ),
    "e-legacy": 'metadata: {"clawdbot": {"requires": {"bins": ["nope-legacy"]}}}',
    "e-both-blocks": (
        'metadata: {"openclaw": {"requires": {"bins": ["have-a"]}}, '
        '"clawdbot": {"requires": {"bins": ["nope-legacy"]}}}'
    ),
    "e-block-is-list": (
        'metadata: {"openclaw": ["x"], "clawdbot": {"requires": {"bins": ["nope-legacy"]}}}'
    ),
    "e-bad-metadata": 'metadata: "{not json5"',
    "e-requires-list": 'metadata: {"openclaw": {"requires": ["bins"]}}',
    "e-colon-description": 'metadata: {"openclaw": {"requires": {"bins": ["nope-x"]}}}',
}

CONFIG: dict[str, Any] = {
    "browser": {"enabled": True, "evaluateEnabled": False},
    "skills": {
        "allowBundled": ["tmux", "skill-creator", "healthcheck"],
        "entries": {
            "e-env-entry": {"env": {"ENTRY_VAR": "from-entry"}},
            "custom-key": {"env": {"KEYED_VAR": "from-keyed-entry"}},
            "e-env-keyed": {"env": {"KEYED_VAR": "under-the-name: ignored"}},
            "e-apikey-primary": {"apiKey": "sk-primary"},
            "e-apikey-not-primary": {"apiKey": "sk-other"},
            "e-disabled": {"enabled": False},
            "disabled-key": {"enabled": False},
            "e-enabled-name-other-key": {"enabled": False},
            "spaced": {"enabled": False},
        },
    },
}


def write_edge_cases(skills_dir: Path) -> None:
    for name, gating in EDGE_CASES.items():
        description = f"Edge case {name}"
        if name == "e-colon-description":
            description = "Use when: a colon is in the text"
        folder = skills_dir / name
        folder.mkdir(parents=True)
        (folder / "SKILL.md").write_text(
            f"---\nname: {name}\ndescription: {description}\n{gating}\n---\n# {name}\n"
        )


def make_path(tmp_path: Path) -> Path:
    """A PATH folder: two executables, a folder, and a file without the x bit."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name in ("have-a", "have-b"):
        (bindir / name).write_text("#!/bin/sh\necho hi\n")
        (bindir / name).chmod(0o755)
    (bindir / "dir-bin").mkdir()
    (bindir / "noexec-bin").write_text("#!/bin/sh\n")
    (bindir / "noexec-bin").chmod(0o644)
    return bindir


def ours_for(
    openclaw: OpenClawToolchain, home: Path, env: dict[str, str]
) -> dict[str, DiscoveredSkill]:
    """eventsrc's view of the same skills: the workspace scan plus OpenClaw's own folders."""
    state = home / ".openclaw"
    config_path = state / "openclaw.json"
    config = parse_openclaw_config(config_path.read_text()) if config_path.exists() else None
    skills = dict(
        SkillDiscovery(env=env, workspace=state / "workspace", home=home, platform=PLATFORM)
        .scan()
        .skills
    )
    shipped = [
        ("openclaw-bundled", openclaw.package_dir / "skills"),
        ("openclaw-custodian", openclaw.package_dir / "custodian-skills"),
        ("openclaw-extra", state / "plugin-skills"),
    ]
    for source, root in shipped:
        for folder in sorted(p for p in root.iterdir() if (p / "SKILL.md").is_file()):
            skill = load_skill(folder, source=source, env=env, platform=PLATFORM, config=config)
            skills.setdefault(skill.name, skill)
    return skills


def verdict_of_ours(skill: DiscoveredSkill) -> dict[str, Any]:
    missing = skill.missing
    return {
        "eligible": skill.eligible,
        "disabled": bool(missing and missing.disabled),
        "blockedByAllowlist": bool(missing and missing.blocked_by_allowlist),
        "bins": list(missing.missing_bins) if missing else [],
        "anyBins": list(missing.missing_any_bins) if missing else [],
        "env": list(missing.missing_env) if missing else [],
        "config": list(missing.missing_config) if missing else [],
        "os": list(missing.unsupported_os) if missing else [],
    }


def verdict_of_openclaw(skill: dict[str, Any]) -> dict[str, Any]:
    return {
        "eligible": skill["eligible"],
        "disabled": skill["disabled"],
        "blockedByAllowlist": skill["blockedByAllowlist"],
        **{key: skill["missing"][key] for key in ("bins", "anyBins", "env", "config", "os")},
    }


@pytest.mark.parametrize("with_config", [False, True], ids=["no-config", "config"])
def test_eligibility_and_missing_items_match_openclaw_for_every_skill(
    openclaw: OpenClawToolchain, tmp_path: Path, with_config: bool
) -> None:
    home = tmp_path / "home"
    workspace_skills = home / ".openclaw" / "workspace" / "skills"
    write_edge_cases(workspace_skills)
    if with_config:
        (home / ".openclaw" / "openclaw.json").write_text(json.dumps(CONFIG))
    bindir = make_path(tmp_path)
    env = openclaw.env(home, SET_VAR="set", BLANK_VAR="  ")
    env["PATH"] = f"{openclaw.bin_dir}:{bindir}:/usr/bin:/bin"
    done = openclaw.run(["skills", "list", "--json"], home=home, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    theirs = {skill["name"]: skill for skill in json.loads(done.stdout)["skills"]}
    ours = ours_for(openclaw, home, env)

    assert set(EDGE_CASES) <= set(theirs), "OpenClaw did not list every edge case"
    assert sum(s["source"] == "openclaw-bundled" for s in theirs.values()) >= 50
    assert sorted(ours) == sorted(theirs)
    differences = {
        name: {"openclaw": verdict_of_openclaw(skill), "eventsrc": verdict_of_ours(ours[name])}
        for name, skill in sorted(theirs.items())
        if verdict_of_openclaw(skill) != verdict_of_ours(ours[name])
    }
    assert not differences, json.dumps(differences, indent=1)
    # The cases do probe both outcomes, not only one.
    eligible = {name for name in EDGE_CASES if theirs[name]["eligible"]}
    assert 10 <= len(eligible) <= len(EDGE_CASES) - 10

"""Scanning skill folders: precedence, our metadata keys, broken files, rescans."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eventsrc.errors import NotFoundError
from eventsrc.events import SkillCategory
from eventsrc.node.builtins import BUILTIN_SKILLS, EXECUTABLE_BUILTINS, builtin_skill
from eventsrc.node.discovery import SkillDiscovery, diff, read_openclaw_config
from tests.node.helpers import python_script, write_executable, write_openclaw_config, write_skill


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    path = tmp_path / "ws"
    path.mkdir()
    return path


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


def discovery(workspace: Path, home: Path, *extra: Path, **env: str) -> SkillDiscovery:
    return SkillDiscovery(
        env={"PATH": "", **env},
        workspace=workspace,
        home=home,
        extra_dirs=extra,
        platform="linux",
    )


def test_reads_name_description_and_our_keys(workspace: Path, home: Path) -> None:
    write_skill(
        workspace / "skills",
        "csv-tool",
        """
name: csv
description: Summarise CSV files
metadata:
  eventsrc:
    run: ./run.sh --fast
    category: data_processing
    version: 2.1
    dependencies: [python]
    tags: [data, csv]
    resources: {memory_mb: 256, cpu: high}
    timeout_s: 30
""",
    )
    result = discovery(workspace, home).scan()
    assert result.errors == []
    skill = result.skills["csv"]
    assert skill.metadata.description == "Summarise CSV files"
    assert skill.metadata.category is SkillCategory.DATA_PROCESSING
    assert skill.metadata.version == "2.1"
    assert skill.metadata.dependencies == ("python",)
    assert skill.metadata.tags == ("data", "csv")
    assert skill.metadata.resources == {"memory_mb": 256, "cpu": "high"}
    assert (skill.run, skill.timeout_s) == ("./run.sh --fast", 30.0)
    assert skill.folder == workspace / "skills" / "csv-tool"
    assert skill.source == "workspace"
    assert skill.eligible and skill.missing is None and not skill.builtin


def test_without_our_keys_the_defaults_apply(workspace: Path, home: Path) -> None:
    write_skill(workspace / "skills", "plain", "name: plain\ndescription: Just prose")
    skill = discovery(workspace, home).scan().skills["plain"]
    assert skill.metadata.category is SkillCategory.CUSTOM
    assert (skill.run, skill.timeout_s) == (None, None)


def test_folder_precedence_highest_first(workspace: Path, home: Path, tmp_path: Path) -> None:
    extra_1, extra_2 = tmp_path / "extra1", tmp_path / "extra2"
    places = {
        "workspace": workspace / "skills",
        "agents-project": workspace / ".agents" / "skills",
        "agents-personal": home / ".agents" / "skills",
        "managed": home / ".openclaw" / "skills",
    }
    for rank, (source, root) in enumerate(places.items()):
        # Each folder holds the shared name plus one only it has.
        write_skill(root, "x", f"name: shared\ndescription: from {source}")
        write_skill(root, "y", f"name: only-{rank}\ndescription: from {source}")
    write_skill(extra_1, "x", "name: shared\ndescription: from extra1")
    write_skill(extra_1, "z", "name: extra-only\ndescription: from extra1")
    write_skill(extra_2, "z", "name: extra-only\ndescription: from extra2")

    result = discovery(workspace, home, extra_1, extra_2).scan()
    assert result.errors == []
    assert result.skills["shared"].metadata.description == "from workspace"
    assert result.skills["shared"].source == "workspace"
    assert [result.skills[f"only-{i}"].source for i in range(4)] == list(places)
    assert result.skills["extra-only"].metadata.description == "from extra1"


def test_workspace_beats_an_extra_dir(workspace: Path, home: Path, tmp_path: Path) -> None:
    write_skill(tmp_path / "extra", "w", "name: weather\ndescription: extra")
    write_skill(workspace / "skills", "w", "name: weather\ndescription: workspace")
    skill = discovery(workspace, home, tmp_path / "extra").scan().skills["weather"]
    assert (skill.metadata.description, skill.source) == ("workspace", "workspace")


def test_a_higher_ineligible_skill_still_hides_a_lower_one(
    workspace: Path, home: Path, tmp_path: Path
) -> None:
    gated = 'name: g\ndescription: d\nmetadata: {"openclaw": {"requires": {"env": ["NOPE"]}}}'
    write_skill(workspace / "skills", "g", gated)
    write_skill(tmp_path / "extra", "g", "name: g\ndescription: d")
    skill = discovery(workspace, home, tmp_path / "extra").scan().skills["g"]
    assert not skill.eligible and skill.source == "workspace"


def test_skill_dir_itself_and_grouped_skills(workspace: Path, home: Path, tmp_path: Path) -> None:
    single = write_skill(tmp_path, "one-skill", "name: single\ndescription: d")
    write_skill(tmp_path / "pack" / "group", "inner", "name: grouped\ndescription: d")
    write_skill(tmp_path / "pack" / ".hidden", "x", "name: hidden\ndescription: d")
    write_skill(tmp_path / "pack" / "node_modules", "x", "name: npm\ndescription: d")
    skills = discovery(workspace, home, single, tmp_path / "pack").scan().skills
    assert set(skills) == {"single", "grouped"}


def test_broken_skill_files_are_reported_with_their_path_and_skipped(
    workspace: Path, home: Path
) -> None:
    root = workspace / "skills"
    write_skill(root, "good", "name: good\ndescription: fine")
    bad_yaml = write_skill(root, "bad-yaml", "name: [oops\ndescription: x")
    no_name = write_skill(root, "no-name", "description: nameless")
    bad_name = write_skill(root, "bad-name", "name: has.dot\ndescription: x")
    bad_category = write_skill(
        root, "bad-category", "name: c\nmetadata:\n  eventsrc:\n    category: cooking"
    )
    bad_run = write_skill(root, "bad-run", 'name: r\nmetadata:\n  eventsrc:\n    run: "\'open"')
    list_category = write_skill(
        root, "list-category", "name: l\nmetadata:\n  eventsrc:\n    category: [a]"
    )
    bad_timeout = write_skill(
        root, "bad-timeout", "name: t\nmetadata:\n  eventsrc:\n    timeout_s: soon"
    )
    (root / "no-front").mkdir()
    (root / "no-front" / "SKILL.md").write_text("# just text\n", encoding="utf-8")

    result = discovery(workspace, home).scan()
    assert set(result.skills) == {"good"}
    assert len(result.errors) == 8
    by_folder = {Path(line.split(": ", 1)[0]).parent: line for line in result.errors}
    assert "not valid YAML" in by_folder[bad_yaml]
    assert "no 'name'" in by_folder[no_name]
    assert "'.'" in by_folder[bad_name]
    assert "cooking" in by_folder[bad_category]
    assert "run" in by_folder[bad_run]
    assert "category" in by_folder[list_category]
    assert "timeout_s" in by_folder[bad_timeout]
    assert "---" in by_folder[root / "no-front"]
    assert all("\n" not in line for line in result.errors)


def test_same_name_twice_in_one_folder_is_reported(workspace: Path, home: Path) -> None:
    write_skill(workspace / "skills", "a", "name: twin\ndescription: first")
    write_skill(workspace / "skills", "b", "name: twin\ndescription: second")
    result = discovery(workspace, home).scan()
    assert result.skills["twin"].metadata.description == "first"
    assert len(result.errors) == 1 and "already used" in result.errors[0]


def test_requires_config_reads_openclaw_json(workspace: Path, home: Path) -> None:
    front = 'name: slack\ndescription: d\nmetadata: {"openclaw":{"requires":{"config":["a.b"]}}}'
    write_skill(workspace / "skills", "slack", front)
    found = discovery(workspace, home)
    skill = found.scan().skills["slack"]
    assert not skill.eligible
    assert skill.missing is not None and skill.missing.missing_config == ("a.b",)

    write_openclaw_config(home, {"a": {"b": True}})
    assert found.scan().skills["slack"].eligible


def test_openclaw_state_dir_and_config_path_follow_the_environment(
    workspace: Path, home: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    write_skill(state / "skills", "m", "name: managed-here\ndescription: d")
    config = tmp_path / "elsewhere.json"
    config.write_text(json.dumps({"flag": 1}), encoding="utf-8")
    found = discovery(
        workspace, home, OPENCLAW_STATE_DIR=str(state), OPENCLAW_CONFIG_PATH=str(config)
    )
    assert found.config_path == config
    assert found.scan().skills["managed-here"].source == "managed"


def test_openclaw_json_is_read_as_json5(tmp_path: Path) -> None:
    path = tmp_path / "openclaw.json"
    path.write_text(
        "// OpenClaw config\n{\n"
        "  /* block */ skills: { entries: { 'x': { enabled: false, }, }, },\n"
        '  url: "http://example.com/a//b", // trailing\n'
        '  quote: "say \\"hi\\" // not a comment",\n}',
        encoding="utf-8",
    )
    config, error = read_openclaw_config(path)
    assert error is None
    assert config == {
        "skills": {"entries": {"x": {"enabled": False}}},
        "url": "http://example.com/a//b",
        "quote": 'say "hi" // not a comment',
    }


def test_unreadable_openclaw_json_is_reported(workspace: Path, home: Path) -> None:
    path = home / ".openclaw" / "openclaw.json"
    path.parent.mkdir(parents=True)
    path.write_text("[1, 2", encoding="utf-8")
    result = discovery(workspace, home).scan()
    assert len(result.errors) == 1 and str(path) in result.errors[0]


def test_unavailable_lists_what_ineligible_skills_lack(workspace: Path, home: Path) -> None:
    front = (
        'name: ff\ndescription: video\nmetadata: {"openclaw": {"requires": {"bins": ["ffmpeg-x"]},'
        ' "install": [{"kind": "brew", "formula": "ffmpeg"}]}}'
    )
    write_skill(workspace / "skills", "ff", front)
    write_skill(workspace / "skills", "ok", "name: ok\ndescription: d")
    result = discovery(workspace, home).scan()
    assert set(result.eligible()) == {"ok"}
    (missing,) = result.unavailable()
    assert missing.name == "ff" and missing.missing_bins == ("ffmpeg-x",)
    assert missing.install == ({"kind": "brew", "formula": "ffmpeg"},)


def test_diff_between_scans(workspace: Path, home: Path, tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    root = workspace / "skills"
    write_skill(root, "stays", "name: stays\ndescription: d")
    write_skill(root, "goes", "name: goes\ndescription: d")
    gated = 'name: tool\ndescription: d\nmetadata: {"openclaw": {"requires": {"bins": ["mytool"]}}}'
    write_skill(root, "tool", gated)
    found = SkillDiscovery(env={"PATH": str(bindir)}, workspace=workspace, home=home)
    first = found.scan()
    assert set(first.eligible()) == {"stays", "goes"}

    (root / "goes" / "SKILL.md").unlink()
    write_skill(root, "new", "name: new\ndescription: d")
    write_executable(bindir, "mytool", python_script("pass\n"))
    second = found.scan()
    assert diff(first, second) == (["new", "tool"], ["goes"])
    assert diff(second.skills, second.skills) == ([], [])

    (bindir / "mytool").unlink()
    assert diff(second, found.scan()) == ([], ["tool"])


def test_builtins_are_the_seeds_six() -> None:
    assert set(BUILTIN_SKILLS) == {"python", "search", "weather", "data-analysis", "ml", "media"}
    categories = sorted(m.category.value for m in BUILTIN_SKILLS.values())
    assert categories == sorted(
        ["system", "network", "network", "data_processing", "machine_learning", "media_processing"]
    )
    assert BUILTIN_SKILLS["python"].description == "Python code execution and scripts"
    assert BUILTIN_SKILLS["weather"].dependencies == ("search",)
    assert BUILTIN_SKILLS["data-analysis"].dependencies == ("python",)
    assert set(BUILTIN_SKILLS["ml"].dependencies) == {"python", "data-analysis"}
    numeric = [
        v for m in BUILTIN_SKILLS.values() for v in m.resources.values() if not isinstance(v, str)
    ]
    assert numeric == []
    assert set(EXECUTABLE_BUILTINS) == {"python"}


def test_builtin_skill() -> None:
    python = builtin_skill("python")
    assert python.builtin and python.eligible and python.folder is None
    with pytest.raises(NotFoundError, match="built-ins are"):
        builtin_skill("cooking")


def test_a_skills_cluster_wide_limits_are_read_and_a_bad_one_is_reported(
    workspace: Path, home: Path
) -> None:
    root = workspace / "skills"
    ours = "name: {0}\nmetadata:\n  eventsrc:\n    max_concurrent: {1}\n    rate: {2}"
    write_skill(root, "limited", ours.format("limited", 2, "30/m"))
    bad_rate = write_skill(root, "bad-rate", ours.format("bad-rate", 2, "lots"))
    bad_max = write_skill(root, "bad-max", ours.format("bad-max", 0, "1/s"))
    result = discovery(workspace, home).scan()
    meta = result.skills["limited"].metadata
    assert (meta.max_concurrent, meta.rate) == (2, "30/m")
    assert set(result.skills) == {"limited"}
    by_folder = {Path(line.split(": ", 1)[0]).parent: line for line in result.errors}
    assert "rate 'lots' is not COUNT/UNIT" in by_folder[bad_rate]
    assert "max_concurrent" in by_folder[bad_max]

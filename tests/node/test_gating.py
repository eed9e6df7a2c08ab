"""SKILL.md front matter and OpenClaw's load-time gating rules."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from eventsrc.events import UnavailableSkill
from eventsrc.node.gating import (
    Gate,
    SkillFileError,
    check,
    config_truthy,
    openclaw_block,
    parse_front_matter,
    parse_metadata,
)
from tests.node.helpers import python_script, write_executable

Config = Mapping[str, Any] | None


@pytest.fixture
def bindir(tmp_path: Path) -> Path:
    """A PATH folder holding the executables ``have-a`` and ``have-b``."""
    folder = tmp_path / "bin"
    for name in ("have-a", "have-b"):
        write_executable(folder, name, python_script("print('hi')\n"))
    return folder


def gate_of(front: str) -> Gate:
    return Gate.from_block(openclaw_block(parse_metadata(parse_front_matter(front)["metadata"])))


def test_metadata_as_a_yaml_map() -> None:
    text = (
        "---\nname: uv-tool\ndescription: Runs uv\nmetadata:\n  openclaw:\n"
        "    requires:\n      bins: [uv]\n      anyBins: curl, wget\n---\n# body\n"
    )
    front = parse_front_matter(text)
    assert (front["name"], front["description"]) == ("uv-tool", "Runs uv")
    gate = gate_of(text)
    assert gate.bins == ("uv",)
    assert gate.any_bins == ("curl", "wget")


def test_metadata_as_a_one_line_json_string() -> None:
    text = (
        "---\nname: nano\ndescription: Images\n"
        'metadata: \'{"openclaw":{"requires":{"bins":["uv"],"env":["GEMINI_API_KEY"]},'
        '"primaryEnv":"GEMINI_API_KEY"}}\'\n---\n'
    )
    front = parse_front_matter(text)
    assert isinstance(front["metadata"], str)
    gate = gate_of(text)
    assert gate.bins == ("uv",)
    assert gate.env == ("GEMINI_API_KEY",)


def test_metadata_in_openclaw_docs_style_with_trailing_commas() -> None:
    text = (
        '---\nname: nano\ndescription: x\nmetadata:\n  {\n    "openclaw":\n      {\n'
        '        "requires": { "bins": ["uv"], "config": ["browser.enabled"] },\n'
        '        "primaryEnv": "GEMINI_API_KEY",\n      },\n  }\n---\n'
    )
    assert gate_of(text).config == ("browser.enabled",)


def test_legacy_clawdbot_block_only_when_openclaw_is_absent() -> None:
    legacy = '---\nmetadata: {"clawdbot": {"requires": {"bins": ["jq"]}}}\n---\n'
    assert gate_of(legacy).bins == ("jq",)
    both = (
        '---\nmetadata: {"openclaw": {"requires": {"bins": ["uv"]}}, '
        '"clawdbot": {"requires": {"bins": ["jq"]}}}\n---\n'
    )
    assert gate_of(both).bins == ("uv",)
    empty_openclaw = '---\nmetadata: {"openclaw": {}, "clawdbot": {"os": ["darwin"]}}\n---\n'
    assert gate_of(empty_openclaw) == Gate()


def test_unquoted_colon_in_a_value_is_read_like_openclaw_does() -> None:
    front = parse_front_matter("---\nname: notes\ndescription: Use when: taking notes\n---\n")
    assert front == {"name": "notes", "description": "Use when: taking notes"}


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("# no front matter\n", "must start with a '---' line"),
        ("---\nname: x\n", "not closed"),
        ("---\nname: [unclosed\n---\n", "not valid YAML"),
        ("---\n- a\n- b\n---\n", "YAML mapping"),
    ],
)
def test_broken_front_matter_says_why(text: str, needle: str) -> None:
    with pytest.raises(SkillFileError, match=needle):
        parse_front_matter(text)


def test_bad_metadata_string_is_an_error() -> None:
    with pytest.raises(SkillFileError, match="metadata"):
        parse_metadata("[1, 2]")


def unavailable(
    gate: Gate, *, env: dict[str, str], platform: str = "linux", config: Config = None
) -> UnavailableSkill | None:
    return check(gate, name="s", env=env, platform=platform, config=config)


def test_bins_all_must_be_on_path(bindir: Path) -> None:
    env = {"PATH": str(bindir)}
    assert unavailable(Gate(bins=("have-a", "have-b")), env=env) is None
    missing = unavailable(Gate(bins=("have-a", "no-such-bin")), env=env)
    assert missing is not None and missing.missing_bins == ("no-such-bin",)
    # The PATH given is the one that counts, not the test process's.
    assert unavailable(Gate(bins=("have-a",)), env={"PATH": ""}) is not None


def test_any_bins_needs_one(bindir: Path) -> None:
    env = {"PATH": str(bindir)}
    assert unavailable(Gate(any_bins=("nope-1", "have-b")), env=env) is None
    missing = unavailable(Gate(any_bins=("nope-1", "nope-2")), env=env)
    assert missing is not None and missing.missing_any_bins == ("nope-1", "nope-2")


def test_env_must_be_set_and_non_empty() -> None:
    gate = Gate(env=("API_KEY", "OTHER"))
    assert unavailable(gate, env={"API_KEY": "k", "OTHER": "o"}) is None
    missing = unavailable(gate, env={"API_KEY": "", "PATH": ""})
    assert missing is not None and missing.missing_env == ("API_KEY", "OTHER")


def test_config_paths_must_be_truthy_and_are_unmet_without_the_file() -> None:
    gate = Gate(config=("channels.slack.enabled",))
    missing = unavailable(gate, env={}, config=None)
    assert missing is not None and missing.missing_config == ("channels.slack.enabled",)
    # Without a file OpenClaw's defaults still apply.
    assert unavailable(Gate(config=("browser.enabled",)), env={}, config=None) is None
    assert unavailable(gate, env={}, config={"channels": {"slack": {"enabled": True}}}) is None
    off = unavailable(gate, env={}, config={"channels": {"slack": {"enabled": False}}})
    assert off is not None and off.missing_config == ("channels.slack.enabled",)


def test_config_truthiness_follows_openclaw() -> None:
    config = {"a": {"zero": 0, "one": 1, "blank": "  ", "text": "x", "empty": [], "none": None}}
    assert [config_truthy(config, f"a.{k}") for k in config["a"]] == [
        False,
        True,
        False,
        True,
        True,
        False,
    ]
    assert not config_truthy(config, "a.missing")
    # OpenClaw's defaults for paths the file does not set, or when there is no file.
    assert config_truthy({}, "browser.enabled")
    assert config_truthy(None, "browser.enabled")
    assert not config_truthy({"browser": {"enabled": False}}, "browser.enabled")
    assert not config_truthy({"__proto__": {"x": 1}}, "__proto__.x")
    assert config_truthy({"a": [0, {"b": "y"}]}, "a.1.b")


def test_skill_disabled_in_openclaw_json_is_reported_as_disabled() -> None:
    config = {"skills": {"entries": {"s": {"enabled": False}}}}
    missing = unavailable(Gate(), env={}, config=config)
    assert missing is not None and missing.disabled and missing.missing_config == ()
    assert missing.lacks() == ("disabled",)
    keyed = unavailable(Gate(skill_key="key-of-s"), env={}, config=config)
    assert keyed is None


def test_env_from_the_skill_entry_or_its_api_key_for_primary_env() -> None:
    gate = Gate(env=("TOKEN", "OTHER"), skill_key="k", primary_env="TOKEN")
    entry = {"env": {"OTHER": "o"}, "apiKey": "secret"}
    assert unavailable(gate, env={}, config={"skills": {"entries": {"k": entry}}}) is None
    blank = {"env": {"OTHER": "  "}, "apiKey": {"source": "env", "id": "X"}}
    missing = unavailable(gate, env={"OTHER": " "}, config={"skills": {"entries": {"k": blank}}})
    assert missing is not None and missing.missing_env == ("OTHER",)


def test_allow_bundled_blocks_only_bundled_skills_outside_it() -> None:
    config = {"skills": {"allowBundled": ["other"]}}
    blocked = check(Gate(), name="s", env={}, platform="linux", config=config, bundled=True)
    assert blocked is not None and blocked.blocked_by_allowlist
    assert check(Gate(), name="s", env={}, platform="linux", config=config) is None
    by_key = check(
        Gate(skill_key="other"), name="s", env={}, platform="linux", config=config, bundled=True
    )
    assert by_key is None


def test_yaml_core_schema_keeps_yes_a_string() -> None:
    gate = gate_of("---\nmetadata:\n  openclaw:\n    always: yes\n    os: [Linux]\n---\n")
    assert gate.always is False and gate.os == ("Linux",)


@pytest.mark.parametrize(
    ("skill_os", "platform", "ok"),
    [
        (["darwin"], "darwin", True),
        (["macos"], "darwin", True),
        (["macos"], "linux", False),
        (["mac"], "darwin", False),
        ([" Linux "], "linux", True),
        (["linux", "win32"], "linux", True),
        (["win32"], "linux", False),
        ([], "linux", True),
    ],
)
def test_os(skill_os: list[str], platform: str, ok: bool) -> None:
    gate = gate_of(f"---\nmetadata:\n  openclaw:\n    os: {skill_os}\n---\n")
    missing = unavailable(gate, env={}, platform=platform)
    assert (missing is None) is ok
    if not ok:
        assert missing is not None
        assert missing.unsupported_os == tuple(skill_os)


def test_always_skips_requirements_but_not_os() -> None:
    needy = Gate(bins=("no-such-bin",), env=("NOPE",), config=("x.y",), always=True)
    assert unavailable(needy, env={}, config=None) is None
    wrong_os = Gate(os=("darwin",), bins=("no-such-bin",), always=True)
    missing = unavailable(wrong_os, env={}, platform="linux")
    assert missing is not None
    assert missing.unsupported_os == ("darwin",) and missing.missing_bins == ()


def test_missing_carries_install_hints() -> None:
    gate = gate_of(
        '---\nmetadata: {"openclaw": {"requires": {"bins": ["no-such-bin"]}, "install": '
        '[{"id": "brew", "kind": "brew", "formula": "jq", "bins": ["jq", "jq2"]}, "junk"]}}\n---\n'
    )
    missing = check(gate, name="jqskill", description="d", env={}, platform="linux", config=None)
    assert missing is not None
    assert missing.name == "jqskill" and missing.description == "d"
    assert missing.install == ({"id": "brew", "kind": "brew", "formula": "jq", "bins": "jq,jq2"},)

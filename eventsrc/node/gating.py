"""OpenClaw's SKILL.md front matter and skill gating, as plain functions.

This follows OpenClaw's own rules (its ``src/skills/loading/config.ts``,
``src/skills/loading/frontmatter.ts``, ``src/shared/config-eval.ts`` and
``src/shared/requirements.ts``), as ``openclaw skills list`` reports them:

- the front matter is the YAML block (YAML 1.2 core schema: ``yes`` is a string)
  between the first two ``---`` lines; ``metadata`` is a YAML map or a JSON5 string;
  the gating block is ``metadata.openclaw``, or the legacy ``metadata.clawdbot`` only
  when ``openclaw`` is absent; lists may be comma-separated strings;
- ``metadata.openclaw.skillKey`` (default: the name) is the skill's key in
  ``skills.entries`` of ``openclaw.json``; ``enabled: false`` there disables it;
- ``skills.allowBundled``, when a non-empty list, blocks every bundled skill whose key
  or name is not in it;
- ``os`` is checked first and applies even with ``always: true``; ``always: true``
  then skips the ``requires`` checks; ``requires.bins`` must all be executable files
  on PATH, ``requires.anyBins`` at least one; ``requires.env`` each set (non-blank) in
  the process, in ``skills.entries.<key>.env``, or — for ``primaryEnv`` — by
  ``skills.entries.<key>.apiKey``; ``requires.config`` paths truthy in
  ``openclaw.json``, with OpenClaw's defaults for paths it leaves unset.

Nothing here reads files or the process environment: callers pass the environment
and the parsed ``openclaw.json``; the one lookup is for executables on the given PATH.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import json5
import yaml

from eventsrc.errors import EventsrcError
from eventsrc.events import UnavailableSkill

# OpenClaw treats these config paths as true when the config file does not set them
# (DEFAULT_CONFIG_VALUES in src/skills/loading/config.ts).
CONFIG_DEFAULTS = {"browser.enabled": True, "browser.evaluateEnabled": True}

# The sources of the skills OpenClaw ships; only these are subject to allowBundled.
BUNDLED_SOURCES = frozenset({"openclaw-bundled", "openclaw-custodian"})

# Config path segments OpenClaw refuses to follow (isBlockedObjectKey).
_BLOCKED_KEYS = frozenset({"__proto__", "prototype", "constructor"})
_SECRET_SOURCES = frozenset({"env", "file", "exec", "store"})
_ENV_TEMPLATE = re.compile(r"^\$(?:\{[A-Z][A-Z0-9_]{0,127}\}|[A-Z][A-Z0-9_]{0,127})$")

_END_LINE = re.compile(r"^---[ \t]*$", re.MULTILINE)
_LINE_KEY = re.compile(r"^([\w-]+):[ \t]*(.*)$")
_MISSING = object()


class SkillFileError(EventsrcError):
    """A SKILL.md cannot be used; the message says what is wrong with it."""


class _CoreLoader(yaml.SafeLoader):
    """PyYAML with YAML 1.2's core schema, as OpenClaw's ``yaml`` reads front matter.

    YAML 1.1 (PyYAML's default) reads ``yes``/``on`` as booleans, ``1:30`` as a
    number and dates as dates; the core schema keeps them strings.
    """


_CoreLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag in {"tag:yaml.org,2002:merge"}]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
for _tag, _pattern, _first in (
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", "~nN"),
    ("tag:yaml.org,2002:int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    (
        "tag:yaml.org,2002:float",
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        "-+0123456789.",
    ),
):
    _CoreLoader.add_implicit_resolver(_tag, re.compile(_pattern), list(_first))
_CoreLoader.add_implicit_resolver("tag:yaml.org,2002:null", re.compile(r"^$"), [""])


def _core_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    text = str(loader.construct_scalar(node))
    if text.startswith("0o"):
        return int(text[2:], 8)
    return int(text, 0) if text.startswith("0x") else int(text)


_CoreLoader.add_constructor("tag:yaml.org,2002:int", _core_int)


def parse_front_matter(text: str) -> dict[str, Any]:
    """The front matter of a SKILL.md as a dict.

    Raises SkillFileError when there is none or it is not a YAML mapping. Like
    OpenClaw, a block that is not valid YAML only because of an unquoted colon in a
    value (``description: Use when: ...``) is read line by line instead.
    """
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    first, _, rest = text.partition("\n")
    if first.rstrip() != "---":
        raise SkillFileError("no YAML front matter: the file must start with a '---' line")
    end = _END_LINE.search(rest)
    if end is None:
        raise SkillFileError("the front matter is not closed by a '---' line")
    block = rest[: end.start()]
    try:
        loaded = yaml.load(block, Loader=_CoreLoader)
    except yaml.YAMLError as err:
        fallback = _line_front_matter(block)
        if not _plausible_name(fallback.get("name")):
            raise SkillFileError(f"the front matter is not valid YAML: {_one_line(err)}") from err
        return dict(fallback)
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise SkillFileError("the front matter must be a YAML mapping of keys to values")
    return {str(key): value for key, value in loaded.items()}


def parse_metadata(raw: object) -> dict[str, Any]:
    """The ``metadata`` value as a dict; it may be a YAML map or a JSON5 string.

    Raises SkillFileError when it is neither (OpenClaw then loads the skill ungated).
    """
    if raw is None:
        return {}
    if isinstance(raw, str):
        try:
            raw = json5.loads(raw)
        except ValueError as err:
            raise SkillFileError(f"metadata is neither a map nor JSON5: {_one_line(err)}") from err
    if not isinstance(raw, dict):
        raise SkillFileError("metadata must be a map or a one-line JSON object")
    return {str(key): value for key, value in raw.items()}


def openclaw_block(metadata: Mapping[str, Any]) -> Mapping[str, Any]:
    """``metadata.openclaw``, else the legacy ``metadata.clawdbot``, else empty.

    As in OpenClaw, any object wins, a list too (which then gates nothing).
    """
    for key in ("openclaw", "clawdbot"):
        block = metadata.get(key)
        if isinstance(block, dict):
            return block
        if isinstance(block, list) and block:
            return {}
    return {}


@dataclass(frozen=True)
class Gate:
    """What a skill needs before OpenClaw (and so this node) will load it."""

    os: tuple[str, ...] = ()
    bins: tuple[str, ...] = ()
    any_bins: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    config: tuple[str, ...] = ()
    always: bool = False
    skill_key: str | None = None
    primary_env: str | None = None
    install: tuple[dict[str, str], ...] = ()

    @classmethod
    def from_block(cls, block: Mapping[str, Any]) -> Gate:
        """Read an ``openclaw`` block leniently, as OpenClaw does (bad values are ignored)."""
        requires = block.get("requires")
        req: Mapping[str, Any] = requires if isinstance(requires, dict) else {}
        key = block.get("skillKey")
        primary = block.get("primaryEnv")
        return cls(
            os=string_list(block.get("os")),
            bins=string_list(req.get("bins")),
            any_bins=string_list(req.get("anyBins")),
            env=string_list(req.get("env")),
            config=string_list(req.get("config")),
            always=block.get("always") is True,
            # OpenClaw keeps a key's spaces: " x " is not the entry "x".
            skill_key=key if isinstance(key, str) and key else None,
            primary_env=primary if isinstance(primary, str) else None,
            install=install_hints(block.get("install")),
        )


def check(
    gate: Gate,
    *,
    name: str,
    description: str = "",
    env: Mapping[str, str],
    platform: str,
    config: Mapping[str, Any] | None,
    bundled: bool = False,
) -> UnavailableSkill | None:
    """None when the skill may run here, else what it lacks.

    ``config`` is the parsed ``openclaw.json`` (None when absent: then only
    OpenClaw's defaults make a ``requires.config`` path true). ``bundled`` says the
    skill ships with OpenClaw (``skills.allowBundled`` applies). Like ``openclaw skills
    list``, what is missing is reported even for a disabled or blocked skill.
    """
    key = gate.skill_key or name
    entry = skill_entry(config, key)
    disabled = entry.get("enabled") is False
    blocked = bundled and not bundled_allowed(config, key=key, name=name)
    os_ok = not gate.os or normalize_os(platform) in {normalize_os(o) for o in gate.os}
    bins: tuple[str, ...] = ()
    any_bins: tuple[str, ...] = ()
    envs: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    if not gate.always:
        path = env.get("PATH", "")
        bins = tuple(b for b in gate.bins if not has_binary(b, path))
        if gate.any_bins and not any(has_binary(b, path) for b in gate.any_bins):
            any_bins = gate.any_bins
        envs = tuple(e for e in gate.env if not env_satisfied(e, env, entry, gate.primary_env))
        paths = tuple(p for p in gate.config if not config_truthy(config, p))
    if os_ok and not (disabled or blocked or bins or any_bins or envs or paths):
        return None
    return UnavailableSkill(
        name=name,
        description=description,
        missing_bins=bins,
        missing_any_bins=any_bins,
        missing_env=envs,
        missing_config=paths,
        unsupported_os=() if os_ok else gate.os,
        disabled=disabled,
        blocked_by_allowlist=blocked,
        install=gate.install,
    )


def skill_entry(config: Mapping[str, Any] | None, key: str) -> Mapping[str, Any]:
    """``skills.entries.<key>`` of ``openclaw.json``, empty when unset or not a map."""
    skills = (config or {}).get("skills")
    entries = skills.get("entries") if isinstance(skills, dict) else None
    entry = entries.get(key) if isinstance(entries, dict) else None
    return entry if isinstance(entry, dict) else {}


def bundled_allowed(config: Mapping[str, Any] | None, *, key: str, name: str) -> bool:
    """Whether ``skills.allowBundled`` (when a non-empty list) lets a bundled skill load."""
    skills = (config or {}).get("skills")
    allow = skills.get("allowBundled") if isinstance(skills, dict) else None
    if not isinstance(allow, list):
        return True
    allowed = {s for s in (_js_string(v).strip() for v in allow) if s}
    return not allowed or key in allowed or name in allowed


def env_satisfied(
    name: str, env: Mapping[str, str], entry: Mapping[str, Any], primary_env: str | None
) -> bool:
    """A ``requires.env`` variable set by the process, the skill's entry, or its apiKey."""
    if env.get(name, "").strip():
        return True
    entry_env = entry.get("env")
    value = entry_env.get(name) if isinstance(entry_env, dict) else None
    if isinstance(value, str) and value.strip():
        return True
    return primary_env == name and _configured_secret(entry.get("apiKey"))


def has_binary(name: str, path: str) -> bool:
    """An executable (or searchable folder, as OpenClaw's access check allows) on PATH."""
    for folder in (p for p in path.split(os.pathsep) if p):
        candidate = Path(folder) / name
        if candidate.exists() and os.access(candidate, os.X_OK):
            return True
    return False


def config_truthy(config: Mapping[str, Any] | None, dotted: str) -> bool:
    """Whether a dotted path is truthy in ``openclaw.json`` (OpenClaw's ``isTruthy``)."""
    parts = [p for p in dotted.split(".") if p]
    value: Any = config
    for part in parts:
        if part in _BLOCKED_KEYS:
            return False
        if isinstance(value, dict):
            value = value.get(part, _MISSING)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            value = _MISSING
    if value is _MISSING or config is None:
        return CONFIG_DEFAULTS.get(dotted, False)
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str):
        return bool(value.strip())
    return True


def parse_openclaw_config(text: str) -> dict[str, Any] | None:
    """``openclaw.json`` (JSON5) text as a dict, or None if it is not an object."""
    try:
        loaded: Any = json5.loads(text)
    except ValueError:
        return None
    return loaded if isinstance(loaded, dict) else None


def normalize_os(name: str) -> str:
    """OpenClaw's comparison form of a platform name: lower case, ``macos`` is ``darwin``."""
    lowered = name.strip().lower()
    return "darwin" if lowered == "macos" else lowered


def string_list(value: object) -> tuple[str, ...]:
    """A list of names from a list or a comma-separated string (OpenClaw's rules)."""
    if isinstance(value, str):
        return tuple(s for s in (part.strip() for part in value.split(",")) if s)
    if isinstance(value, list | tuple):
        return tuple(s for s in (_js_string(v).strip() for v in value) if s)
    return ()


def install_hints(value: object) -> tuple[dict[str, str], ...]:
    """``install`` specs flattened to string maps, for "what to install" hints."""
    if not isinstance(value, list):
        return ()
    hints: list[dict[str, str]] = []
    for spec in value:
        if not isinstance(spec, dict):
            continue
        hint = {str(k): _hint_value(v) for k, v in spec.items() if v is not None}
        if hint:
            hints.append(hint)
    return tuple(hints)


def _hint_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _line_front_matter(block: str) -> dict[str, str]:
    """OpenClaw's fallback reader: top-level ``key: value`` lines, indented continuations."""
    found: dict[str, str] = {}
    lines = block.split("\n")
    i = 0
    while i < len(lines):
        match = _LINE_KEY.match(lines[i])
        i += 1
        if match is None:
            continue
        value = match.group(2).strip()
        if not value:
            start = i
            while i < len(lines) and (not lines[i] or lines[i][0] in " \t"):
                i += 1
            value = "\n".join(lines[start:i]).strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        if value:
            found[match.group(1)] = value
    return found


def _configured_secret(value: object) -> bool:
    """A literal secret, an ``${ENV}`` template or a SecretRef object (OpenClaw's test)."""
    if isinstance(value, str):
        return bool(value.strip()) or bool(_ENV_TEMPLATE.match(value.strip()))
    if not isinstance(value, dict):
        return False
    source, ref_id = value.get("source"), value.get("id")
    if source not in _SECRET_SOURCES or not isinstance(ref_id, str) or not ref_id.strip():
        return False
    provider = value.get("provider")
    if provider is None:
        return True
    return len(value) == 3 and isinstance(provider, str) and bool(provider.strip())


def _js_string(value: object) -> str:
    """``String(value)`` as JavaScript writes it, for list items that are not strings."""
    if isinstance(value, str):
        return value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list | tuple):
        return ",".join("" if v is None else _js_string(v) for v in value)
    if isinstance(value, dict):
        return "[object Object]"
    return str(value)


def _plausible_name(name: str | None) -> bool:
    return name is not None and name != "" and name[0] not in "[{'\"&*!|>%@`"


def _one_line(err: Exception) -> str:
    return " ".join(str(err).split())

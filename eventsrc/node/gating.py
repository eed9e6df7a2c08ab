"""OpenClaw's SKILL.md front matter and load-time gating, as plain functions.

This follows OpenClaw's own loader (``src/markdown/frontmatter.ts``,
``src/shared/frontmatter.ts``, ``src/shared/config-eval.ts`` in openclaw/openclaw):

- the front matter is the YAML block between the first two ``---`` lines; ``metadata``
  is a YAML map or a (one-line) JSON string; the gating block is ``metadata.openclaw``,
  or the legacy ``metadata.clawdbot`` only when ``openclaw`` is absent;
- ``os`` is checked first and applies even with ``always: true``; ``always: true``
  then skips the ``requires`` checks; ``requires.bins`` must all be on PATH,
  ``requires.anyBins`` at least one, ``requires.env`` all set and non-empty,
  ``requires.config`` all truthy in ``openclaw.json``;
- ``skills.entries.<skillKey>.enabled: false`` in ``openclaw.json`` disables a skill.

Nothing here reads files or the process environment: callers pass the environment
and the parsed ``openclaw.json``; the one lookup is ``shutil.which`` on the given PATH.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from eventsrc.errors import EventsrcError
from eventsrc.events import UnavailableSkill

OS_ALIASES = {
    "darwin": "darwin",
    "macos": "darwin",
    "mac": "darwin",
    "osx": "darwin",
    "linux": "linux",
    "win32": "win32",
    "windows": "win32",
}

# OpenClaw treats these config paths as true when the config file does not set them
# (DEFAULT_CONFIG_VALUES in src/agents/skills/config.ts).
CONFIG_DEFAULTS = {"browser.enabled": True, "browser.evaluateEnabled": True}

_END_LINE = re.compile(r"^---[ \t]*$", re.MULTILINE)
_LINE_KEY = re.compile(r"^([\w-]+):[ \t]*(.*)$")
_MISSING = object()


class SkillFileError(EventsrcError):
    """A SKILL.md cannot be used; the message says what is wrong with it."""


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
        loaded = yaml.safe_load(block)
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
    """The ``metadata`` value as a dict; it may be a YAML map or a JSON string."""
    if raw is None:
        return {}
    if isinstance(raw, str):
        text = raw
        try:
            raw = json.loads(text)
        except ValueError:
            try:
                # OpenClaw reads it as JSON5; YAML flow style covers trailing commas.
                raw = yaml.safe_load(text)
            except yaml.YAMLError as err:
                raise SkillFileError(
                    f"metadata is neither a map nor valid JSON: {_one_line(err)}"
                ) from err
    if not isinstance(raw, dict):
        raise SkillFileError("metadata must be a map or a one-line JSON object")
    return {str(key): value for key, value in raw.items()}


def openclaw_block(metadata: Mapping[str, Any]) -> Mapping[str, Any]:
    """``metadata.openclaw``, else the legacy ``metadata.clawdbot``, else empty."""
    for key in ("openclaw", "clawdbot"):
        block = metadata.get(key)
        if isinstance(block, dict):
            return block
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
    install: tuple[dict[str, str], ...] = ()

    @classmethod
    def from_block(cls, block: Mapping[str, Any]) -> Gate:
        """Read an ``openclaw`` block leniently, as OpenClaw does (bad values are ignored)."""
        requires = block.get("requires")
        req: Mapping[str, Any] = requires if isinstance(requires, dict) else {}
        key = block.get("skillKey")
        return cls(
            os=tuple(normalize_os(name) for name in string_list(block.get("os"))),
            bins=string_list(req.get("bins")),
            any_bins=string_list(req.get("anyBins")),
            env=string_list(req.get("env")),
            config=string_list(req.get("config")),
            always=block.get("always") is True,
            skill_key=(key.strip() or None) if isinstance(key, str) else None,
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
) -> UnavailableSkill | None:
    """None when the skill may run here, else what it lacks.

    ``config`` is the parsed ``openclaw.json`` or None when that file is absent (then
    every ``requires.config`` is unmet). ``unsupported_os`` lists the systems the skill
    needs when this node's ``platform`` is not one of them.
    """
    os_ok = not gate.os or normalize_os(platform) in gate.os
    disabled = _disabled_path(config, gate.skill_key or name)
    bins: tuple[str, ...] = ()
    any_bins: tuple[str, ...] = ()
    envs: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    if not gate.always:
        path = env.get("PATH", "")
        bins = tuple(b for b in gate.bins if shutil.which(b, path=path) is None)
        if gate.any_bins and all(shutil.which(b, path=path) is None for b in gate.any_bins):
            any_bins = gate.any_bins
        envs = tuple(e for e in gate.env if not env.get(e))
        paths = tuple(p for p in gate.config if not config_truthy(config, p))
    if disabled is not None:
        paths = (*paths, disabled)
    if os_ok and not (bins or any_bins or envs or paths):
        return None
    return UnavailableSkill(
        name=name,
        description=description,
        missing_bins=bins,
        missing_any_bins=any_bins,
        missing_env=envs,
        missing_config=paths,
        unsupported_os=() if os_ok else gate.os,
        install=gate.install,
    )


def config_truthy(config: Mapping[str, Any] | None, dotted: str) -> bool:
    """Whether a dotted path is truthy in ``openclaw.json`` (OpenClaw's ``isTruthy``)."""
    if config is None:
        return False
    value: Any = config
    for part in (p for p in dotted.split(".") if p):
        value = value.get(part, _MISSING) if isinstance(value, dict) else _MISSING
    if value is _MISSING:
        return CONFIG_DEFAULTS.get(dotted, False)
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str):
        return bool(value.strip())
    return True


def parse_openclaw_config(text: str) -> dict[str, Any] | None:
    """``openclaw.json`` text as a dict, or None if it is not an object.

    The file is JSON5: comments are dropped, then it is read as JSON, else as YAML
    flow style (which covers bare keys, single quotes and trailing commas).
    """
    text = _without_comments(text)
    try:
        loaded: Any = json.loads(text)
    except ValueError:
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError:
            return None
    return loaded if isinstance(loaded, dict) else None


def normalize_os(name: str) -> str:
    """OpenClaw's platform name (``darwin``, ``linux``, ``win32``) for a spelling of it."""
    lowered = name.strip().lower()
    return OS_ALIASES.get(lowered, lowered)


def string_list(value: object) -> tuple[str, ...]:
    """A list of names from a YAML/JSON list or a comma-separated string."""
    items: list[object] = []
    if isinstance(value, str):
        items.extend(value.split(","))
    elif isinstance(value, list | tuple):
        items.extend(v for v in value if isinstance(v, str | int | float))
    return tuple(s for s in (str(item).strip() for item in items) if s)


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


def _disabled_path(config: Mapping[str, Any] | None, key: str) -> str | None:
    entries = (config or {}).get("skills", {})
    entries = entries.get("entries", {}) if isinstance(entries, dict) else {}
    entry = entries.get(key) if isinstance(entries, dict) else None
    if isinstance(entry, dict) and entry.get("enabled") is False:
        return f"skills.entries.{key}.enabled"
    return None


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


def _without_comments(text: str) -> str:
    """JSON5 text without its ``//`` and ``/* */`` comments (strings are left alone)."""
    out: list[str] = []
    i, quote = 0, ""
    while i < len(text):
        ch = text[i]
        if quote:
            out.append(text[i : i + 2] if ch == "\\" else ch)
            i += 2 if ch == "\\" else 1
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
            out.append(ch)
            i += 1
        elif text.startswith("//", i):
            newline = text.find("\n", i)
            i = len(text) if newline < 0 else newline
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = len(text) if end < 0 else end + 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _plausible_name(name: str | None) -> bool:
    return name is not None and name != "" and name[0] not in "[{'\"&*!|>%@`"


def _one_line(err: Exception) -> str:
    return " ".join(str(err).split())

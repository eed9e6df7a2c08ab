"""The OpenClaw installed on a node, asked which skills it has: ``openclaw skills list --json``.

OpenClaw's answer is the authority for every skill it has on the machine — bundled,
custodian, plugin, managed and workspace, with its own precedence (a workspace skill
shadows a bundled one of the same name) and its own gating verdict. ``merge`` lays it
over the folder scan: a scanned skill OpenClaw also lists keeps its ``metadata.eventsrc``
(``run``, category, ...) and takes OpenClaw's verdict; an ``--skills-dir`` skill OpenClaw
does not know stays as scanned, and one with ``run`` keeps its name against OpenClaw's.

The call is synchronous (a child process of about 1.5 s); call it through
``asyncio.to_thread`` from async code.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eventsrc.errors import EventsrcError
from eventsrc.events import SkillMetadata, UnavailableSkill, validate_token
from eventsrc.node.discovery import DiscoveredSkill, DiscoveryResult

LIST_TIMEOUT_S = 90.0
_EXTRA_SOURCE = "extra"


class OpenClawListError(EventsrcError):
    """``openclaw skills list`` did not answer usably; the message says what happened."""


@dataclass(frozen=True)
class OpenClawSkills:
    """OpenClaw's skills on this machine and the workspace it reads them for."""

    workspace: Path | None
    skills: dict[str, DiscoveredSkill] = field(default_factory=dict)
    errors: tuple[str, ...] = ()


def commands(openclaw: str, *, agent: str | None) -> tuple[list[str], list[str]]:
    """``openclaw skills list --json`` (the skills) and ``skills check --json`` (install hints)."""
    scope = ["--agent", agent] if agent else []
    return (
        [openclaw, "skills", "list", "--json", *scope],
        [openclaw, "skills", "check", "--json", *scope],
    )


def list_skills(
    openclaw: str,
    *,
    env: Mapping[str, str],
    agent: str | None = None,
    timeout: float = LIST_TIMEOUT_S,
) -> OpenClawSkills:
    """Ask OpenClaw for its skills; raises OpenClawListError saying what failed.

    The list and the check (whose answer alone carries install hints) run side by side.
    """
    listing, checking = commands(openclaw, agent=agent)
    try:
        children = [
            subprocess.Popen(
                argv,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for argv in (listing, checking)
        ]
    except OSError as err:
        raise OpenClawListError(f"cannot run {openclaw}: {err}") from err
    outputs: list[tuple[int, str, str]] = []
    try:
        for child in children:
            out, err_text = child.communicate(timeout=timeout)
            outputs.append((child.returncode, out, err_text))
    except subprocess.TimeoutExpired as err:
        raise OpenClawListError(
            f"'{' '.join(listing[1:])}' gave no answer within {timeout:g} s"
        ) from err
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    (code, out, err_text), (check_code, check_out, _) = outputs
    if code != 0:
        raise OpenClawListError(
            f"'{' '.join(listing[1:])}' exited with {code}: {_last_line(err_text or out)}"
        )
    return parse_list(out, check_out if check_code == 0 else "")


def parse_list(stdout: str, check_stdout: str = "") -> OpenClawSkills:
    """OpenClaw's ``skills list --json`` answer as discovered skills (pure).

    ``check_stdout`` is the ``skills check --json`` answer, read for install hints only.
    """
    answer = _json_object(stdout)
    if answer is None or not isinstance(answer.get("skills"), list):
        raise OpenClawListError("'openclaw skills list --json' printed no skills list")
    hints = _install_hints(_json_object(check_stdout) or {})
    workspace = answer.get("workspaceDir")
    skills: dict[str, DiscoveredSkill] = {}
    errors: list[str] = []
    for entry in answer["skills"]:
        try:
            skill = _skill(entry, hints)
        except (ValueError, TypeError, KeyError) as err:
            errors.append(f"OpenClaw skill {_name_of(entry)!r} not offered: {err}")
            continue
        skills.setdefault(skill.name, skill)
    return OpenClawSkills(
        workspace=Path(workspace) if isinstance(workspace, str) and workspace else None,
        skills=dict(sorted(skills.items())),
        errors=tuple(errors),
    )


def merge(scan: DiscoveryResult, listed: OpenClawSkills) -> DiscoveryResult:
    """The node's skills: OpenClaw's list, with the scan's own keys and extra folders."""
    skills = dict(listed.skills)
    for name, scanned in scan.skills.items():
        theirs = skills.get(name)
        if theirs is None or (scanned.source == _EXTRA_SOURCE and scanned.run is not None):
            skills[name] = scanned
        elif scanned.source != _EXTRA_SOURCE:
            # The same folder OpenClaw read: our keys, OpenClaw's verdict.
            skills[name] = dataclasses.replace(
                scanned,
                eligible=theirs.eligible,
                missing=theirs.missing,
                source=theirs.source,
            )
    return DiscoveryResult(
        skills=dict(sorted(skills.items())), errors=[*scan.errors, *listed.errors]
    )


def _json_object(stdout: str) -> dict[str, Any] | None:
    """The JSON object a command printed (log lines may come first)."""
    start = stdout.find("{")
    if start < 0:
        return None
    try:
        answer = json.loads(stdout[start:])
    except ValueError:
        return None
    return answer if isinstance(answer, dict) else None


def _install_hints(check: Mapping[str, Any]) -> dict[str, tuple[dict[str, str], ...]]:
    missing = check.get("missingRequirements")
    if not isinstance(missing, list):
        return {}
    return {
        str(item["name"]): _install(item.get("install"))
        for item in missing
        if isinstance(item, dict) and "name" in item
    }


def _skill(
    entry: Mapping[str, Any], hints: Mapping[str, tuple[dict[str, str], ...]]
) -> DiscoveredSkill:
    name = validate_token(str(entry["name"]), what="skill name")
    description = entry.get("description") if isinstance(entry.get("description"), str) else ""
    missing: Mapping[str, Any] = entry.get("missing") or {}
    blocked_by_agent = entry.get("blockedByAgentFilter") is True
    eligible = entry.get("eligible") is True and not blocked_by_agent
    unavailable = None
    if not eligible:
        unavailable = UnavailableSkill(
            name=name,
            description=description,
            missing_bins=_strings(missing.get("bins")),
            missing_any_bins=_strings(missing.get("anyBins")),
            missing_env=_strings(missing.get("env")),
            missing_config=_strings(missing.get("config")),
            unsupported_os=_strings(missing.get("os")),
            disabled=entry.get("disabled") is True,
            blocked_by_allowlist=entry.get("blockedByAllowlist") is True,
            blocked_by_agent=blocked_by_agent,
            install=hints.get(name, ()),
        )
    source = entry.get("source")
    return DiscoveredSkill(
        metadata=SkillMetadata(name=name, description=description),
        folder=None,
        run=None,
        timeout_s=None,
        eligible=eligible,
        missing=unavailable,
        source=source if isinstance(source, str) and source else "openclaw",
    )


def _strings(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(str(v) for v in value if isinstance(v, str | int | float))


def _install(value: object) -> tuple[dict[str, str], ...]:
    """OpenClaw's install options (``{id, kind, label, bins}``) as string maps."""
    if not isinstance(value, Sequence) or isinstance(value, str):
        return ()
    hints: list[dict[str, str]] = []
    for option in value:
        if isinstance(option, dict):
            hint = {
                str(k): ",".join(map(str, v)) if isinstance(v, list) else str(v)
                for k, v in option.items()
                if v not in (None, "", [])
            }
            if hint:
                hints.append(hint)
    return tuple(hints)


def _name_of(entry: object) -> str:
    return str(entry.get("name", "?")) if isinstance(entry, dict) else "?"


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"

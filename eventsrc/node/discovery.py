"""Finding OpenClaw skill folders on a node and deciding which of them it can run.

A skill is a folder holding a ``SKILL.md`` (see ``eventsrc.node.gating`` for the front
matter and OpenClaw's gating). Our own keys live under ``metadata.eventsrc``: ``run``,
``category``, ``version``, ``dependencies``, ``tags``, ``resources``, ``timeout_s``,
``max_concurrent``, ``rate``.

Folders, highest precedence first (OpenClaw's order, then ``--skills-dir`` folders in
the order given): ``<workspace>/skills``, ``<workspace>/.agents/skills``,
``~/.agents/skills``, ``~/.openclaw/skills``. A name found in a higher folder hides the
same name in lower ones, eligible or not. Like OpenClaw, ``OPENCLAW_STATE_DIR`` and
``OPENCLAW_CONFIG_PATH`` in the given environment move ``~/.openclaw`` and its
``openclaw.json``.

Scanning reads the file system synchronously; call ``scan`` through
``asyncio.to_thread`` from async code. It never raises for a bad SKILL.md: each one is
reported as a line naming its path in ``DiscoveryResult.errors`` and skipped.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from eventsrc.errors import first_problem
from eventsrc.events import SkillCategory, SkillMetadata, UnavailableSkill, validate_token
from eventsrc.node.gating import (
    BUNDLED_SOURCES,
    Gate,
    SkillFileError,
    check,
    openclaw_block,
    parse_front_matter,
    parse_metadata,
    parse_openclaw_config,
    string_list,
)

__all__ = [
    "BUILTIN_SOURCE",
    "MAX_SKILL_FILE_BYTES",
    "DiscoveredSkill",
    "DiscoveryResult",
    "SkillFileError",
    "SkillScanner",
    "diff",
    "load_skill",
    "read_openclaw_config",
]

BUILTIN_SOURCE = "builtin"
# OpenClaw skips larger SKILL.md files (maxSkillFileBytes).
MAX_SKILL_FILE_BYTES = 256_000
_SKIPPED_DIRS = {"node_modules"}


CLUSTER_SKILL = "eventsrc-cluster"
"""The skill ``eventsrc openclaw install`` writes: it tells an agent how to use the
cluster, so a node never offers it to the cluster as a capability."""


@dataclass(frozen=True)
class DiscoveredSkill:
    """One skill a node found: its catalog metadata, how to run it, whether it can.

    ``missing`` is set exactly when ``eligible`` is false. ``source`` says where it came
    from (``workspace``, ``agents-project``, ``agents-personal``, ``managed``, ``extra``
    or ``builtin``).
    """

    metadata: SkillMetadata
    folder: Path | None
    run: str | None
    timeout_s: float | None
    eligible: bool
    missing: UnavailableSkill | None
    source: str

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def builtin(self) -> bool:
        """One of eventsrc's built-in catalog skills (no folder)."""
        return self.source == BUILTIN_SOURCE


@dataclass(frozen=True)
class DiscoveryResult:
    """Skills by name (after precedence) and one line per SKILL.md that was skipped."""

    skills: dict[str, DiscoveredSkill] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def eligible(self) -> dict[str, DiscoveredSkill]:
        """The skills this node can run, by name."""
        return {name: s for name, s in self.skills.items() if s.eligible}

    def unavailable(self) -> tuple[UnavailableSkill, ...]:
        """What the ineligible skills lack, sorted by name (for NodeCapabilitiesReported)."""
        return tuple(s.missing for _, s in sorted(self.skills.items()) if s.missing is not None)


class SkillScanner:
    """Scans a node's OpenClaw skill folders; ``scan()`` again to see changes.

    ``eventsrc.skills.SkillDiscovery`` is this scanner with the week-5 registry
    lifecycle on top (``start``, ``stop``, ``register_local_skills``).

    ``env`` is the environment the skills will run with (PATH for ``requires.bins``,
    variables for ``requires.env``); the entry point passes ``os.environ``.
    ``workspace`` defaults to the current directory, ``home`` to ``Path.home()``,
    ``platform`` to ``sys.platform``.
    """

    def __init__(
        self,
        *,
        env: Mapping[str, str],
        workspace: str | Path | None = None,
        home: str | Path | None = None,
        extra_dirs: Sequence[str | Path] = (),
        platform: str = sys.platform,
    ) -> None:
        self._env = dict(env)
        self._workspace = Path(workspace) if workspace is not None else Path.cwd()
        self._home = Path(home) if home is not None else Path.home()
        self._extra = tuple(Path(d).expanduser() for d in extra_dirs)
        self._platform = platform

    @property
    def state_dir(self) -> Path:
        """OpenClaw's state folder: ``$OPENCLAW_STATE_DIR`` or ``~/.openclaw``."""
        return self._user_path(self._env.get("OPENCLAW_STATE_DIR")) or self._home / ".openclaw"

    @property
    def config_path(self) -> Path:
        """OpenClaw's config: ``$OPENCLAW_CONFIG_PATH`` or ``openclaw.json`` in the state dir."""
        explicit = self._user_path(self._env.get("OPENCLAW_CONFIG_PATH"))
        return explicit or self.state_dir / "openclaw.json"

    def roots(self) -> list[tuple[str, Path]]:
        """The folders scanned, highest precedence first, as (source, path)."""
        candidates = [
            ("workspace", self._workspace / "skills"),
            ("agents-project", self._workspace / ".agents" / "skills"),
            ("agents-personal", self._home / ".agents" / "skills"),
            ("managed", self.state_dir / "skills"),
            *(("extra", d) for d in self._extra),
        ]
        seen: set[Path] = set()
        roots: list[tuple[str, Path]] = []
        for source, path in candidates:
            key = path.resolve()
            if key not in seen:
                seen.add(key)
                roots.append((source, path))
        return roots

    def scan(self) -> DiscoveryResult:
        """Read every skill folder now; never raises for a bad SKILL.md or config."""
        errors: list[str] = []
        config, config_error = read_openclaw_config(self.config_path)
        if config_error is not None:
            errors.append(config_error)
        skills: dict[str, DiscoveredSkill] = {}
        for source, root in self.roots():
            seen_here: dict[str, Path] = {}
            for folder in _skill_folders(root, errors):
                skill_md = folder / "SKILL.md"
                try:
                    skill = load_skill(
                        folder,
                        source=source,
                        env=self._env,
                        platform=self._platform,
                        config=config,
                    )
                except SkillFileError as err:
                    errors.append(f"{skill_md}: {err}")
                    continue
                if skill.name in seen_here:
                    errors.append(
                        f"{skill_md}: skill name {skill.name!r} is already used by "
                        f"{seen_here[skill.name]}; this one is ignored — rename one of them"
                    )
                    continue
                seen_here[skill.name] = skill_md
                # A higher folder already gave this name: it wins, as in OpenClaw.
                skills.setdefault(skill.name, skill)
        return DiscoveryResult(skills=dict(sorted(skills.items())), errors=errors)

    def _user_path(self, value: str | None) -> Path | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        if value == "~" or value.startswith("~/"):
            return self._home / value[2:]
        return Path(value)


def __getattr__(name: str) -> Any:
    # SkillDiscovery (the scanner plus its registry lifecycle) is defined in
    # eventsrc.skills, which imports this module: resolved on first use, one class.
    if name == "SkillDiscovery":
        from eventsrc.skills.skill_discovery import SkillDiscovery

        return SkillDiscovery
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_skill(
    folder: Path,
    *,
    source: str,
    env: Mapping[str, str],
    platform: str = sys.platform,
    config: Mapping[str, Any] | None = None,
) -> DiscoveredSkill:
    """Read one skill folder. Raises SkillFileError saying what is wrong with its SKILL.md.

    ``config`` is the parsed ``openclaw.json`` (None: absent, so config requirements
    are unmet).
    """
    skill_md = folder / "SKILL.md"
    try:
        if skill_md.stat().st_size > MAX_SKILL_FILE_BYTES:
            raise SkillFileError(f"larger than {MAX_SKILL_FILE_BYTES} bytes; OpenClaw skips it too")
        text = skill_md.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise SkillFileError(f"cannot read it: {err}") from err
    front = parse_front_matter(text)
    name = _scalar(front.get("name"))
    if not name:
        raise SkillFileError("the front matter has no 'name'; add 'name: <skill-name>'")
    try:
        validate_token(name, what="skill name")
    except ValueError as err:
        raise SkillFileError(str(err)) from err
    try:
        metadata = parse_metadata(front.get("metadata"))
    except SkillFileError:
        # OpenClaw loads a skill whose metadata it cannot read, ungated; so do we.
        metadata = {}
    ours = metadata.get("eventsrc", {})
    if not isinstance(ours, dict):
        raise SkillFileError("metadata.eventsrc must be a map")
    description = _scalar(front.get("description")) or ""
    skill_metadata = _skill_metadata(name, description, front, ours)
    missing = check(
        Gate.from_block(openclaw_block(metadata)),
        name=name,
        description=description,
        env=env,
        platform=platform,
        config=config,
        bundled=source in BUNDLED_SOURCES,
    )
    return DiscoveredSkill(
        metadata=skill_metadata,
        folder=folder,
        run=_run_command(ours.get("run")),
        timeout_s=_timeout(ours.get("timeout_s")),
        eligible=missing is None,
        missing=missing,
        source=source,
    )


def read_openclaw_config(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The parsed ``openclaw.json`` (None if absent) and an error line if unusable.

    An unreadable or unparsable file counts as absent (only OpenClaw's defaults apply).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, None
    except (OSError, UnicodeDecodeError) as err:
        return None, f"{path}: cannot read it ({err}); it counts as absent"
    config = parse_openclaw_config(text)
    if config is None:
        return None, f"{path}: not a JSON5 object this node can read; it counts as absent"
    return config, None


def diff(
    previous: DiscoveryResult | Mapping[str, DiscoveredSkill],
    current: DiscoveryResult | Mapping[str, DiscoveredSkill],
) -> tuple[list[str], list[str]]:
    """Between two scans: (appeared or became eligible, gone or became ineligible), sorted."""
    before = {n for n, s in _skills_of(previous).items() if s.eligible}
    after = {n for n, s in _skills_of(current).items() if s.eligible}
    return sorted(after - before), sorted(before - after)


def _skills_of(
    scan: DiscoveryResult | Mapping[str, DiscoveredSkill],
) -> Mapping[str, DiscoveredSkill]:
    return scan.skills if isinstance(scan, DiscoveryResult) else scan


def _skill_folders(root: Path, errors: list[str]) -> list[Path]:
    """The root itself if it is a skill, else its skill children and grandchildren."""
    if (root / "SKILL.md").is_file():
        return [root]
    found: list[Path] = []
    for child in _subdirs(root, errors):
        if (child / "SKILL.md").is_file():
            found.append(child)
        else:
            # Grouped skills (<root>/<group>/<skill>/SKILL.md), as OpenClaw allows.
            found.extend(g for g in _subdirs(child, errors) if (g / "SKILL.md").is_file())
    return found


def _subdirs(folder: Path, errors: list[str]) -> list[Path]:
    if not folder.is_dir():
        return []
    try:
        entries = sorted(folder.iterdir())
    except OSError as err:
        errors.append(f"{folder}: cannot list it: {err}")
        return []
    return [
        p
        for p in entries
        if not p.name.startswith(".") and p.name not in _SKIPPED_DIRS and p.is_dir()
    ]


def _skill_metadata(
    name: str, description: str, front: Mapping[str, Any], ours: Mapping[str, Any]
) -> SkillMetadata:
    category = ours.get("category", SkillCategory.CUSTOM.value)
    if not isinstance(category, str) or category not in {c.value for c in SkillCategory}:
        valid = ", ".join(c.value for c in SkillCategory)
        raise SkillFileError(f"metadata.eventsrc.category {category!r} is not one of: {valid}")
    # Top-level version/tags (other skill formats) are a lenient fallback for ours.
    version = ours.get("version", front.get("version"))
    tags = _names(ours["tags"], "tags") if "tags" in ours else string_list(front.get("tags"))
    fields: dict[str, Any] = {
        "name": name,
        "description": description,
        "category": category,
        "tags": tags,
        "dependencies": _names(ours.get("dependencies"), "dependencies"),
        "resources": ours.get("resources") or {},
        # Cluster-wide limits of its tasks (the scheduler's, see docs/concepts.md).
        "max_concurrent": ours.get("max_concurrent"),
        "rate": ours.get("rate"),
    }
    if isinstance(version, str | int | float) and not isinstance(version, bool):
        fields["version"] = str(version)
    try:
        return SkillMetadata(**fields)
    except ValidationError as err:
        raise SkillFileError(f"metadata.eventsrc is invalid: {first_problem(err)}") from err


def _names(value: object, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SkillFileError(f"metadata.eventsrc.{key} must be a list of names")
    return tuple(value)


def _run_command(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise SkillFileError("metadata.eventsrc.run must be a non-empty command string")
    try:
        shlex.split(value)
    except ValueError as err:
        raise SkillFileError(f"metadata.eventsrc.run cannot be split: {err}") from err
    return value.strip()


def _timeout(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise SkillFileError("metadata.eventsrc.timeout_s must be a positive number of seconds")
    return float(value)


def _scalar(value: object) -> str | None:
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None

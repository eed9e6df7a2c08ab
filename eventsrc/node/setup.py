"""Turning a NodeConfig into what a NodeAgent runs: skills found, executors, gaps."""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping
from dataclasses import dataclass

from eventsrc.config import NodeConfig
from eventsrc.errors import ConfigError
from eventsrc.events import UnavailableSkill, validate_token
from eventsrc.node.builtins import BUILTIN_SKILLS, builtin_skill
from eventsrc.node.discovery import CLUSTER_SKILL, DiscoveredSkill, SkillScanner
from eventsrc.node.executors import Executor, executor_for
from eventsrc.node.pyskills import CallableExecutor, as_discovered, entry_point_skills

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class NodeSkills:
    """What a node advertises, how it runs each, and what it found but cannot run."""

    skills: dict[str, DiscoveredSkill]
    executors: dict[str, Executor]
    unavailable: tuple[UnavailableSkill, ...]
    errors: tuple[str, ...]


def node_id_of(config: NodeConfig) -> str:
    """The configured node id, else the host name (validated as a subject token)."""
    return validate_token(config.node_id or socket.gethostname(), what="node id")


def local_node_id() -> str:
    """The embedded coordinator's own node: ``<host>-local``, so that a node started on
    the same machine with no ``--node-id`` (the host name) is another member, not a
    second process under one id."""
    return f"{socket.gethostname()}-local"


def discover(config: NodeConfig, env: Mapping[str, str]) -> NodeSkills:
    """Scan skill folders and add the named built-ins.

    ``--skill NAME`` advertises a skill from an installed package (``eventsrc.skills``
    entry points) or a built-in (only ``python`` executes; the others are catalog
    entries a handler or OpenClaw may serve). Folder skills are advertised when
    OpenClaw's gating says they can run here.
    """
    for folder in config.skills_dirs:
        if not folder.is_dir():
            what = "is not a folder" if folder.exists() else "does not exist"
            raise ConfigError(
                f"--skills-dir {folder} {what}; pass a folder that holds OpenClaw skill "
                f"folders (each with a SKILL.md)"
            )
    found = SkillScanner(env=env, workspace=config.workspace, extra_dirs=config.skills_dirs).scan()
    for line in found.errors:
        log.warning("skipped: %s", line)
    skills = {name: s for name, s in found.eligible().items() if name != CLUSTER_SKILL}
    errors = list(found.errors)
    packaged = entry_point_skills(errors) if config.skills else {}
    executors: dict[str, Executor] = {}
    for name in config.skills:
        validate_token(name, what="skill name")
        if name in skills:
            continue
        if name in packaged:
            skills[name] = as_discovered(packaged[name])
            executors[name] = CallableExecutor(packaged[name].run)
            continue
        if name not in BUILTIN_SKILLS:
            raise ConfigError(
                f"--skill {name}: no built-in or installed skill of that name (built-ins: "
                f"{', '.join(BUILTIN_SKILLS)}); put a SKILL.md folder in --skills-dir instead"
            )
        skills[name] = builtin_skill(name)
    for name, skill in skills.items():
        if name not in executors and (executor := executor_for(skill, env)) is not None:
            executors[name] = executor
    unavailable = tuple(u for u in found.unavailable() if u.name != CLUSTER_SKILL)
    return NodeSkills(skills, executors, unavailable, tuple(errors))

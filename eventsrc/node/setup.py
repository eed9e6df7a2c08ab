"""Turning a NodeConfig into what a NodeAgent runs: skills found, executors, gaps."""

from __future__ import annotations

import logging
import shutil
import socket
from collections.abc import Mapping
from dataclasses import dataclass

from eventsrc.config import NodeConfig
from eventsrc.errors import ConfigError
from eventsrc.events import UnavailableSkill, validate_token
from eventsrc.node.agent_turn import TurnLimit
from eventsrc.node.builtins import BUILTIN_SKILLS, builtin_skill
from eventsrc.node.discovery import CLUSTER_SKILL, DiscoveredSkill, SkillScanner
from eventsrc.node.executors import Executor, executor_for
from eventsrc.node.openclaw import OpenClawListError, OpenClawSkills, list_skills, merge
from eventsrc.node.pyskills import CallableExecutor, as_discovered, entry_point_skills

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class NodeSkills:
    """What a node advertises, how it runs each, and what it found but cannot run."""

    skills: dict[str, DiscoveredSkill]
    executors: dict[str, Executor]
    unavailable: tuple[UnavailableSkill, ...]
    errors: tuple[str, ...]
    turns: TurnLimit | None = None
    """The node's limit on OpenClaw agent turns at once, kept across rescans."""


def node_id_of(config: NodeConfig) -> str:
    """The configured node id, else the host name (validated as a subject token)."""
    return validate_token(config.node_id or socket.gethostname(), what="node id")


def local_node_id() -> str:
    """The embedded coordinator's own node: ``<host>-local``, so that a node started on
    the same machine with no ``--node-id`` (the host name) is another member, not a
    second process under one id."""
    return f"{socket.gethostname()}-local"


def discover(
    config: NodeConfig,
    env: Mapping[str, str],
    *,
    node_id: str | None = None,
    turns: TurnLimit | None = None,
) -> NodeSkills:
    """Find the node's skills: OpenClaw's own when its CLI is here, folders, built-ins.

    Where ``openclaw`` is on the PATH, ``openclaw skills list`` names every skill it
    has (bundled, custodian, plugin, managed, workspace) with its verdict, for the
    agent ``config.openclaw_agent`` (default: OpenClaw's default agent) and that
    agent's workspace; the folder scan adds ``metadata.eventsrc`` and the
    ``--skills-dir`` folders. Without OpenClaw the scan alone decides, as OpenClaw
    would. ``--skill NAME`` advertises a skill from an installed package
    (``eventsrc.skills`` entry points) or a built-in (only ``python`` executes; the
    others are catalog entries a handler or OpenClaw may serve). ``node_id`` names the
    node in OpenClaw failure messages; ``turns`` is kept from an earlier discovery.
    """
    for folder in config.skills_dirs:
        if not folder.is_dir():
            what = "is not a folder" if folder.exists() else "does not exist"
            raise ConfigError(
                f"--skills-dir {folder} {what}; pass a folder that holds OpenClaw skill "
                f"folders (each with a SKILL.md)"
            )
    listed = openclaw_skills(config, env)
    workspace = listed.workspace if listed and listed.workspace else config.workspace
    found = SkillScanner(env=env, workspace=workspace, extra_dirs=config.skills_dirs).scan()
    if listed is not None:
        found = merge(found, listed)
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
    turns = turns or TurnLimit(config.openclaw_max_turns)
    for name, skill in skills.items():
        executor = executor_for(
            skill,
            env,
            workspace=listed.workspace if listed else None,
            model=config.openclaw_model,
            node_id=node_id,
            turns=turns,
        )
        if name not in executors and executor is not None:
            executors[name] = executor
    unavailable = tuple(u for u in found.unavailable() if u.name != CLUSTER_SKILL)
    return NodeSkills(skills, executors, unavailable, tuple(errors), turns)


def openclaw_skills(config: NodeConfig, env: Mapping[str, str]) -> OpenClawSkills | None:
    """OpenClaw's answer, or None without an ``openclaw`` CLI (or when it fails: logged)."""
    openclaw = shutil.which("openclaw", path=env.get("PATH", ""))
    if openclaw is None:
        return None
    try:
        return list_skills(openclaw, env=env, agent=config.openclaw_agent)
    except OpenClawListError as err:
        log.warning("OpenClaw's skills not offered: %s; only skill folders are scanned", err)
        return None

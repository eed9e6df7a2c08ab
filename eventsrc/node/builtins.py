"""The week-5 six built-in catalog skills.

Only ``python`` runs built in (``eventsrc.node.executors.PythonExecutor``), and only on
nodes that enable it (code execution is opt-in). The others are catalog entries a node
can advertise with ``--skill NAME``; the local OpenClaw agent runs them, if installed.
Resource requirements are qualitative on purpose, so they rank nodes but never keep a
small machine from running a skill.
"""

from __future__ import annotations

from eventsrc.errors import NotFoundError
from eventsrc.events import SkillCategory, SkillMetadata
from eventsrc.node.discovery import BUILTIN_SOURCE, DiscoveredSkill

__all__ = ["BUILTIN_SKILLS", "EXECUTABLE_BUILTINS", "builtin_skill"]

BUILTIN_SKILLS: dict[str, SkillMetadata] = {
    meta.name: meta
    for meta in (
        SkillMetadata(
            name="python",
            description="Python code execution and scripts",
            category=SkillCategory.SYSTEM,
            tags=("code", "python"),
        ),
        SkillMetadata(
            name="search",
            description="Web search",
            category=SkillCategory.NETWORK,
            tags=("web",),
        ),
        SkillMetadata(
            name="weather",
            description="Weather forecasts and conditions",
            category=SkillCategory.NETWORK,
            tags=("web",),
            dependencies=("search",),
        ),
        SkillMetadata(
            name="data-analysis",
            description="Data analysis and statistics",
            category=SkillCategory.DATA_PROCESSING,
            tags=("data",),
            dependencies=("python",),
        ),
        SkillMetadata(
            name="ml",
            description="Machine learning training and inference",
            category=SkillCategory.MACHINE_LEARNING,
            tags=("data", "ml"),
            dependencies=("python", "data-analysis"),
            resources={"cpu": "high", "gpu": "recommended"},
        ),
        SkillMetadata(
            name="media",
            description="Image, audio and video processing",
            category=SkillCategory.MEDIA_PROCESSING,
            tags=("media",),
        ),
    )
}

EXECUTABLE_BUILTINS = frozenset({"python"})
"""Built-ins with an executor of their own; the rest need a ``run`` or OpenClaw."""


def builtin_skill(name: str) -> DiscoveredSkill:
    """A built-in as a discovered skill a node can advertise. Raises NotFoundError."""
    try:
        metadata = BUILTIN_SKILLS[name]
    except KeyError:
        known = ", ".join(BUILTIN_SKILLS)
        raise NotFoundError(
            f"no built-in skill named {name!r}; the built-ins are {known}"
        ) from None
    return DiscoveredSkill(
        metadata=metadata,
        folder=None,
        run=None,
        timeout_s=None,
        eligible=True,
        missing=None,
        source=BUILTIN_SOURCE,
    )

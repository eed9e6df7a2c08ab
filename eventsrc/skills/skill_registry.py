"""The week-5 ``skills.skill_registry`` names: the registry, its metadata, categories."""

from __future__ import annotations

from eventsrc.events import SkillCategory, SkillMetadata
from eventsrc.projections.queries import SkillInstance
from eventsrc.registry import SkillRegistry

__all__ = ["SkillCategory", "SkillInstance", "SkillMetadata", "SkillRegistry"]

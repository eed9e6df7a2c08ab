"""The week-5 module layout, for code moved over from it.

``eventsrc.skills.skill_registry`` holds ``SkillRegistry``, ``SkillMetadata`` and
``SkillCategory``; ``eventsrc.skills.skill_discovery`` holds ``SkillDiscovery`` and
``BUILTIN_SKILLS``. They are the same objects as ``eventsrc.SkillRegistry`` and the rest.
"""

from __future__ import annotations

from eventsrc.skills.skill_discovery import BUILTIN_SKILLS, SkillDiscovery
from eventsrc.skills.skill_registry import SkillCategory, SkillMetadata, SkillRegistry

__all__ = ["BUILTIN_SKILLS", "SkillCategory", "SkillDiscovery", "SkillMetadata", "SkillRegistry"]

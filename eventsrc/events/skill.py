"""Skill catalog events and the seed's SkillMetadata value."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from eventsrc.events.base import EventBase
from eventsrc.events.ids import Token

ResourceValue = int | float | str
"""Numeric requirements are hard limits (``memory_mb: 4096``); strings only rank."""


class SkillCategory(StrEnum):
    """The seed's skill categories; ``custom`` for skills that name none."""

    SYSTEM = "system"
    NETWORK = "network"
    DATA_PROCESSING = "data_processing"
    MACHINE_LEARNING = "machine_learning"
    MEDIA_PROCESSING = "media_processing"
    CUSTOM = "custom"


class SkillMetadata(BaseModel):
    """What a skill is: the seed's metadata record, stored in catalog events."""

    model_config = ConfigDict(frozen=True, extra="ignore", allow_inf_nan=False)

    name: Token
    description: str = ""
    category: SkillCategory = SkillCategory.CUSTOM
    version: str = "1.0.0"
    tags: tuple[str, ...] = ()
    dependencies: tuple[Token, ...] = ()
    resources: dict[str, ResourceValue] = Field(default_factory=dict)


class SkillRegistered(EventBase):
    """A skill entered the catalog."""

    type: Literal["SkillRegistered"] = "SkillRegistered"
    metadata: SkillMetadata

    @property
    def subject(self) -> str:
        return f"evt.skill.{self.metadata.name}"


class SkillUpdated(EventBase):
    """A catalog skill's metadata changed (description, version, dependencies, ...)."""

    type: Literal["SkillUpdated"] = "SkillUpdated"
    metadata: SkillMetadata

    @property
    def subject(self) -> str:
        return f"evt.skill.{self.metadata.name}"

"""Skill catalog events and the week-5 SkillMetadata value."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

from eventsrc.events.base import EMBEDDED, EventBase, open_schema
from eventsrc.events.ids import Token
from eventsrc.events.limit import check_rate
from eventsrc.events.subjects import skill_subject

# bool must be a member: without it pydantic reads True as the int 1, and a
# qualitative ``gpu: true`` becomes the hard limit ``gpu: 1``.
ResourceValue = bool | int | float | str
"""Numbers are hard limits (``memory_mb: 4096``); strings and booleans only rank."""


class SkillCategory(StrEnum):
    """The week-5 skill categories; ``custom`` for skills that name none."""

    SYSTEM = "system"
    NETWORK = "network"
    DATA_PROCESSING = "data_processing"
    MACHINE_LEARNING = "machine_learning"
    MEDIA_PROCESSING = "media_processing"
    CUSTOM = "custom"


class SkillMetadata(BaseModel):
    """What a skill is: the week-5 metadata record, stored in catalog events."""

    # Unknown fields are an error here (a caller's typo shows); events embed it
    # ``EMBEDDED``, which drops them, so old code still reads new events.
    model_config = ConfigDict(
        frozen=True, extra="forbid", allow_inf_nan=False, json_schema_extra=open_schema
    )

    name: Token
    description: str = ""
    category: SkillCategory = SkillCategory.CUSTOM
    version: str = "1.0.0"
    author: str = ""
    tags: tuple[str, ...] = ()
    dependencies: tuple[Token, ...] = ()
    resources: dict[str, ResourceValue] = Field(
        default_factory=dict, validation_alias=AliasChoices("resources", "required_resources")
    )
    max_concurrent: int | None = Field(default=None, ge=1)
    """At most this many of its tasks assigned or running at once, cluster-wide."""
    rate: str | None = None
    """At most this many of its tasks started per window, cluster-wide (``30/m``)."""
    created_at: datetime | None = None
    """When the catalog first registered it: the catalog sets it from its events."""
    updated_at: datetime | None = None
    """When the catalog last changed it: set from its events, like ``created_at``."""

    @field_validator("rate")
    @classmethod
    def _parses(cls, rate: str | None) -> str | None:
        return check_rate(rate)

    @property
    def required_resources(self) -> dict[str, ResourceValue]:
        """``resources`` under the name the week-5 API gave it."""
        return self.resources

    def content(self) -> SkillMetadata:
        """This metadata without the catalog's times: what a registration proposes."""
        if self.created_at is None and self.updated_at is None:
            return self
        return self.model_copy(update={"created_at": None, "updated_at": None})


class SkillRegistered(EventBase):
    """A skill entered the catalog."""

    type: Literal["SkillRegistered"] = "SkillRegistered"
    metadata: Annotated[SkillMetadata, EMBEDDED]

    @property
    def subject(self) -> str:
        return skill_subject(self.metadata.name)


class SkillUpdated(EventBase):
    """A catalog skill's metadata changed (description, version, dependencies, ...)."""

    type: Literal["SkillUpdated"] = "SkillUpdated"
    metadata: Annotated[SkillMetadata, EMBEDDED]

    @property
    def subject(self) -> str:
        return skill_subject(self.metadata.name)

"""The envelope every event carries, as the common base of all event models.

Events are flat JSON objects: the envelope fields below plus the fields of the event
type, discriminated by ``type``. Flat keeps decoding to one ``validate_json`` call.
"""

from __future__ import annotations

from abc import abstractmethod
from datetime import datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, GetCoreSchemaHandler
from pydantic_core import CoreSchema, core_schema


class Embedded:
    """Marks a value model carried inside events: ``Annotated[SkillMetadata, EMBEDDED]``.

    Value models such as ``SkillMetadata`` and ``TaskSpec`` forbid unknown fields, so a
    caller's typo is an error. Inside an event they must not be (old code reads new
    events): keys the model does not know are dropped before it validates the value.
    """

    def __get_pydantic_core_schema__(
        self, source: type[BaseModel], handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        known: set[str] = set()
        for name, info in source.model_fields.items():
            known.add(name)
            if info.alias:
                known.add(info.alias)
            choices = getattr(info.validation_alias, "choices", ())
            known.update(c for c in choices if isinstance(c, str))
            if isinstance(info.validation_alias, str):
                known.add(info.validation_alias)

        def known_keys_only(value: Any) -> Any:
            if isinstance(value, dict):
                return {key: item for key, item in value.items() if key in known}
            return value

        return core_schema.no_info_before_validator_function(known_keys_only, handler(source))


EMBEDDED = Embedded()


def open_schema(schema: dict[str, Any]) -> None:
    """``json_schema_extra`` of embedded value models: their published JSON Schema (that
    of the events) does not forbid unknown fields, since readers must ignore them."""
    schema.pop("additionalProperties", None)


class EventBase(BaseModel):
    """Envelope fields shared by every event.

    ``event_id`` is also the ``Nats-Msg-Id`` of the publish, so a retried publish is
    stored once. ``time`` is the producer's clock and is informational; decisions use
    the evidence fields of the events and the server's timestamps. ``epoch`` is set on
    coordinator events only: projections ignore coordinator events of an older epoch
    than the newest ``LeaderElected`` they applied.
    """

    # Old code must read new events: unknown fields are ignored, never an error.
    # NaN and Infinity (pydantic's parser reads them, and 1e999) cannot be hashed or
    # snapshotted faithfully, so no float field takes them; nested models say so too.
    model_config = ConfigDict(frozen=True, extra="ignore", allow_inf_nan=False)

    # Which side may write it; secure mode's permissions mirror this.
    WRITTEN_BY: ClassVar[str] = "coordinator"

    event_id: str
    # An event type whose payload changes shape overrides this default with the next
    # number; the codec upcasts stored events of older versions before validating.
    schema_version: int = 1
    time: datetime
    producer: str
    causation_id: str | None = None
    correlation_id: str | None = None
    epoch: int | None = None

    @property
    @abstractmethod
    def subject(self) -> str:
        """The subject this event is stored under (see docs/design.md, Streams and subjects)."""

    @property
    def aggregate_subject(self) -> str:
        """The subject filter whose last sequence guards this event's aggregate."""
        return self.subject

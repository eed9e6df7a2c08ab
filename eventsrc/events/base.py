"""The envelope every event carries, as the common base of all event models.

Events are flat JSON objects: the envelope fields below plus the fields of the event
type, discriminated by ``type``. Flat keeps decoding to one ``validate_json`` call.
"""

from __future__ import annotations

from abc import abstractmethod
from datetime import datetime
from typing import Any, ClassVar, cast

from pydantic import BaseModel, ConfigDict, GetCoreSchemaHandler
from pydantic_core import CoreSchema, core_schema


class Embedded:
    """Marks a value model carried inside events: ``Annotated[SkillMetadata, EMBEDDED]``.

    Value models such as ``SkillMetadata`` and ``TaskSpec`` forbid unknown fields, so a
    caller's typo is an error. Inside an event they must not be (old code reads new
    events): there unknown fields are ignored.

    Where it can, this uses a copy of the model's core schema that ignores them: a
    Python function dropping keys before validation makes pydantic turn the JSON into
    Python objects and validate those again, which doubled the decoding time of a
    ``TaskSubmitted``. pydantic-core reuses a model's own (strict) validator for a
    schema that is just the model, so a model without model validators (its schema is
    ``model`` at the top) keeps the function.
    """

    def __get_pydantic_core_schema__(
        self, source: type[BaseModel], handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        schema = handler(source)
        if schema["type"] == "definition-ref":
            schema = handler.resolve_ref_schema(schema)
        if not _validated_as_is(source):
            return _ignoring_unknown_fields(schema)
        known = _field_names(source)

        def known_keys_only(value: Any) -> Any:
            if isinstance(value, dict):
                return {key: item for key, item in value.items() if key in known}
            return value

        return core_schema.no_info_before_validator_function(known_keys_only, schema)


def _validated_as_is(source: type[BaseModel]) -> bool:
    """Whether pydantic-core reuses the model's own validator wherever the model occurs:
    it does when that validator is the plain model one (no model validators)."""
    own: dict[str, Any] = dict(source.__pydantic_core_schema__)
    if own["type"] == "definitions":  # the model's nested models, then the model
        own = own["schema"]
    return bool(own["type"] == "model")


def _field_names(source: type[BaseModel]) -> set[str]:
    """Every key a model reads: field names, aliases and validation aliases."""
    known: set[str] = set()
    for name, info in source.model_fields.items():
        known.add(name)
        if info.alias:
            known.add(info.alias)
        choices = getattr(info.validation_alias, "choices", ())
        known.update(c for c in choices if isinstance(c, str))
        if isinstance(info.validation_alias, str):
            known.add(info.validation_alias)
    return known


def _ignoring_unknown_fields(schema: CoreSchema) -> CoreSchema:
    """A copy of a model's core schema (under its validators) that ignores unknown fields."""
    copy: dict[str, Any] = dict(schema)
    # Under its own reference the copy would replace the strict model's definition; the
    # suffix goes after the last ":" so that the JSON Schema keeps the model's name.
    if "ref" in copy:
        copy["ref"] = f"{copy['ref']}-embedded"
    if copy["type"] == "model":
        copy["config"] = {**copy.get("config", {}), "extra_fields_behavior": "ignore"}
        copy["schema"] = {**copy["schema"], "extra_behavior": "ignore"}
    elif "schema" in copy:
        copy["schema"] = _ignoring_unknown_fields(copy["schema"])
    else:
        raise TypeError(f"EMBEDDED applies to models, not to a {copy['type']} schema")
    return cast(CoreSchema, copy)


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

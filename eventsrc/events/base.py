"""The envelope every event carries, as the common base of all event models.

Events are flat JSON objects: the envelope fields below plus the fields of the event
type, discriminated by ``type``. Flat keeps decoding to one ``validate_json`` call.
"""

from __future__ import annotations

from abc import abstractmethod
from datetime import datetime
from typing import ClassVar

from pydantic import BaseModel, ConfigDict


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

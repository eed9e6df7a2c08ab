"""What every decide function shares: the origin stamped on the events it makes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

NewId = Callable[[], str]


class Command(BaseModel):
    """Base of command models: frozen, and unknown fields are an error (typos show)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


@dataclass(frozen=True, slots=True)
class Origin:
    """Who decides: stamped into every event's envelope (producer, leader epoch)."""

    producer: str = "coordinator"
    epoch: int | None = None

    def envelope(
        self,
        *,
        now: datetime,
        new_id: NewId,
        causation_id: str | None = None,
        correlation_id: str | None = None,
    ) -> dict[str, Any]:
        """Envelope fields for one new event."""
        return {
            "event_id": new_id(),
            "time": now,
            "producer": self.producer,
            "epoch": self.epoch,
            "causation_id": causation_id,
            "correlation_id": correlation_id,
        }


COORDINATOR = Origin()
"""The default origin: the coordinator, before any leader epoch."""

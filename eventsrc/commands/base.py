"""What every decide function shares: the command base, and the stamp of the events it
makes (origin, time and id factory, defined with the envelope in ``eventsrc.events``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from eventsrc.events.stamp import COORDINATOR, NewId, Origin, Stamp

__all__ = ["COORDINATOR", "Command", "NewId", "Origin", "Stamp"]


class Command(BaseModel):
    """Base of command models: frozen, and unknown fields are an error (typos show)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

"""The envelope of new events: who writes them, when, and their fresh ids, given once.

A decision's events share one ``Stamp``: its origin (producer, leader epoch), its time
(passed in, never read here, so decisions replay) and the factory of event ids. Each
``envelope()`` call is the envelope of one new event.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from eventsrc.events.ids import new_event_id

NewId = Callable[[], str]


@dataclass(frozen=True, slots=True)
class Origin:
    """Who decides: stamped into every event's envelope (producer, leader epoch)."""

    producer: str = "coordinator"
    epoch: int | None = None

    def stamp(self, now: datetime, *, new_id: NewId = new_event_id) -> Stamp:
        """The stamp of events this origin makes at ``now``."""
        return Stamp(now, self, new_id)


COORDINATOR = Origin()
"""The default origin: the coordinator, before any leader epoch."""


@dataclass(frozen=True, slots=True)
class Stamp:
    """Origin, time and id factory of the events one decision (or one report) makes."""

    now: datetime
    origin: Origin = COORDINATOR
    new_id: NewId = new_event_id

    def envelope(
        self, *, causation_id: str | None = None, correlation_id: str | None = None
    ) -> dict[str, Any]:
        """Envelope fields for one new event (a fresh id each call)."""
        return {
            "event_id": self.new_id(),
            "time": self.now,
            "producer": self.origin.producer,
            "epoch": self.origin.epoch,
            "causation_id": causation_id,
            "correlation_id": correlation_id,
        }


def is_fenced(epoch: int | None, leader_epoch: int) -> bool:
    """Whether an event stamped with ``epoch`` comes from a deposed leader: its epoch is
    older than ``leader_epoch``, the newest ``LeaderElected`` stored before it. An event
    without an epoch counts as epoch 0. Projections and nodes both apply this rule."""
    return (epoch or 0) < leader_epoch


def is_newer_election(epoch: int | None, leader_epoch: int) -> bool:
    """Whether a ``LeaderElected`` stamped with ``epoch`` counts: an election must bring an
    epoch newer than ``leader_epoch``, the newest counted so far; any other one is fenced
    and changes nothing. Projections and nodes both apply this rule."""
    return (epoch or 0) > leader_epoch

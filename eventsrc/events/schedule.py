"""Schedule events: the aggregate ``evt.schedule.<name>``.

A schedule starts a task at each occurrence of its timing (a cron expression in a time
zone, or a fixed interval). The leading coordinator records each occurrence it handles
as one event naming the occurrence time: ``ScheduleFired`` (a task was started for it)
or ``ScheduleSkipped`` (missed occurrences not run). Each is appended with the
schedule's last sequence as expected, so one occurrence is handled at most once across
coordinators, fail-overs and restarts.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from eventsrc.events.base import EMBEDDED, EventBase, open_schema
from eventsrc.events.ids import Token
from eventsrc.events.subjects import schedule_subject
from eventsrc.events.task import DAY, TaskSpec

MAX_SCHEDULE_NAME = 100
"""Characters of a schedule name: its tasks' ids add the occurrence time to it."""

CatchUp = Literal["skip", "once"]
"""What to do with occurrences missed while no coordinator ran: record a skip, or fire
the latest of them once."""


class ScheduleTiming(BaseModel):
    """When a schedule fires: ``cron`` (five fields, in time zone ``tz``) or ``every_s``
    (seconds, aligned to the Unix epoch), one of the two.

    An occurrence handled more than ``grace_s`` after its time counts as missed and is
    dealt with as ``catch_up`` says.
    """

    model_config = ConfigDict(
        frozen=True, extra="forbid", allow_inf_nan=False, json_schema_extra=open_schema
    )

    cron: str | None = Field(default=None, min_length=1, max_length=200)
    tz: str = Field(default="UTC", min_length=1, max_length=100)
    every_s: int | None = Field(default=None, ge=1, le=366 * int(DAY))
    catch_up: CatchUp = "skip"
    grace_s: float = Field(default=60.0, ge=0, le=DAY)

    @model_validator(mode="after")
    def _one_timing(self) -> ScheduleTiming:
        if (self.cron is None) == (self.every_s is None):
            raise ValueError("give either cron or every_s, one of the two")
        if self.every_s is not None and self.tz != "UTC":
            raise ValueError("tz applies to cron schedules only; every_s counts in UTC")
        return self


class _ScheduleEvent(EventBase):
    name: Annotated[Token, Field(max_length=MAX_SCHEDULE_NAME)]

    @property
    def subject(self) -> str:
        return schedule_subject(self.name)


class ScheduleAdded(_ScheduleEvent):
    """A schedule exists from ``anchor`` on: occurrences after it fire."""

    type: Literal["ScheduleAdded"] = "ScheduleAdded"
    timing: Annotated[ScheduleTiming, EMBEDDED]
    task: Annotated[TaskSpec, EMBEDDED]
    anchor: datetime
    added_by: str = ""


class SchedulePaused(_ScheduleEvent):
    """No occurrence fires until resumed."""

    type: Literal["SchedulePaused"] = "SchedulePaused"
    reason: str = ""


class ScheduleResumed(_ScheduleEvent):
    """Occurrences after ``anchor`` fire again; those while paused never do."""

    type: Literal["ScheduleResumed"] = "ScheduleResumed"
    anchor: datetime


class ScheduleRemoved(_ScheduleEvent):
    """The schedule is gone; its name may be added again."""

    type: Literal["ScheduleRemoved"] = "ScheduleRemoved"
    reason: str = ""


class ScheduleFired(_ScheduleEvent):
    """The leader started task ``task_id`` for the occurrence at ``occurrence``; with
    ``missed`` > 0 it stands for that many missed occurrences, the latest of them
    (catch-up ``once``). The task's ``TaskSubmitted`` follows."""

    type: Literal["ScheduleFired"] = "ScheduleFired"
    occurrence: datetime
    task_id: Token
    missed: int = Field(default=0, ge=0)


class ScheduleSkipped(_ScheduleEvent):
    """Occurrences from ``first`` to ``last`` (``count`` of them) were not run, and why
    (missed while no coordinator ran, with catch-up ``skip``; or the task was refused)."""

    type: Literal["ScheduleSkipped"] = "ScheduleSkipped"
    first: datetime
    last: datetime
    count: int = Field(ge=1)
    reason: str

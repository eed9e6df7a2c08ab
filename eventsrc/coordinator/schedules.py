"""The leading coordinator's schedules: the API's schedule requests, and the fire loop.

The fire loop runs only while this coordinator leads (it belongs to the leader's
service) and decides with the leader's writer: every occurrence is one event on the
schedule's aggregate, appended with the aggregate's last sequence as expected, so a
fail-over, a restart or a deposed leader still deciding can never fire one twice.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from eventsrc.commands import api
from eventsrc.commands.schedules import (
    AddSchedule,
    FireDue,
    ScheduleCommand,
    ShowSchedule,
    decide_add,
    decide_fire,
    decide_pause,
    decide_remove,
    decide_resume,
    list_schedules,
    schedule_info,
    upcoming,
)
from eventsrc.commands.tasks import Limits
from eventsrc.coordinator.tasking import TaskDesk
from eventsrc.errors import EventsrcError
from eventsrc.runner import ProjectionRunner
from eventsrc.writer import Decide, EventWriter

log = logging.getLogger(__name__)

FIRE_TICK_S = 0.2
"""How often the leader looks for due occurrences (how late one fires, at most)."""


class ScheduleDesk:
    """Schedule requests and the fire loop of the leading coordinator."""

    def __init__(
        self,
        runner: ProjectionRunner,
        writer: EventWriter,
        tasks: TaskDesk,
        *,
        limits: Limits | None = None,
    ) -> None:
        self._runner = runner
        self._writer = writer
        self._tasks = tasks
        self._limits = limits or Limits()

    async def add(self, command: AddSchedule) -> Any:
        return await self._change(decide_add, command, command.name)

    async def pause(self, command: ScheduleCommand) -> Any:
        return await self._change(decide_pause, command, command.name)

    async def resume(self, command: ScheduleCommand) -> Any:
        return await self._change(decide_resume, command, command.name)

    async def remove(self, command: ScheduleCommand) -> Any:
        events = await self._writer.execute(decide_remove, command)
        return {"name": command.name, "removed": bool(events)}

    async def list(self, command: api.Empty) -> Any:
        return {"schedules": list_schedules(self._runner.state, now=datetime.now(UTC))}

    async def next(self, command: ShowSchedule) -> Any:
        return upcoming(self._runner.state, command, now=datetime.now(UTC))

    async def _change(self, decide: Decide[Any], command: Any, name: str) -> Any:
        events = await self._writer.execute(decide, command)
        schedule = self._runner.state.schedules[name]
        info = schedule_info(schedule, now=datetime.now(UTC))
        return {**info.model_dump(mode="json"), "changed": bool(events)}

    async def fire_loop(self, deposed: Callable[[], bool]) -> None:
        """Fire due occurrences every FIRE_TICK_S until ``deposed()`` (or cancelled)."""
        decide = functools.partial(decide_fire, planned=self._tasks.reservations.counts)
        command = FireDue(limits=self._limits)
        while not deposed():
            await asyncio.sleep(FIRE_TICK_S)
            if deposed() or not self._runner.state.schedules:
                continue
            try:
                await self._writer.execute(decide, command, reservations=self._tasks.reservations)
            except asyncio.CancelledError:
                raise
            except EventsrcError as err:
                log.warning("schedules: %s", err)
            except Exception:
                log.exception("schedules: the fire pass failed; retrying")

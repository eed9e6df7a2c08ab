"""The leader's view of how full the events stream is, so that a submission is refused
before the stream is full (``commands.room``): looked at once a second, and before each
submission once the stream comes close to its limit."""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from eventsrc.commands.room import check_room, should_look_again
from eventsrc.errors import EventsrcError
from eventsrc.ports import StreamFill
from eventsrc.runner import ProjectionRunner
from eventsrc.store import JetStreamEventStore

log = logging.getLogger(__name__)

LOOK_EVERY_S: Final = 1.0


class StoreRoom:
    """How full the events stream was at the last look; ``watch`` keeps looking."""

    def __init__(self, store: JetStreamEventStore, runner: ProjectionRunner) -> None:
        self._store = store
        self._runner = runner
        self._fill: StreamFill | None = None
        self._refusing = False

    async def check(self, adding: int = 1) -> None:
        """Raise StoreFullError when ``adding`` new tasks should be refused for want of
        room; close to the limit, look at the stream first (a failed look: the last)."""
        if self._fill is None:
            return
        if should_look_again(self._fill, **self._now(), adding=adding):
            try:
                await self.look()
            except EventsrcError as err:
                log.debug("events stream fill not read: %s", err)
        check_room(self._fill, **self._now(), adding=adding)

    def _now(self) -> dict[str, int]:
        state = self._runner.state
        return {"unfinished": len(state.open_tasks), "last_seq": state.last_seq}

    async def look(self) -> None:
        """Look at the stream now; raises EventsrcError when it cannot be read."""
        self._fill = await self._store.fill()
        self._log_change()

    async def watch(self) -> None:
        """Look every ``LOOK_EVERY_S`` until cancelled; a failed look keeps the last one."""
        while True:
            try:
                await self.look()
            except EventsrcError as err:
                log.debug("events stream fill not read: %s", err)
            await asyncio.sleep(LOOK_EVERY_S)

    def _log_change(self) -> None:
        assert self._fill is not None
        try:
            check_room(self._fill, **self._now())
        except EventsrcError as err:
            if not self._refusing:
                log.warning("refusing new tasks: %s", err)
            self._refusing = True
            return
        if self._refusing:
            log.warning("the events stream has room again: new tasks are accepted")
        self._refusing = False

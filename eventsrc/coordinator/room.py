"""The leader's view of how full the events stream is, so that a submission is refused
before the stream is full (``commands.room``): looked at once a second, before the first
submission, and before each submission once the stream comes close to its limit. The
submissions that want a look at the same time share one."""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Final

from eventsrc.commands.room import check_room, should_look_again
from eventsrc.errors import EventsrcError, StoreFullError
from eventsrc.ports import StreamFill
from eventsrc.runner import ProjectionRunner
from eventsrc.store import JetStreamEventStore

log = logging.getLogger(__name__)

LOOK_EVERY_S: Final = 1.0
FRESH_FOR_S: Final = 0.05
"""A look this recent serves a submission as a fresh one. What was stored since is
estimated by the sequence anyway, so only the sizes of those events are guessed: at the
2-3k appends a second a flushing server takes, 50 ms is at most ~150 events (~50 tasks),
against a margin of 5% of the limit. It bounds the looks to about 20 a second however
many submissions come, where one stream info takes about a millisecond."""


class StoreRoom:
    """How full the events stream was at the last look; ``watch`` keeps looking."""

    def __init__(self, store: JetStreamEventStore, runner: ProjectionRunner) -> None:
        self._store = store
        self._runner = runner
        self._fill: StreamFill | None = None
        self._looked_at = -math.inf  # loop time when the last look that succeeded began
        self._looking: asyncio.Task[None] | None = None
        self._refusing = False

    async def check(self, adding: int = 1) -> None:
        """Raise StoreFullError when ``adding`` new tasks should be refused for want of
        room. Before the first look, and close to the limit, look at the stream first (a
        failed look: the last; no look at all yet: accept, as the append will tell)."""
        if self._fill is None or should_look_again(self._fill, **self._now(), adding=adding):
            await self._fresh_look()
        if self._fill is not None:
            try:
                check_room(self._fill, **self._now(), adding=adding, refusing=self._refusing)
            except StoreFullError as err:
                if adding == 1:  # a batch too big to fit says nothing about one task
                    self._refuse(err)
                raise

    async def _fresh_look(self) -> None:
        """Look, unless the last look is under ``FRESH_FOR_S`` old; callers at the same
        time share the look in flight. A failed look keeps the last one."""
        if self._looking is None:
            if asyncio.get_running_loop().time() - self._looked_at < FRESH_FOR_S:
                return
            self._looking = asyncio.create_task(self.look(), name="room-look")
            self._looking.add_done_callback(self._looked)
        try:
            # shield: a caller that gives up does not cancel the others' look.
            await asyncio.shield(self._looking)
        except EventsrcError as err:
            log.debug("events stream fill not read: %s", err)

    def _looked(self, task: asyncio.Task[None]) -> None:
        if self._looking is task:
            self._looking = None
        if not task.cancelled():
            task.exception()  # retrieved: the callers log it, if any are left

    def _now(self) -> dict[str, int]:
        state = self._runner.state
        return {"unfinished": len(state.open_tasks), "last_seq": state.last_seq}

    async def look(self) -> None:
        """Look at the stream now; raises EventsrcError when it cannot be read."""
        began = asyncio.get_running_loop().time()
        self._fill = await self._store.fill()
        self._looked_at = max(self._looked_at, began)
        self._log_change()

    async def watch(self) -> None:
        """Look every ``LOOK_EVERY_S`` until cancelled; a failed look keeps the last one."""
        while True:
            try:
                await self.look()
            except EventsrcError as err:
                log.debug("events stream fill not read: %s", err)
            await asyncio.sleep(LOOK_EVERY_S)

    def _refuse(self, err: StoreFullError) -> None:
        if not self._refusing:
            log.warning("refusing new tasks: %s", err)
        self._refusing = True

    def _log_change(self) -> None:
        assert self._fill is not None
        try:
            check_room(self._fill, **self._now(), refusing=self._refusing)
        except StoreFullError as err:
            self._refuse(err)
            return
        if self._refusing:
            log.warning("the events stream has room again: new tasks are accepted")
        self._refusing = False

"""A steady load of submissions through a partition, and the tally of how tasks ended.

The submitter runs in the tests' own (root) namespace: a ``word-count`` task every
``PACE_S``, each tried again with the same task id until it is accepted (resubmitting is
idempotent), on a connection per try as the CLI makes one. ``tally`` then waits for
every task stored under the load's prefix and checks each ends exactly once.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import eventsrc
from eventsrc.client import Cluster
from eventsrc.errors import EventsrcError
from tests.deploy.topology import check_one_end
from tests.e2e.conftest import TERMINAL, poll, stored_task_ids, task_events, wait_state
from tests.waiting import until, until_awaited

PACE_S = 0.25
SUBMIT_DEADLINE_S = 60.0
END_DEADLINE_S = 90.0
MAX_ATTEMPTS = 10
"""A cut server expires the nodes that were on it (their heartbeats stop for longer
than ``stale_after``), and a task loses an attempt with each such node; on a loaded
machine the default of 3 can give up ("attempts were lost with their nodes"), which is
the designed end of a task that keeps losing its nodes, not what these tests are about."""


@dataclass
class Load:
    """Background submissions until ``stop``; what was accepted and how often it retried."""

    urls: str
    prefix: str
    accepted: set[str] = field(default_factory=set)
    retries: Counter[str] = field(default_factory=Counter)
    retried_ids: set[str] = field(default_factory=set)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    def retried(self) -> str:
        """How many submissions needed more than one try, and the errors of those tries."""
        return f"{len(self.retried_ids)} submissions retried ({dict(self.retries)})"

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"load-{self.prefix}")

    async def until_accepted(self, count: int) -> None:
        """Until at least ``count`` submissions were accepted."""
        await until(lambda: len(self.accepted) >= count, f"{count} accepted tasks", 60, 0.05)

    async def stop(self) -> None:
        """Stop submitting and wait for the submissions in flight to be accepted."""
        self._stop.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        async with asyncio.TaskGroup() as group:
            i = 0
            while not self._stop.is_set():
                group.create_task(self._submit(f"{self.prefix}-{i:03d}", i))
                i += 1
                await asyncio.sleep(PACE_S)

    async def _submit(self, task_id: str, words: int) -> None:
        errors: list[EventsrcError] = []

        async def taken() -> bool:
            try:
                async with eventsrc.connect(self.urls, project=False) as client:
                    await client.submit(
                        "word-count",
                        {"text": "w " * words},
                        task_id=task_id,
                        max_attempts=MAX_ATTEMPTS,
                    )
            except EventsrcError as err:
                self.retries[type(err).__name__] += 1
                self.retried_ids.add(task_id)
                errors.append(err)
                return False
            return True

        await until_awaited(
            taken,
            lambda: f"{task_id} to be accepted (last error: {errors[-1]})",
            SUBMIT_DEADLINE_S,
            0.2,
        )
        self.accepted.add(task_id)


@dataclass(frozen=True)
class Tally:
    """How the tasks of a test ended."""

    accepted: int
    stored: int
    ended: int
    duplicates: int
    """(task, attempt) pairs placed twice plus tasks with more than one terminal state."""
    late: int
    """Results of requeued attempts that came anyway, kept for audit only."""
    states: dict[str, int]
    problems: tuple[str, ...] = ()
    """What each duplicate was."""
    why_not: tuple[str, ...] = ()
    """Why each task that did not succeed ended as it did."""

    def line(self) -> str:
        return (
            f"accepted {self.accepted}, stored {self.stored}, ended {self.ended}, "
            f"duplicates {self.duplicates}, late results {self.late}, states {self.states}"
            + (f" ({'; '.join(self.why_not)})" if self.why_not else "")
        )


async def events_of(client: Cluster, task_id: str) -> list[object] | None:
    """A task's events, or None while the cluster still recovers (a read timed out)."""
    try:
        return [r.event for r in await task_events(client, task_id)]
    except EventsrcError:
        return None


async def stored_ids(client: Cluster) -> set[str] | None:
    """The tasks stored, or None while a stream has no leader (a healed server may make
    JetStream elect again)."""
    try:
        return await stored_task_ids(client)
    except EventsrcError:
        return None


async def tally(urls: str, prefixes: Sequence[str], accepted: set[str]) -> Tally:
    """Wait until every stored task of ``prefixes`` ends; count how they ended.

    A task whose submission is stored counts even if its reply was lost in the cut (the
    submitter then tried again with the same id, which finds it)."""
    async with eventsrc.connect(urls, project=False) as client:
        every = await poll(functools.partial(stored_ids, client), "the stored task ids")
        stored = {t for t in every if t.startswith(tuple(prefixes))}
        states: Counter[str] = Counter()
        late = 0
        problems: list[str] = []
        why_not: list[str] = []
        for task_id in sorted(stored):
            task = await wait_state(client, task_id, TERMINAL, timeout=END_DEADLINE_S)
            states[task.state] += 1
            if task.state != "succeeded":
                why_not.append(f"{task_id} {task.state}: {task.reason or task.error}")
            events = await poll(functools.partial(events_of, client, task_id), task_id)
            try:
                late += check_one_end(task_id, task.attempts, events)
            except AssertionError as err:
                problems.append(str(err))
    return Tally(
        accepted=len(accepted),
        stored=len(stored),
        ended=sum(states.values()),
        duplicates=len(problems),
        late=late,
        states=dict(states),
        problems=tuple(problems),
        why_not=tuple(why_not),
    )


def since(start: float) -> float:
    """Seconds since ``start`` (``time.monotonic``)."""
    return time.monotonic() - start

"""One occurrence fires at most once: two coordinators deciding the same occurrence
race on the schedule's aggregate in a real JetStream, and the second loses.

The second decides from a state that has not seen the first's fire (a deposed leader,
or a new one not caught up): the server refuses its append by the expected sequence,
and deciding again on the caught-up state finds nothing due.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import nats
import pytest

from eventsrc.commands.base import Origin
from eventsrc.commands.schedules import AddSchedule, FireDue, decide_add, decide_fire
from eventsrc.errors import ConcurrencyError
from eventsrc.events import ScheduleFired, ScheduleTiming, TaskSpec, TaskSubmitted
from eventsrc.ports import StoredEvent
from eventsrc.projections.canonical import from_canonical, to_canonical
from eventsrc.runner import ProjectionRunner
from eventsrc.store import JetStreamEventStore
from eventsrc.writer import EventWriter, expected_seqs
from tests.conftest import MakeServer

T = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
async def store(make_server: MakeServer) -> AsyncIterator[JetStreamEventStore]:
    server = make_server()
    assert server.url is not None
    nc = await nats.connect(server.url)
    try:
        store = JetStreamEventStore(nc)
        await store.ensure_streams()
        yield store
    finally:
        await nc.close()


async def test_a_second_coordinator_cannot_fire_an_occurrence_again(
    store: JetStreamEventStore,
) -> None:
    now = [T]
    async with ProjectionRunner(store, follow_heartbeats=False) as runner:
        first = EventWriter(store, runner, origin=Origin("c1"), clock=lambda: now[0])
        timing = ScheduleTiming(every_s=10)
        add = AddSchedule(name="tick", timing=timing, task=TaskSpec(skills=("python",)))
        await first.execute(decide_add, add)
        stale = from_canonical(to_canonical(runner.state))

        now[0] = T + timedelta(seconds=11)
        fired = await first.execute(decide_fire, FireDue())
        assert [e.occurrence for e in fired if isinstance(e, ScheduleFired)] == [
            T + timedelta(seconds=10)
        ]

        # The other coordinator, from the state before that fire: refused by the server.
        second = EventWriter(store, runner, origin=Origin("c2"), clock=lambda: now[0])
        again = decide_fire(stale, FireDue(), stamp=second.stamp())
        assert [e.occurrence for e in again if isinstance(e, ScheduleFired)] == [
            T + timedelta(seconds=10)
        ]
        with pytest.raises(ConcurrencyError):
            await second.append_chain(again, expected_seqs(stale, again))
        # Deciding again on the caught-up state: nothing is due any more.
        assert await second.execute(decide_fire, FireDue()) == ()

        stored = [r.event async for r in store.read() if isinstance(r, StoredEvent)]
    fires = [e for e in stored if isinstance(e, ScheduleFired)]
    submissions = [e for e in stored if isinstance(e, TaskSubmitted)]
    assert [(e.producer, e.occurrence) for e in fires] == [("c1", T + timedelta(seconds=10))]
    assert [e.task_id for e in submissions] == ["tick-20260601T120010Z"]

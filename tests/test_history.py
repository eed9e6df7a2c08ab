"""Following a task's output from the streams (eventsrc.history) on a real nats-server."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncGenerator
from typing import cast

import nats
import pytest

from eventsrc.events import Event, OutputLine, TaskOutput
from eventsrc.history import follow_task_output, follow_tasks
from eventsrc.projections.state import ClusterState, TaskView
from eventsrc.store import JetStreamEventStore
from tests.conftest import MakeServer
from tests.factories import envelope, one_of_each

TYPES = ("LeaderElected", "TaskSubmitted", "TaskAssigned", "TaskStarted", "TaskSucceeded")


def output(node_id: str, attempt: int, text: str) -> TaskOutput:
    return TaskOutput(
        **envelope(f"node:{node_id}"),
        task_id="t1",
        node_id=node_id,
        attempt=attempt,
        lines=(OutputLine(kind="stdout", text=text),),
    )


def attempt_one_events() -> dict[str, Event]:
    """One event of each type in ``TYPES`` by type, the result that of attempt 1."""
    events: dict[str, Event] = {e.type: e for e in one_of_each() if e.type in TYPES}
    events["TaskSucceeded"] = events["TaskSucceeded"].model_copy(update={"attempt": 1})
    return events


async def test_the_follow_shows_only_output_of_the_tasks_own_assignments(
    make_server: MakeServer,
) -> None:
    """Any node may publish ``out.<task>.<itself>``: a batch from a node the task was
    never assigned to, or of an attempt that node never ran, is not the task's output."""
    server = make_server()
    assert server.url is not None
    events = attempt_one_events()
    nc = await nats.connect(server.url)
    try:
        store = JetStreamEventStore(nc)
        await store.ensure_streams()
        for name in TYPES[:-1]:  # assigned to n1, attempt 1, running
            await store.append(events[name])
        for batch in (output("n1", 1, "real 1"), output("evil", 1, "fake"), output("n1", 2, "x")):
            await store.append(batch)

        seen: list[TaskView | TaskOutput] = []

        async def follow() -> None:
            async for item in follow_task_output(store, "t1"):
                seen.append(item)

        following = asyncio.create_task(follow())
        await asyncio.sleep(0.5)  # the follow is live now
        await store.append(output("evil", 1, "fake live"))
        await store.append(output("n1", 1, "real 2"))
        await asyncio.sleep(0.3)
        await store.append(events["TaskSucceeded"])
        await asyncio.wait_for(following, 10)
    finally:
        await nc.close()
    lines = [line.text for item in seen if isinstance(item, TaskOutput) for line in item.lines]
    assert lines == ["real 1", "real 2"], seen
    last = seen[-1]
    assert isinstance(last, TaskView) and last.state == "succeeded", seen


@pytest.mark.parametrize("ended_first", [False, True])
async def test_output_stored_before_the_end_is_shown_once_the_task_ended(
    make_server: MakeServer, ended_first: bool
) -> None:
    """A follow that begins after the task ended still shows its own batches only."""
    server = make_server()
    assert server.url is not None
    events = attempt_one_events()
    nc = await nats.connect(server.url)
    try:
        store = JetStreamEventStore(nc)
        await store.ensure_streams()
        for name in TYPES[:-1]:
            await store.append(events[name])
        await store.append(output("evil", 1, "fake"))
        await store.append(output("n1", 1, "real"))
        if ended_first:
            await store.append(events["TaskSucceeded"])
        seen = []
        async with asyncio.timeout(10):
            follow = follow_task_output(store, "t1")
            async for item in follow:
                seen.append(item)
                if not ended_first and isinstance(item, TaskView) and not item.terminal:
                    await store.append(events["TaskSucceeded"])
    finally:
        await nc.close()
    lines = [line.text for item in seen if isinstance(item, TaskOutput) for line in item.lines]
    assert lines == ["real"], seen


async def test_watching_all_tasks_keeps_no_state_for_stray_task_ids(
    make_server: MakeServer,
) -> None:
    """``tasks --watch`` runs for days: events under ids never submitted (a stray or
    hostile publish) must not each leave a folded state behind."""
    server = make_server()
    assert server.url is not None
    events: dict[str, Event] = {e.type: e for e in one_of_each() if e.type in TYPES}
    nc = await nats.connect(server.url)
    try:
        store = JetStreamEventStore(nc)
        await store.ensure_streams()
        await store.append(events["LeaderElected"])
        gc.collect()
        before = sum(isinstance(o, ClusterState) for o in gc.get_objects())
        for i in range(30):
            stray = events["TaskStarted"].model_copy(
                update={"task_id": f"ghost{i}", "event_id": envelope()["event_id"]}
            )
            await store.append(stray)
        await store.append(events["TaskSubmitted"])
        # An async generator (typed as an iterator): closed below, its consumer with it.
        watch = cast(AsyncGenerator[TaskView, None], follow_tasks(store, from_seq=1))
        try:
            async with asyncio.timeout(10):
                task = await anext(watch)
            assert task.task_id == "t1"
            gc.collect()
            held = sum(isinstance(o, ClusterState) for o in gc.get_objects()) - before
        finally:
            await watch.aclose()
    finally:
        await nc.close()
    assert held <= 1, f"{held} task states kept for one real task"

"""Full disks: a bounded events stream and a JetStream store at its limit refuse new
tasks in one line, the tasks already accepted still end, and the coordinator takes
work again without a restart once there is room."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client
from nats.js.errors import APIError

import eventsrc
import eventsrc.node.agent
import eventsrc.node.attempts
import eventsrc.store.assignments
from eventsrc.client import Cluster
from eventsrc.config import CoordinatorConfig
from eventsrc.coordinator.app import Coordinator
from eventsrc.errors import RefusedError, StoreFullError
from eventsrc.node.agent import NodeAgent
from eventsrc.node.builtins import builtin_skill
from eventsrc.ports import EVENTS_STREAM
from eventsrc.store import JetStreamEventStore
from eventsrc.store.assignments import assignment_consumer_name
from eventsrc.store.server import EmbeddedServer
from tests.conftest import MakeServer
from tests.e2e.conftest import run_cli
from tests.waiting import until, until_awaited

EVENTS_MAX_BYTES = 256 * 1024
STORE_MAX_BYTES = 4 * 1024 * 1024
OUTPUT_MAX_BYTES = 1024 * 1024  # the smallest allowed: the output stream reserves it


@asynccontextmanager
async def _node(
    url: str, gate: asyncio.Event | None = None, entered: asyncio.Event | None = None
) -> AsyncIterator[list[str]]:
    """A node running ``count`` tasks (each setting ``entered`` and waiting for ``gate``
    when given); yields the ids of the tasks it ran to the end."""
    nc = await nats.connect(url)
    ran: list[str] = []

    async def count(task: dict[str, Any]) -> str:
        if entered is not None:
            entered.set()
        if gate is not None:
            await gate.wait()
        ran.append(task["task_id"])
        return "ran"

    agent = NodeAgent(
        nc,
        JetStreamEventStore(nc),
        node_id="disk",
        skills={"search": builtin_skill("search")},
        executors={},
        heartbeat_interval=0.5,
    )
    agent.handlers["count"] = count
    try:
        await agent.start()
        yield ran
    finally:
        await agent.close(leave=True)
        await nc.close()


async def _joined(cluster: Cluster) -> None:
    async def joined() -> bool:
        nodes = (await cluster.api.call("nodes"))["nodes"]
        return any(n["node_id"] == "disk" and n["state"] == "alive" for n in nodes)

    await until_awaited(joined, "the node to join", 10, 0.05)


async def _all_end(cluster: Cluster, task_ids: list[str]) -> dict[str, int]:
    states: dict[str, int] = {}
    for task_id in task_ids:
        state = (await cluster.wait(task_id, 30)).state
        states[state] = states.get(state, 0) + 1
    return states


async def test_a_bounded_events_stream_refuses_new_tasks_before_it_is_full(
    make_server: MakeServer, tmp_path: Path
) -> None:
    server = make_server()
    assert server.url is not None
    config = CoordinatorConfig(
        nats_url=server.url, stale_after=30, sweep_interval=0.5, events_max_bytes=EVENTS_MAX_BYTES
    )
    async with (
        Coordinator(config),
        _node(server.url) as ran,
        eventsrc.connect(server.url, project=False) as cluster,
    ):
        await _joined(cluster)
        accepted: list[str] = []
        with pytest.raises(RefusedError, match="events stream has no room") as refused:
            for _ in range(5_000):
                accepted.append((await cluster.submit(["search"], None, task_type="count")).task_id)
        assert "events_max_bytes" in str(refused.value)
        assert len(accepted) >= 20

        cli = await run_cli(
            ["submit", "--skill", "search", "--payload", "{}"], cwd=tmp_path, url=server.url
        )
        assert cli.code == 1, cli
        lines = cli.err.strip().splitlines()
        assert len(lines) == 1 and "no room" in lines[0] and "events_max_bytes" in lines[0], cli

        # Everything accepted ends, in the room that was kept for it.
        states = await _all_end(cluster, accepted)
        assert states == {"succeeded": len(accepted)}, states
        assert sorted(ran) == sorted(accepted)
        info = await cluster.api.call("status")  # still serving
        print(f"accepted {len(accepted)}, all succeeded; refused at {EVENTS_MAX_BYTES} bytes")

        # The operator raises the limit (as `nats stream edit --max-bytes` does): no restart.
        nc = await nats.connect(server.url)
        try:
            js = nc.jetstream()
            stream = await js.stream_info(EVENTS_STREAM)
            stream.config.max_bytes = 4 * EVENTS_MAX_BYTES
            await js.update_stream(stream.config)
        finally:
            await nc.close()

        async def accepted_again() -> Any:
            # The leader reads the new limit at its next look (a refused submission
            # stores nothing, so asking again is safe): no restart either way.
            try:
                return await cluster.run(["search"], None, timeout=30, task_type="count")
            except RefusedError:
                return None

        again = await until_awaited(accepted_again, "a task accepted under the new limit", 10)
        assert again.state == "succeeded", again
        assert info["epoch"] >= 1


async def _fill_store(nc: Client) -> int:
    """Another application's data fills the server's JetStream store; its size."""
    js = nc.jetstream()
    await js.add_stream(name="OTHER", subjects=["other.>"])
    stored = 0
    with pytest.raises(APIError, match="insufficient resources"):
        for _ in range(10_000):
            await js.publish("other.data", b"x" * 16_000)
            stored += 16_000
    return stored


async def test_a_full_jetstream_store_refuses_then_recovers_without_a_restart(
    tmp_path: Path,
) -> None:
    server = EmbeddedServer(tmp_path / "nats", port=0, max_file_store=STORE_MAX_BYTES)
    await server.start_async()
    try:
        assert server.url is not None
        config = CoordinatorConfig(
            nats_url=server.url,
            stale_after=30,
            sweep_interval=0.5,
            output_max_bytes=OUTPUT_MAX_BYTES,
        )
        gate = asyncio.Event()
        nc = await nats.connect(server.url)
        async with (
            Coordinator(config),
            _node(server.url, gate) as ran,
            eventsrc.connect(server.url, project=False) as cluster,
        ):
            await _joined(cluster)
            running = await cluster.submit(["search"], None, task_type="count")
            filled = await _fill_store(nc)

            with pytest.raises(RefusedError, match="no room") as refused:
                await cluster.submit(["search"], None, task_type="count")
            assert "free disk space" in str(refused.value)
            cli = await run_cli(["submit", "--skill", "search"], cwd=tmp_path, url=server.url)
            assert cli.code == 1, cli
            lines = cli.err.strip().splitlines()
            assert len(lines) == 1 and "no room" in lines[0] and "max_file_store" in lines[0], cli

            # The accepted task finishes while the store is full: its result waits.
            gate.set()
            await until_awaited(
                lambda: _state(cluster, running.task_id, "assigned", "running"),
                "the accepted task to stay unfinished while nothing can be stored",
                5,
            )
            await nc.jetstream().delete_stream("OTHER")  # space freed: no restart
            done = await cluster.wait(running.task_id, 30)
            assert done.state == "succeeded", done
            assert ran == [running.task_id]
            again = await cluster.run(["search"], None, timeout=30, task_type="count")
            assert again.state == "succeeded", again
            print(f"store full after {filled:,} bytes of other data; recovered, no restart")
        await nc.close()
    finally:
        await asyncio.to_thread(server.stop)


async def _state(cluster: Cluster, task_id: str, *states: str) -> bool:
    return (await cluster.api.call("get", {"task_id": task_id}))["state"] in states


async def test_a_store_too_small_for_the_stream_limits_says_which_to_change(
    tmp_path: Path,
) -> None:
    server = EmbeddedServer(tmp_path / "nats", port=0, max_file_store=STORE_MAX_BYTES)
    await server.start_async()
    try:
        assert server.url is not None
        # The output stream's default limit (256 MiB) is reserved in the store.
        config = CoordinatorConfig(nats_url=server.url)
        with pytest.raises(StoreFullError, match="cannot reserve room") as refused:
            async with Coordinator(config):
                pass
        assert "output_max_bytes" in str(refused.value) and "max_file_store" in str(refused.value)
    finally:
        await asyncio.to_thread(server.stop)


HELD_FULL_S = 4.0
"""How long the next tests keep the store full: past the (shortened) result retry limit
and the (shortened) ack wait, so giving up or a missed keep-alive would run it again."""


@pytest.fixture
def short_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Shorter limits than the defaults, so a store full for seconds outlasts them all."""
    monkeypatch.setattr(eventsrc.node.attempts, "RESULT_RETRY_S", 1.0)
    monkeypatch.setattr(eventsrc.node.attempts, "RESULT_BACKOFF_MAX_S", 0.5, raising=False)
    monkeypatch.setattr(eventsrc.store.assignments, "ASSIGNMENT_ACK_WAIT_S", 2.0)
    monkeypatch.setattr(eventsrc.node.agent, "KEEP_ALIVE_S", 0.5)


async def _held_full(task_id: str, ran: list[str]) -> None:
    """For HELD_FULL_S the task has run once, not again (polled throughout)."""
    end = time.monotonic() + HELD_FULL_S

    def held() -> bool:
        assert ran == [task_id], f"the task ran again while the store was full: {ran}"
        return time.monotonic() > end

    await until(held, "the store to stay full", HELD_FULL_S + 10, 0.2)


async def _full_store_case(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, *, fill_before_started: bool
) -> None:
    """A task ends while the store is full for longer than every retry limit; once space
    is freed its result is stored and it has run exactly once."""
    server = EmbeddedServer(tmp_path / "nats", port=0, max_file_store=STORE_MAX_BYTES)
    await server.start_async()
    try:
        assert server.url is not None
        config = CoordinatorConfig(
            nats_url=server.url, stale_after=60, output_max_bytes=OUTPUT_MAX_BYTES
        )
        gate, entered = asyncio.Event(), asyncio.Event()
        nc = await nats.connect(server.url)
        async with (
            Coordinator(config),
            _node(server.url, gate, entered) as ran,
            eventsrc.connect(server.url, project=False) as cluster,
        ):
            await _joined(cluster)
            task = await cluster.submit(["search"], None, task_type="count")
            await until(entered.is_set, "the node to start the task", 10)
            started = time.monotonic()
            if not fill_before_started:
                await until_awaited(
                    lambda: _state(cluster, task.task_id, "running"), "TaskStarted stored", 10
                )
            await _fill_store(nc)
            if fill_before_started:
                tried = started + eventsrc.node.agent.STARTED_AFTER_S + 0.5
                assert time.monotonic() < tried - 1.0, "the store filled too slowly for this test"
                await until(lambda: time.monotonic() > tried, "the TaskStarted to be tried", 10)
            gate.set()
            await until(lambda: ran, "the task to end", 10)
            await _held_full(task.task_id, ran)
            # Marked in progress all along: JetStream never delivered it again.
            work = await nc.jetstream().consumer_info(
                EVENTS_STREAM, assignment_consumer_name("disk")
            )
            assert (work.num_ack_pending, work.num_redelivered) == (1, 0), work
            await nc.jetstream().delete_stream("OTHER")
            done = await cluster.wait(task.task_id, 30)
            assert done.state == "succeeded", done
            assert done.result == "ran", done
            assert ran == [task.task_id]
        assert "waits for room: the NATS servers have no room" in caplog.text
        if fill_before_started:
            assert "TaskStarted not stored" in caplog.text
        await nc.close()
    finally:
        await asyncio.to_thread(server.stop)


@pytest.mark.usefixtures("short_waits")
async def test_a_result_waits_for_room_as_long_as_the_store_stays_full(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="eventsrc.node")
    await _full_store_case(tmp_path, caplog, fill_before_started=False)


@pytest.mark.usefixtures("short_waits")
async def test_a_task_started_that_cannot_be_stored_keeps_the_result(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Long enough to fill the store between the task's start and its TaskStarted.
    monkeypatch.setattr(eventsrc.node.agent, "STARTED_AFTER_S", 2.0)
    caplog.set_level(logging.INFO, logger="eventsrc.node")
    await _full_store_case(tmp_path, caplog, fill_before_started=True)

"""Fixtures for replay_tools: a fresh server per test, seeding, and running the CLI.

The CLI runs its own event loop (``asyncio.run``), so tests that call ``main`` are
plain synchronous functions and seed the streams with ``asyncio.run`` too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import nats
import pytest

from eventsrc.events import Event
from eventsrc.runner import ProjectionRunner
from eventsrc.store import JetStreamEventStore
from eventsrc.store.snapshots import SnapshotStore
from replay_tools.__main__ import main
from tests.conftest import MakeServer


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


Run = Callable[..., Result]


@pytest.fixture
def url(make_server: MakeServer) -> str:
    """A fresh JetStream server with nothing recorded yet."""
    server = make_server()
    assert server.url is not None
    return server.url


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Run:
    """``cli("rebuild", "--json", url=...)``: run ``main`` in-process, capture its output."""

    def run(*args: str, url: str | None = None) -> Result:
        capsys.readouterr()
        argv = [*args, "--nats-url", url] if url is not None else list(args)
        code = main(argv)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


async def _append(url: str, events: Sequence[Event]) -> list[int]:
    nc = await nats.connect(url)
    try:
        store = JetStreamEventStore(nc)
        await store.ensure_streams()
        return [await store.append(event) for event in events]
    finally:
        await nc.close()


def seed(url: str, events: Sequence[Event]) -> list[int]:
    """Append events in order (heartbeats land in their own stream); their sequences."""
    return asyncio.run(_append(url, events))


async def _snapshot(url: str) -> int:
    nc = await nats.connect(url)
    try:
        store = JetStreamEventStore(nc)
        snapshots = SnapshotStore(store.js)
        async with ProjectionRunner(store, snapshots=snapshots, follow_heartbeats=False) as runner:
            return await runner.snapshot()
    finally:
        await nc.close()


def take_snapshot(url: str) -> int:
    """Write the snapshot a coordinator would (through the projection runner)."""
    return asyncio.run(_snapshot(url))


async def _publish_raw(url: str, subject: str, data: bytes) -> int:
    nc = await nats.connect(url)
    try:
        ack = await nc.jetstream().publish(subject, data)
        return int(ack.seq)
    finally:
        await nc.close()


def publish_raw(url: str, subject: str, data: bytes) -> int:
    """Store bytes that are not an event (what a buggy or hostile writer could do)."""
    return asyncio.run(_publish_raw(url, subject, data))

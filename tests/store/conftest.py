"""Fixtures shared by the store's tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import nats
import pytest

from eventsrc.store import JetStreamEventStore, StreamSettings
from tests.conftest import MakeServer

SMALL_EVENTS_BYTES = 4096


@pytest.fixture
async def small_store(make_server: MakeServer) -> AsyncIterator[JetStreamEventStore]:
    """A store whose events stream holds only ``SMALL_EVENTS_BYTES``: full after a few
    events."""
    server = make_server()
    assert server.url is not None
    client = await nats.connect(server.url)
    try:
        store = JetStreamEventStore(
            client, settings=StreamSettings(events_max_bytes=SMALL_EVENTS_BYTES)
        )
        await store.ensure_streams()
        yield store
    finally:
        await client.close()

"""Stored messages as they are (eventsrc.store.raw) against a real nats-server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import nats
import nats.errors
import nats.js.errors
import pytest
from nats.aio.client import Client

from eventsrc.errors import ServerUnavailableError, StoreError, StoreFullError
from eventsrc.events import encode
from eventsrc.store import EVENTS_STREAM, HEARTBEATS_STREAM, JetStreamEventStore
from eventsrc.store.jetstream import HDR_MSG_ID, _map_error
from eventsrc.store.raw import (
    RawAck,
    StreamState,
    create_missing_streams,
    mapped_nats_errors,
    publish_raw,
    read_raw,
    stream_state,
)
from tests.conftest import MakeServer
from tests.store.test_jetstream import submitted


@pytest.fixture
async def nc(make_server: MakeServer) -> AsyncIterator[Client]:
    url = make_server().url
    assert url is not None
    client = await nats.connect(url)
    yield client
    await client.close()


async def test_streams_are_created_only_where_missing(nc: Client) -> None:
    store = JetStreamEventStore(nc)
    assert await stream_state(store, EVENTS_STREAM) is None
    await create_missing_streams(store)
    await create_missing_streams(store)  # the second time finds both and changes nothing
    empty = StreamState(messages=0, bytes=0, first_seq=0, last_seq=0)
    assert await stream_state(store, EVENTS_STREAM) == empty
    assert await stream_state(store, HEARTBEATS_STREAM) == empty


async def test_raw_messages_come_back_byte_for_byte_and_ids_deduplicate(nc: Client) -> None:
    store = JetStreamEventStore(nc)
    await create_missing_streams(store)
    event = submitted("raw")
    messages = [
        (event.subject, encode(event), {HDR_MSG_ID: event.event_id, "X-Kept": "yes"}),
        ("evt.task.raw.lifecycle", b"\x00\xff not json", {}),
        (event.subject, encode(event), {HDR_MSG_ID: event.event_id}),
    ]
    acks = await publish_raw(store, messages)
    assert acks == [RawAck(), RawAck(), RawAck(duplicate=True)]
    state = await stream_state(store, EVENTS_STREAM)
    assert state is not None and (state.messages, state.first_seq, state.last_seq) == (2, 1, 2)
    stored = [m async for m in read_raw(store, EVENTS_STREAM, last_seq=state.last_seq)]
    assert [(m.stream, m.seq, m.subject, m.data) for m in stored] == [
        (EVENTS_STREAM, 1, event.subject, encode(event)),
        (EVENTS_STREAM, 2, "evt.task.raw.lifecycle", b"\x00\xff not json"),
    ]
    assert stored[0].headers == {HDR_MSG_ID: event.event_id, "X-Kept": "yes"}
    assert stored[0].time <= stored[1].time
    assert [m.seq async for m in read_raw(store, EVENTS_STREAM, last_seq=1)] == [1]


async def test_raw_publishes_into_a_full_stream_each_get_the_refusal(
    small_store: JetStreamEventStore,
) -> None:
    events = [submitted(f"raw-full-{i}") for i in range(100)]
    messages = [(e.subject, encode(e), {HDR_MSG_ID: e.event_id}) for e in events]
    async with asyncio.timeout(10):
        acks = await publish_raw(small_store, messages)
    refused = [ack for ack in acks if ack.error is not None]
    assert refused and len(refused) < len(acks)
    assert all("maximum bytes" in (ack.error or "") for ack in refused), refused[:1]


def test_a_stray_nats_error_becomes_one_line() -> None:
    with pytest.raises(ServerUnavailableError) as caught, mapped_nats_errors():
        raise nats.errors.NoServersError
    assert str(caught.value) == (
        "NATS did not answer for the request (nats: no servers available for connection); "
        "check that the server is running and reachable"
    )


def unavailable(err_code: int | None, description: str) -> nats.js.errors.APIError:
    return nats.js.errors.ServiceUnavailableError(
        code=503, err_code=err_code, description=description
    )


@pytest.mark.parametrize(
    ("err_code", "description", "kind", "says"),
    [
        (10008, "JetStream system temporarily unavailable", ServerUnavailableError, "no leader"),
        (None, "No Responders Available For Request", ServerUnavailableError, "no leader"),
        (10077, "maximum bytes exceeded", StoreFullError, "the event store is full"),
        (10023, "insufficient resources", StoreFullError, "free disk space on the servers"),
        (10039, "jetstream not enabled for account", StoreError, "not enabled for account"),
    ],
)
def test_only_a_leaderless_503_is_unreachable(
    err_code: int | None, description: str, kind: type[Exception], says: str
) -> None:
    """A 503 is unreachable (exit 3) only for "temporarily unavailable" or no responders;
    the raw reads of the tools map nats errors by the same rule as the store."""
    mapped = _map_error(unavailable(err_code, description), subject="evt.cluster")
    with pytest.raises(StoreError) as caught, mapped_nats_errors():
        raise unavailable(err_code, description)
    assert type(caught.value) is type(mapped) is kind, caught.value
    assert says in str(caught.value) and "\n" not in str(caught.value)
    if kind is not ServerUnavailableError:
        assert "no leader" not in str(caught.value) and "retry in a few" not in str(caught.value)

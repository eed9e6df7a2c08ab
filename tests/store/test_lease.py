"""The leader lease in JetStream KV, against a real nats-server (no coordinator)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client

from eventsrc.coordinator.leadership import LeaseTiming
from eventsrc.errors import LeaseLostError, StoreError
from eventsrc.store.lease import KvLease, decode_holder, encode_holder
from tests.conftest import MakeServer
from tests.waiting import until_awaited

LEASE_S = 1.0


@pytest.fixture
async def nc(make_server: MakeServer) -> AsyncIterator[Client]:
    server = make_server()
    assert server.url is not None
    client = await nats.connect(server.url)
    yield client
    await client.close()


async def opened(nc: Client, lease_s: float = LEASE_S) -> KvLease:
    lease = KvLease(nc.jetstream(), lease_s=lease_s)
    assert await lease.open() == lease_s
    return lease


async def test_one_holder_at_a_time_and_renewal_needs_the_last_revision(nc: Client) -> None:
    first, second = await opened(nc), await opened(nc)
    revision = await first.acquire(encode_holder("c1", 0))
    assert revision is not None
    assert await second.acquire(encode_holder("c2", 0)) is None

    holder = await second.holder()
    assert holder is not None and (holder.coordinator_id, holder.revision) == ("c1", revision)

    renewed = await first.renew(revision, encode_holder("c1", 7))
    assert renewed > revision
    holder = await second.holder()
    assert holder is not None and holder.epoch == 7
    with pytest.raises(LeaseLostError):
        await first.renew(revision, encode_holder("c1", 7))  # a stale revision


async def test_an_unrenewed_lease_expires_and_the_old_holder_cannot_renew(nc: Client) -> None:
    first, second = await opened(nc), await opened(nc)
    revision = await first.acquire(encode_holder("c1", 1))
    assert revision is not None
    sent = time.monotonic()

    async def take() -> int | None:
        with contextlib.suppress(StoreError):  # a slow answer on a loaded machine: ask again
            return await second.acquire(encode_holder("c2", 0))
        return None

    await until_awaited(take, "the lease to expire", LEASE_S + 5)
    # Never before the TTL counted from the holder's send: what step-down relies on.
    assert time.monotonic() - sent >= LEASE_S
    with pytest.raises(LeaseLostError):
        await first.renew(revision, encode_holder("c1", 1))


async def test_release_frees_the_lease_only_for_its_holder(nc: Client) -> None:
    first, second = await opened(nc), await opened(nc)
    revision = await first.acquire(encode_holder("c1", 1))
    assert revision is not None
    assert not await second.release(revision - 1 if revision > 1 else revision + 5)
    assert await second.acquire(encode_holder("c2", 0)) is None

    assert await first.release(revision)
    assert await first.holder() is None
    assert await second.acquire(encode_holder("c2", 0)) is not None  # after a delete marker


async def test_a_lease_deleted_by_an_operator_is_lost_for_its_holder(nc: Client) -> None:
    lease = await opened(nc)
    revision = await lease.acquire(encode_holder("c1", 1))
    assert revision is not None
    await lease.kv.purge("leader")
    with pytest.raises(LeaseLostError):
        await lease.renew(revision, encode_holder("c1", 1))


async def test_an_existing_bucket_keeps_its_lease_time(nc: Client) -> None:
    await opened(nc, lease_s=2.0)
    other = KvLease(nc.jetstream(), lease_s=5.0)
    assert await other.open() == 2.0  # every coordinator counts with the same TTL


async def test_an_unreachable_server_is_a_store_error(make_server: MakeServer) -> None:
    server = make_server()
    assert server.url is not None
    client = await nats.connect(server.url, allow_reconnect=False)
    lease = await opened(client)
    revision = await lease.acquire(encode_holder("c1", 1))
    assert revision is not None
    await client.close()
    with pytest.raises(StoreError):
        await lease.renew(revision, encode_holder("c1", 1))


def test_a_garbled_value_shows_as_an_unknown_holder() -> None:
    assert decode_holder(b"not json", 3).coordinator_id.startswith("(unreadable")
    assert decode_holder(encode_holder("c9", 4), 5) == decode_holder(
        b'{"coordinator_id":"c9","epoch":4}', 5
    )


def test_the_holder_stops_deciding_before_the_earliest_expiry() -> None:
    timing = LeaseTiming(6.0)
    assert timing.renew_every == 2.0
    assert timing.valid_until(100.0) == 105.0 < 100.0 + timing.lease_s
    assert timing.retry_every == 1.0
    assert LeaseTiming(1.0).retry_every == pytest.approx(1 / 6)

"""Each error a handler raises crosses a real NATS server as its code and comes back to
the API client as an error of the same family, with its message."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import nats
import pytest

from eventsrc.api_client import ApiClient
from eventsrc.commands import api
from eventsrc.commands.tasks import QueueFullError
from eventsrc.coordinator.endpoints import endpoint
from eventsrc.errors import (
    ConcurrencyError,
    ConfigError,
    CoordinatorUnavailableError,
    DomainError,
    EventsrcError,
    InvalidIdError,
    InvalidRequestError,
    LeaseLostError,
    NodeIdInUseError,
    NotCaughtUpError,
    NotFoundError,
    NotLeaderError,
    PayloadTooLargeError,
    RefusedError,
    ServerUnavailableError,
    StoreError,
    StoreFullError,
)
from eventsrc.store.transport import MicroService

# (what the handler raises, the code on the wire, what the client raises)
CASES: list[tuple[EventsrcError, str, type[EventsrcError]]] = [
    (InvalidIdError("node id 'a.b' holds '.'"), api.ERR_INVALID, InvalidRequestError),
    (InvalidRequestError("spec: Field required"), api.ERR_INVALID, InvalidRequestError),
    (NotFoundError("no task t9"), api.ERR_NOT_FOUND, NotFoundError),
    (QueueFullError("100 tasks wait; submit later"), api.ERR_QUEUE_FULL, QueueFullError),
    (NodeIdInUseError("n1 is held by pid 7"), api.ERR_CONFLICT, DomainError),
    (DomainError("t1 was submitted with another spec"), api.ERR_CONFLICT, DomainError),
    (PayloadTooLargeError("600000 bytes > 524288"), api.ERR_TOO_LARGE, PayloadTooLargeError),
    (StoreFullError("the event stream is full"), api.ERR_REFUSED, RefusedError),
    (ConfigError("a setting the coordinator cannot use"), api.ERR_REFUSED, RefusedError),
    (NotCaughtUpError("the projection stopped"), api.ERR_REFUSED, RefusedError),
    (ConcurrencyError("evt.task.t1.x", 3), api.ERR_UNAVAILABLE, CoordinatorUnavailableError),
    (ServerUnavailableError("stream has no leader"), api.ERR_UNAVAILABLE, StoreError),
    (NotLeaderError("deposed by epoch 4"), api.ERR_UNAVAILABLE, NotLeaderError),
    (LeaseLostError("the lease expired"), api.ERR_UNAVAILABLE, CoordinatorUnavailableError),
]


@pytest.fixture
async def client(nats_url: str) -> AsyncIterator[ApiClient]:
    """An API client, and a service whose endpoint ``raise<i>`` raises CASES[i]."""
    nc = await nats.connect(nats_url)
    service = MicroService(
        nc, name="errors", version="0.0.1", description="", prefix=api.API_PREFIX
    )
    await service.start()
    limit = asyncio.Semaphore(len(CASES))
    for index, (error, _, _) in enumerate(CASES):

        async def fail(_: object, error: EventsrcError = error) -> None:
            raise error

        await service.add_endpoint(f"raise{index}", endpoint(api.Empty, fail), limit=limit)
    try:
        yield ApiClient(nc, timeout=5)
    finally:
        await service.stop()
        await nc.close()


async def test_every_error_comes_back_as_its_family_with_its_message(client: ApiClient) -> None:
    for index, (error, code, raised) in enumerate(CASES):
        assert api.code_for(type(error)) == code, error
        with pytest.raises(raised) as caught:
            await client.call(f"raise{index}")
        assert type(caught.value) is api.error_for(code), error
        assert str(caught.value) == str(error)


async def test_a_bad_request_comes_back_invalid_with_the_first_problem_in_one_line(
    client: ApiClient,
) -> None:
    with pytest.raises(InvalidRequestError, match=r"^surprise: Extra inputs are not permitted$"):
        await client.call("raise0", {"surprise": 1})

"""The command API as other programs see it: NATS micro discovery and bad requests."""

from __future__ import annotations

import nats
import orjson
import pytest

import eventsrc
from eventsrc.commands import api
from eventsrc.errors import InvalidIdError, InvalidRequestError, NotFoundError


async def test_standard_service_discovery_finds_the_coordinator(coordinator_url: str) -> None:
    nc = await nats.connect(coordinator_url)
    try:
        ping = orjson.loads((await nc.request("$SRV.PING.eventsrc", b"", timeout=5)).data)
        info = orjson.loads((await nc.request("$SRV.INFO.eventsrc", b"", timeout=5)).data)
    finally:
        await nc.close()
    assert ping["name"] == "eventsrc"
    assert {e["subject"] for e in info["endpoints"]} >= {
        api.subject("submit"),
        api.subject("get"),
        api.subject("status"),
    }


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"{not json", "request"),
        (b'{"task_id": "t1"}', "spec"),
        (b'{"task_id": "a.b", "spec": {"skills": ["python"]}}', "task_id"),
        (b'{"task_id": "t1", "spec": {"skills": ["python"]}, "surprise": 1}', "surprise"),
        (b'{"task_id": "t1", "spec": {"skills": []}}', "skills"),
    ],
)
async def test_bad_requests_get_an_error_reply_and_change_nothing(
    coordinator_url: str, body: bytes, words: str
) -> None:
    nc = await nats.connect(coordinator_url)
    try:
        reply = orjson.loads((await nc.request(api.subject("submit"), body, timeout=5)).data)
        status = orjson.loads((await nc.request(api.subject("status"), b"", timeout=5)).data)
    finally:
        await nc.close()
    assert reply["ok"] is False and reply["error"]["code"] == api.ERR_INVALID
    assert words in reply["error"]["message"] and "\n" not in reply["error"]["message"]
    assert status["data"]["tasks"] == {}


async def test_client_errors_are_typed_and_one_line(coordinator_url: str) -> None:
    async with eventsrc.connect(coordinator_url, project=False) as cluster:
        with pytest.raises(NotFoundError, match="no task nope"):
            await cluster.api.call("get", {"task_id": "nope"})
        with pytest.raises(InvalidRequestError):
            await cluster.api.call("tasks", {"limit": 0})
        with pytest.raises(InvalidIdError):
            await cluster.submit("python", task_id="bad id")
        with pytest.raises(NotFoundError):
            await cluster.drain("ghost")

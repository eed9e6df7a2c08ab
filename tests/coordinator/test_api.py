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
        # Unknown fields inside the request's values are refused too, not dropped.
        (b'{"task_id": "t1", "spec": {"skills": ["python"], "name": "x"}}', "spec.name"),
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
        with pytest.raises(InvalidRequestError, match=r"metadata\.owner: Extra inputs"):
            await cluster.api.call("register_skill", {"metadata": {"name": "x", "owner": "me"}})


async def test_run_submits_and_returns_the_result_in_one_call(coordinator_url: str) -> None:
    from eventsrc.node.agent import NodeAgent
    from eventsrc.node.builtins import builtin_skill
    from eventsrc.store import JetStreamEventStore

    nc = await nats.connect(coordinator_url)
    agent = NodeAgent(
        nc,
        JetStreamEventStore(nc),
        node_id="runner",
        skills={"search": builtin_skill("search")},
        executors={},
    )

    async def echo(task: dict[str, object]) -> object:
        return task["payload"]

    agent.handlers["echo"] = echo
    try:
        await agent.start()
        async with eventsrc.connect(coordinator_url, project=False) as cluster:
            done = await cluster.run(["search"], {"x": 1}, task_type="echo", timeout=20)
            assert (done.state, done.result, done.node_id) == ("succeeded", {"x": 1}, "runner")
            rejected = await cluster.run(["nope"], timeout=5)
            assert rejected.state == "rejected" and rejected.missing_skills == ("nope",)
    finally:
        await agent.close(leave=True)
        await nc.close()


@pytest.mark.parametrize("node_id", ["a\\b", "a/b"])
async def test_a_node_id_that_cannot_name_a_consumer_is_refused(
    coordinator_url: str, node_id: str
) -> None:
    # Found by the API fuzzer: a valid id, but JetStream refuses it as a consumer name.
    nc = await nats.connect(coordinator_url)
    try:
        body = orjson.dumps({"node_id": node_id, "incarnation": "i1"})
        reply = orjson.loads((await nc.request(api.subject("node_hello"), body, timeout=5)).data)
    finally:
        await nc.close()
    assert reply["ok"] is False and reply["error"]["code"] == api.ERR_INVALID
    assert "consumer name" in reply["error"]["message"]

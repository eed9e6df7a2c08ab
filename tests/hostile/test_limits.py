"""Size limits on payloads and results.

The coordinator runs with ``EVENTSRC_MAX_PAYLOAD_BYTES=4096`` (the setting is
configurable like every other): a bigger payload is refused with a clear error and
nothing is stored, whether it comes through the API, the CLI or the Python client (and
one over NATS's own max payload fails in the client with one line). A task whose result
is over the node's ``max_result_bytes``, not JSON-storable, over what NATS carries, or
that fails with a megabytes-long error, ends ``failed`` with a clear reason: not stuck,
and the node carries on.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
import orjson
import pytest

import eventsrc
from eventsrc.client import Cluster
from eventsrc.commands import api
from eventsrc.errors import PayloadTooLargeError
from eventsrc.node.agent import NodeAgent
from eventsrc.node.attempts import MAX_ERROR_CHARS
from eventsrc.node.builtins import builtin_skill
from eventsrc.store import JetStreamEventStore
from tests.hostile.conftest import CLEAN_ENV, Requester, check_reply
from tests.processes import Program

PAYLOAD_LIMIT = 4096
COORDINATOR_ENV = {"EVENTSRC_MAX_PAYLOAD_BYTES": str(PAYLOAD_LIMIT)}
RESULT_LIMIT = 2000


def test_a_payload_over_the_limit_is_refused_and_nothing_is_stored(
    coordinator: Program, requester: Requester
) -> None:
    stored = requester.last_seq()
    too_big = {"task_id": "big-1", "spec": {"skills": ["search"], "payload": "x" * PAYLOAD_LIMIT}}
    reply = check_reply(requester.request(api.subject("submit"), orjson.dumps(too_big)), "submit")
    assert reply["ok"] is False and reply["error"]["code"] == api.ERR_TOO_LARGE
    assert reply["error"]["message"] == (
        f"the payload is {PAYLOAD_LIMIT + 2} bytes as JSON; the limit is {PAYLOAD_LIMIT} "
        f"(max_payload_bytes): store large data elsewhere and pass a reference"
    )
    assert requester.last_seq() == stored

    fits = {"task_id": "fits-1", "spec": {"skills": ["search"], "payload": "x" * 4000}}
    reply = check_reply(requester.request(api.subject("submit"), orjson.dumps(fits)), "submit")
    assert reply["ok"] is True
    assert requester.last_seq() > stored


def test_the_cli_says_so_in_one_line(
    coordinator: Program, requester: Requester, nats_url: str, tmp_path: Path
) -> None:
    stored = requester.last_seq()
    payload = orjson.dumps("x" * 5000).decode()
    args = ["--nats-url", nats_url, "submit", "--skill", "search", "--payload", payload]
    result = subprocess.run(
        [sys.executable, "-m", "eventsrc.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, **CLEAN_ENV},
        check=False,
    )
    assert result.returncode == 1, result
    assert result.stderr.splitlines() == [
        f"error: the payload is 5002 bytes as JSON; the limit is {PAYLOAD_LIMIT} "
        f"(max_payload_bytes): store large data elsewhere and pass a reference"
    ]
    assert requester.last_seq() == stored


@pytest.fixture
async def cluster(coordinator: Program, nats_url: str) -> AsyncIterator[Cluster]:
    async with eventsrc.connect(nats_url, project=False) as client:
        yield client


async def test_the_python_client_gets_a_typed_one_line_error(cluster: Cluster) -> None:
    stored = await cluster.store.last_seq()
    with pytest.raises(PayloadTooLargeError, match="limit is 4096") as refused:
        await cluster.submit("search", "x" * 10_000)
    # Over NATS's own limit (1 MiB): the client refuses to send it at all.
    with pytest.raises(PayloadTooLargeError, match="more than the NATS server accepts") as big:
        await cluster.submit("search", "x" * 2_000_000)
    for caught in (refused, big):
        assert "\n" not in str(caught.value) and len(str(caught.value)) < 300
    assert await cluster.store.last_seq() == stored


def agent(nc: Any, node_id: str, max_result_bytes: int) -> NodeAgent:
    node = NodeAgent(
        nc,
        JetStreamEventStore(nc),
        node_id=node_id,
        skills={"search": builtin_skill("search")},
        executors={},
        max_result_bytes=max_result_bytes,
    )

    async def small(task: dict[str, Any]) -> Any:
        return {"ok": True}

    async def big(task: dict[str, Any]) -> Any:
        return "x" * 5000

    async def huge(task: dict[str, Any]) -> Any:
        return "x" * 2_000_000

    async def bigint(task: dict[str, Any]) -> Any:
        return {"n": 2**100}

    async def loud(task: dict[str, Any]) -> Any:
        raise RuntimeError("y" * 3_000_000)

    async def fat(task: dict[str, Any]) -> Any:
        return "z" * 400_000

    node.handlers.update(small=small, big=big, huge=huge, bigint=bigint, loud=loud, fat=fat)
    return node


async def test_a_result_that_cannot_be_stored_ends_failed_with_the_reason(
    cluster: Cluster, nats_url: str
) -> None:
    nc = await nats.connect(nats_url)
    strict = agent(nc, "strict", RESULT_LIMIT)
    lax = agent(nc, "lax", 50_000_000)  # no limit of its own: NATS's max payload decides
    try:
        await strict.start()
        await lax.start()

        async def run(task_type: str, node_id: str) -> Any:
            return await cluster.run("search", task_type=task_type, node_id=node_id, timeout=20)

        big = await run("big", "strict")
        assert (big.state, big.attempts) == ("failed", 1), big
        assert big.error == (
            f"the result is 5002 bytes as JSON; the limit is {RESULT_LIMIT} "
            f"(max_result_bytes): return a reference to the data instead"
        )
        bigint = await run("bigint", "strict")
        assert bigint.state == "failed" and bigint.error is not None
        assert "cannot be stored as JSON" in bigint.error
        huge = await run("huge", "lax")
        assert huge.state == "failed" and huge.error is not None
        assert "result too large to store" in huge.error
        loud = await run("loud", "lax")
        assert loud.state == "failed" and loud.error is not None
        assert loud.error.startswith("RuntimeError: yyy") and len(loud.error) == MAX_ERROR_CHARS

        for node_id in ("strict", "lax"):  # and both nodes carry on
            done = await run("small", node_id)
            assert (done.state, done.result) == ("succeeded", {"ok": True}), done

        # Three results that fit one by one make a task list NATS cannot carry.
        for _ in range(3):
            assert (await run("fat", "lax")).state == "succeeded"
        with pytest.raises(PayloadTooLargeError, match="ask for less"):
            await cluster.api.call("tasks", {"all": True})
        assert len((await cluster.api.call("tasks", {"all": True, "limit": 1}))["tasks"]) == 1
    finally:
        await strict.close(leave=True)
        await lax.close(leave=True)
        await nc.close()

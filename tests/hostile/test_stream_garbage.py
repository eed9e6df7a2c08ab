"""Garbage published straight into the streams by a foreign client, while a coordinator
and a node run: junk bytes, JSON of an unknown type, valid events on the wrong subject,
numbers beyond 64 bits, NaN, a 900 kB message. The coordinator counts each as a problem
and keeps going, the node skips what reaches its consumer, tasks still complete, and
``replay_tools verify`` and ``eventsrc status`` report them.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import nats.errors
import orjson
import pytest

from eventsrc.commands import api
from eventsrc.events import encode
from tests.factories import one_of_each
from tests.hostile.conftest import CLEAN_ENV, Requester, check_reply, tracebacks
from tests.processes import Program, program
from tests.waiting import until_blocking

NODE = "good"
DEADLINE_S = 30.0


def by_type(name: str) -> dict[str, Any]:
    """A valid event of that type as JSON (for task t1, node n1, skill python)."""
    return next(orjson.loads(encode(e)) for e in one_of_each() if e.type == name)


def garbage() -> list[tuple[str, bytes]]:
    """(subject, bytes) a foreign client publishes; none of it is a valid event there."""
    junk = b"\x00\xff not an event"
    unknown = orjson.dumps({"type": "FromTheFuture", "event_id": "e1", "x": 1})
    submitted = by_type("TaskSubmitted")
    big = dict(submitted, task_id="x", spec={**submitted["spec"], "payload": 0})
    huge_int = orjson.dumps(big).replace(b'"payload":0', b'"payload":' + b"9" * 40)
    nan = orjson.dumps(by_type("TaskSucceeded")).replace(b'"duration_ms":3.5', b'"duration_ms":NaN')
    return [
        ("evt.task.x.lifecycle", junk),
        ("evt.task.x.lifecycle", unknown),
        ("evt.task.x.lifecycle", orjson.dumps(by_type("TaskSucceeded"))),  # task t1's
        ("evt.task.x.lifecycle", huge_int),
        ("evt.task.t1.from.n1", nan),
        ("evt.task.x.lifecycle", b"{" + b" " * 900_000 + b"}"),
        ("evt.node.y", junk),
        ("evt.node.y", unknown),
        ("evt.node.y", orjson.dumps(by_type("NodeJoined"))),  # node n1's
        ("evt.node.y", orjson.dumps(by_type("Heartbeat"))),
        ("evt.cluster", junk),
        ("evt.cluster", unknown),
        ("evt.cluster", orjson.dumps(by_type("SkillRegistered"))),
        (f"evt.task.x.to.{NODE}", junk),  # reaches the node's own consumer
        (f"evt.task.x.to.{NODE}", unknown),
    ]


HEARTBEAT_GARBAGE = [
    ("hb.z", b"\x00\xff not a heartbeat"),
    ("hb.z", orjson.dumps({"type": "FromTheFuture"})),
    ("hb.z", orjson.dumps(by_type("Heartbeat"))),  # node n1's, under z
    ("hb.z", orjson.dumps(by_type("NodeJoined"))),
]


@pytest.fixture(scope="module")
def node(
    coordinator: Program, nats_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Program]:
    """``python -m eventsrc.node --skill python`` for the module."""
    args = ["-m", "eventsrc.node", "--nats-url", nats_url, "--node-id", NODE]
    args += ["--skill", "python", "--heartbeat-interval", "0.5"]
    with program(args, cwd=tmp_path_factory.mktemp("node"), env=CLEAN_ENV) as child:
        child.wait_for_line("ready", timeout=DEADLINE_S)
        yield child
        assert child.proc.poll() is None, "\n".join(child.stderr_lines[-30:])
        assert not tracebacks(child), "\n".join(tracebacks(child)[:20])


def call(requester: Requester, endpoint: str, request: dict[str, Any] | None = None) -> Any:
    reply = requester.request(api.subject(endpoint), orjson.dumps(request or {}))
    document = check_reply(reply, endpoint)
    assert document["ok"], document
    return document["data"]


def run_tasks(requester: Requester, count: int, tag: str) -> None:
    ids = [f"{tag}-{i}-{time.time_ns()}" for i in range(count)]
    for task_id in ids:
        spec = {"skills": ["python"], "payload": {"code": f"print({task_id!r})"}}
        call(requester, "submit", {"task_id": task_id, "spec": spec})

    def ended(task_id: str) -> dict[str, Any]:
        task: dict[str, Any] = call(requester, "get", {"task_id": task_id})
        terminal = {"succeeded", "failed", "timed_out", "rejected", "cancelled"}
        return task if task["state"] in terminal else {}

    for task_id in ids:
        task = until_blocking(partial(ended, task_id), f"task {task_id} to end", DEADLINE_S, 0.05)
        assert task["state"] == "succeeded", task
        assert task["result"]["stdout"].strip() == task_id


def test_garbage_in_the_streams_is_counted_and_the_cluster_carries_on(
    coordinator: Program, node: Program, requester: Requester, nats_url: str, tmp_path: Path
) -> None:
    until_blocking(
        lambda: any(n["node_id"] == NODE for n in call(requester, "nodes")["nodes"]),
        "the node to join",
        DEADLINE_S,
        0.05,
    )
    run_tasks(requester, 2, "before")
    before = call(requester, "status")["problems"]

    js = requester.nc.jetstream()
    published = garbage()
    for subject, data in published + HEARTBEAT_GARBAGE:
        requester.run(js.publish(subject, data))
    with pytest.raises(nats.errors.MaxPayloadError):  # NATS refuses it before any stream
        requester.run(js.publish("evt.task.x.lifecycle", b"x" * (requester.nc.max_payload + 1)))

    def counted() -> dict[str, int]:
        problems: dict[str, int] = call(requester, "status")["problems"]
        grown = {kind: problems[kind] - before.get(kind, 0) for kind in problems}
        events = grown["undecodable"] + grown["illegal"]
        enough = grown["undecodable_heartbeats"] >= len(HEARTBEAT_GARBAGE)
        return grown if events >= len(published) and enough else {}

    grown = until_blocking(counted, "the coordinator to count the garbage", DEADLINE_S, 0.05)
    # Everything but the forged result for t1 is undecodable; that one is not: it is a
    # valid TaskSucceeded stored under the wrong subject, which the codec refuses too.
    assert grown["undecodable"] == len(published), grown
    assert grown["undecodable_heartbeats"] == len(HEARTBEAT_GARBAGE), grown

    run_tasks(requester, 3, "after")

    status = subprocess.run(
        [sys.executable, "-m", "eventsrc.cli", "--nats-url", nats_url, "status"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**CLEAN_ENV, "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert status.returncode == 0, status.stderr
    assert f"undecodable {grown['undecodable'] + before['undecodable']}," in status.stdout
    assert "heartbeat seq" in status.stdout and "FromTheFuture" in status.stdout

    verify = subprocess.run(
        [sys.executable, "-m", "replay_tools", "verify", "--nats-url", nats_url],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**CLEAN_ENV, "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert verify.returncode == 1, verify.stdout + verify.stderr
    assert "messages are not events" in verify.stdout, verify.stdout
    assert "Traceback" not in verify.stdout + verify.stderr

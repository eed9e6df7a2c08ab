"""Command fuzzing: thousands of bad requests against one real coordinator process.

Every endpoint the service lists gets random bytes, random JSON and requests of the
right shape with hostile values (wrong types, bad ids, NaN, 2**100, deep nesting,
duplicate keys, huge strings). Each must be answered within a timeout by a JSON error
with a known code and a one-line message; afterwards the coordinator still works, and
its log shows no traceback (checked by the ``coordinator`` fixture).
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from eventsrc.commands import api
from tests.hostile.conftest import EXAMPLES, FUZZ, Requester, check_reply
from tests.hostile.strategies import (
    JUNK_LITERALS,
    OPERATIONS,
    bad_tokens,
    dump,
    hostile_values,
    junk_bodies,
    junk_body,
    mutated,
    paths,
)
from tests.processes import Program

TEMPLATES: dict[str, dict[str, Any]] = {
    "submit": {
        "task_id": "fz-1",
        "spec": {"skills": ["python"], "payload": {"code": "print(1)"}, "labels": {"k": "v"}},
    },
    "get": {"task_id": "fz-1"},
    "cancel": {"task_id": "fz-1", "reason": "fuzz"},
    "tasks": {"all": True, "limit": 10},
    "nodes": {},
    "skills": {},
    "status": {},
    "drain": {"node_id": "ghost"},
    "register_skills": {
        "skills": [{"name": "fz-skill", "dependencies": ["python"], "resources": {"gpu": 1}}]
    },
    "register_skill": {"metadata": {"name": "fz-skill", "tags": ["a"]}},
    "register_instance": {"skill": "fz-skill", "node_id": "ghost"},
    "unregister_instance": {"skill": "fz-skill", "node_id": "ghost", "reason": "fuzz"},
    "expire_stale": {"stale_after_s": 3600},
    "node_hello": {"node_id": "fz-node", "incarnation": "i1"},
    "schedule_add": {
        "name": "fz-sched",
        "timing": {"cron": "0 9 * * 1-5", "tz": "Europe/Berlin", "catch_up": "once"},
        "task": {"skills": ["python"], "payload": {"code": "print(1)"}},
    },
    "schedule_list": {},
    "schedule_next": {"name": "fz-sched", "count": 3},
    "schedule_pause": {"name": "fz-sched", "reason": "fuzz"},
    "schedule_resume": {"name": "fz-sched"},
    "schedule_remove": {"name": "fz-sched"},
}
"""A valid request per endpoint, the starting point of the shaped mutations."""

ID_FIELDS: dict[str, list[tuple[Any, ...]]] = {
    "submit": [("task_id",), ("spec", "skills", 0), ("spec", "node_id"), ("parent_task_id",)],
    "get": [("task_id",)],
    "cancel": [("task_id",)],
    "drain": [("node_id",)],
    "register_skills": [("skills", 0, "name"), ("skills", 0, "dependencies", 0)],
    "register_skill": [("metadata", "name")],
    "register_instance": [("skill",), ("node_id",)],
    "unregister_instance": [("skill",), ("node_id",)],
    "node_hello": [("node_id",)],
    "schedule_add": [("name",), ("task", "skills", 0), ("task", "node_id")],
    "schedule_next": [("name",)],
    "schedule_pause": [("name",)],
}
"""Where each endpoint takes an id that becomes a subject token."""


def ask(requester: Requester, endpoint: str, body: bytes) -> dict[str, Any]:
    reply = requester.request(api.subject(endpoint), body)
    return check_reply(reply, f"{endpoint} {body[:120]!r}")


def list_endpoints(requester: Requester) -> set[str]:
    info = orjson.loads(requester.request("$SRV.INFO.eventsrc", b"").data)
    prefix = api.API_PREFIX + "."
    return {e["subject"].removeprefix(prefix) for e in info["endpoints"]}


def test_the_service_lists_every_endpoint_fuzzed_here(
    coordinator: Program, requester: Requester
) -> None:
    assert set(TEMPLATES) <= list_endpoints(requester)


@pytest.mark.parametrize("endpoint", sorted(TEMPLATES))
def test_junk_gets_an_error_reply(
    coordinator: Program, requester: Requester, endpoint: str
) -> None:
    answered: list[bytes] = []  # this test's own tally: no state outlives a test

    @FUZZ
    @given(junk=junk_bodies)
    def fuzz(junk: Any) -> None:
        body = junk_body(junk)
        assume(len(body) < requester.nc.max_payload)  # else NATS refuses it client-side
        ask(requester, endpoint, body)
        answered.append(body)

    fuzz()
    assert len(answered) >= EXAMPLES // 2


@pytest.mark.parametrize("endpoint", sorted(TEMPLATES))
def test_the_right_shape_with_hostile_values_gets_a_reply(
    coordinator: Program, requester: Requester, endpoint: str
) -> None:
    template = TEMPLATES[endpoint]
    where = paths(template)
    answered: list[bytes] = []

    @FUZZ
    @given(path=st.sampled_from(where), operation=OPERATIONS, value=hostile_values)
    def fuzz(path: tuple[Any, ...], operation: str, value: Any) -> None:
        body = dump(mutated(template, path, operation, value)).encode()
        assume(len(body) < requester.nc.max_payload)
        ask(requester, endpoint, body)
        answered.append(body)

    fuzz()
    assert len(answered) >= EXAMPLES // 2


@pytest.mark.parametrize("endpoint", sorted(ID_FIELDS))
def test_ids_that_would_be_wildcards_are_refused_and_nothing_is_stored(
    coordinator: Program, requester: Requester, endpoint: str
) -> None:
    template = TEMPLATES[endpoint]
    stored_before = requester.last_seq()

    @FUZZ
    @given(path=st.sampled_from(ID_FIELDS[endpoint]), token=bad_tokens)
    def fuzz(path: tuple[Any, ...], token: str) -> None:
        body = dump(mutated(template, path, "replace", token)).encode()
        document = ask(requester, endpoint, body)
        assert document["ok"] is False and document["error"]["code"] == api.ERR_INVALID

    fuzz()
    assert requester.last_seq() == stored_before, "a request with a bad id stored events"


def test_every_listed_endpoint_answers_the_junk_corpus(
    coordinator: Program, requester: Requester
) -> None:
    # Also endpoints added later without a template above.
    for endpoint in sorted(list_endpoints(requester)):
        for body in JUNK_LITERALS.values():
            ask(requester, endpoint, body)


def test_a_request_without_a_reply_subject_does_no_harm(
    coordinator: Program, requester: Requester
) -> None:
    for endpoint in sorted(TEMPLATES):
        requester.run(requester.nc.publish(api.subject(endpoint), b"\xff junk"))
    requester.run(requester.nc.flush())
    ask(requester, "status", b"")


def test_after_the_fuzz_the_coordinator_still_works(
    coordinator: Program, requester: Requester
) -> None:
    started = time.perf_counter()
    status = ask(requester, "status", b"")
    assert status["ok"] is True
    body = orjson.dumps({"task_id": f"after-{time.time_ns()}", "spec": {"skills": ["python"]}})
    submitted = ask(requester, "submit", body)
    assert submitted["ok"] is True, submitted
    assert submitted["data"]["state"] == "rejected"  # no node has python in this module
    assert ask(requester, "get", orjson.dumps({"task_id": submitted["data"]["task_id"]}))["ok"]
    assert time.perf_counter() - started < 5

"""Fixtures for the hostile-input tests: one real coordinator process per module, a
synchronous NATS requester for hypothesis, and the fuzz settings.

Example counts: ``EVENTSRC_FUZZ_EXAMPLES`` (default 100) is the number of examples per
endpoint and strategy; the soak/benchmark runs set it higher. At the default the whole
folder runs in well under a minute on two cores.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import orjson
import pytest
from hypothesis import HealthCheck, settings
from nats.aio.msg import Msg

from eventsrc.commands import api
from eventsrc.ports import EVENTS_STREAM
from tests.processes import Program, program

EXAMPLES = int(os.environ.get("EVENTSRC_FUZZ_EXAMPLES", "100"))

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
"""Settings for every fuzz test here; hypothesis shrinks a failure to a minimal body."""

REPLY_TIMEOUT_S = 5.0
"""A healthy coordinator answers in about a millisecond; this bound means 'no answer'."""

ERROR_CODES = frozenset(row.code for row in api.ERROR_CODES)
"""Codes a hostile request may get; ``internal`` means a bug and fails the test."""

# Our own environment must not steer the children (e.g. a stray EVENTSRC_NATS_URL).
CLEAN_ENV = {name: "" for name in os.environ if name.startswith("EVENTSRC_")}


class Requester:
    """Request/reply with nats-py from synchronous code (hypothesis runs sync tests).

    Owns one connection on an event loop of its own, run in a thread of its own: the
    connection answers the server's pings also while the test waits on something else
    (the child programs it runs), so the server never drops it as a stale client.
    """

    def __init__(self, url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="requester-loop", daemon=True
        )
        self._thread.start()
        self.nc = self.run(nats.connect(url, max_reconnect_attempts=0))
        self.sent: Counter[str] = Counter()

    def request(self, subject: str, body: bytes, *, timeout: float = REPLY_TIMEOUT_S) -> Msg:
        self.sent[subject] += 1
        reply: Msg = self.run(self.nc.request(subject, body, timeout=timeout))
        return reply

    def run(self, coro: Any) -> Any:
        """Run any coroutine on this requester's loop (e.g. a JetStream query)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def last_seq(self) -> int:
        info = self.run(self.nc.jetstream().stream_info(EVENTS_STREAM))
        return int(info.state.last_seq)

    def close(self) -> None:
        try:
            self.run(self.nc.close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join()
            self.loop.close()


class ApiFault(AssertionError):
    """A reply that breaks the API contract (or no reply at all)."""


def check_reply(reply: Msg, what: str) -> dict[str, Any]:
    """The reply's JSON document, after checking the contract every reply must keep:
    a JSON object with a boolean ``ok``; an error has a known code (never ``internal``)
    and a non-empty one-line message without a traceback."""
    try:
        document = orjson.loads(reply.data)
    except orjson.JSONDecodeError as err:
        raise ApiFault(f"{what}: the reply is not JSON: {reply.data[:200]!r}") from err
    if not isinstance(document, dict) or not isinstance(document.get("ok"), bool):
        raise ApiFault(f"{what}: the reply is not an ok/error object: {document!r:.200}")
    if document["ok"]:
        return document
    error = document.get("error")
    if not isinstance(error, dict):
        raise ApiFault(f"{what}: an error reply without an error object: {document!r:.200}")
    code, message = error.get("code"), error.get("message")
    if code not in ERROR_CODES:
        raise ApiFault(f"{what}: error code {code!r}: {message!r:.300}")
    if not isinstance(message, str) or not message.strip():
        raise ApiFault(f"{what}: an empty error message")
    if "\n" in message or "\r" in message or "Traceback" in message:
        raise ApiFault(f"{what}: the message is not one line: {message!r:.300}")
    headers = reply.headers or {}
    if headers.get("Nats-Service-Error-Code") != code:
        raise ApiFault(f"{what}: the micro error headers are missing: {headers!r:.200}")
    return document


def tracebacks(child: Program) -> list[str]:
    """Lines of the child's stderr that show a crash or an unexpected error."""
    return [
        line
        for line in child.stderr_lines
        if "Traceback" in line or " ERROR " in line or "never retrieved" in line
    ]


@pytest.fixture(scope="module")
def coordinator(
    nats_url: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Program]:
    """One ``python -m eventsrc.coordinator`` process for the module, on its server
    (with the module's ``COORDINATOR_ENV`` settings, if it has any).

    At the end it must still be running and have logged no traceback: zero crashes.
    """
    args = ["-m", "eventsrc.coordinator", "--nats-url", nats_url]
    args += ["--stale-after", "2", "--sweep-interval", "0.5"]
    workdir: Path = tmp_path_factory.mktemp("coordinator")
    env = {**CLEAN_ENV, **getattr(request.module, "COORDINATOR_ENV", {})}
    with program(args, cwd=workdir, env=env) as child:
        child.wait_for_line("ready", timeout=30)
        yield child
        assert child.proc.poll() is None, "the coordinator died:\n" + "\n".join(
            child.stderr_lines[-30:]
        )
        assert not tracebacks(child), "\n".join(tracebacks(child)[:20])


@pytest.fixture(scope="module")
def requester(nats_url: str) -> Iterator[Requester]:
    """A synchronous client of the module's server."""
    client = Requester(nats_url)
    try:
        yield client
    finally:
        client.close()

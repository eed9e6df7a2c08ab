"""The pure core's tests need no server: starting one here is a bug in the test."""

from __future__ import annotations

import pytest

from eventsrc.errors import EmbeddedServerError
from eventsrc.store import server


def _refuse() -> str:
    raise EmbeddedServerError("tests/unit are pure: they must not start a nats-server")


@pytest.fixture(autouse=True)
def _no_nats_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server, "find_nats_server", _refuse)

"""Calling the coordinator's command API, with errors mapped back to ours."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel

from eventsrc.commands import api
from eventsrc.errors import CoordinatorUnavailableError, EventsrcError, RequestTimeoutError
from eventsrc.store import Connection
from eventsrc.store.transport import Peer, Requests

__all__ = ["ApiClient", "CoordinatorUnavailableError", "RequestTimeoutError"]

COORDINATOR = Peer(
    name="coordinator",
    start_hint="start one with `python -m eventsrc.coordinator --nats-url ...`",
    role_hint="secure mode: submitter for submit/cancel/drain",
)


class ApiClient:
    """Request/reply to ``eventsrc.api.<endpoint>``; returns the reply's ``data``."""

    def __init__(self, nc: Connection, *, timeout: float = 10.0) -> None:
        self._requests = Requests(nc, peer=COORDINATOR, timeout=timeout)

    async def call(
        self,
        endpoint: str,
        request: BaseModel | dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> Any:
        """Raises the mapped EventsrcError on an error reply, and the transport's errors
        (``eventsrc.store.transport``): ServerUnavailableError when no coordinator
        answers, RequestTimeoutError, NotPermittedError, PayloadTooLargeError."""
        if isinstance(request, BaseModel):
            body = request.model_dump_json().encode()
        else:
            body = orjson.dumps(request or {})
        reply = await self._requests.request(
            api.subject(endpoint), body, name=endpoint, timeout=timeout
        )
        try:
            document = orjson.loads(reply)
        except orjson.JSONDecodeError as err:
            raise EventsrcError(f"the coordinator sent a reply that is not JSON: {err}") from err
        if not isinstance(document, dict):
            raise EventsrcError("the coordinator sent a reply that is not a JSON object")
        if document.get("ok"):
            return document.get("data")
        error = document.get("error")
        error = error if isinstance(error, dict) else {}
        kind = api.error_for(str(error.get("code")))
        raise kind(str(error.get("message") or "the coordinator refused the request"))

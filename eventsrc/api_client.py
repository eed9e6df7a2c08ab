"""Calling the coordinator's command API, with errors mapped back to ours."""

from __future__ import annotations

from typing import Any

import nats.errors
import orjson
from nats.aio.client import Client
from pydantic import BaseModel

from eventsrc.commands import api
from eventsrc.errors import (
    CoordinatorUnavailableError,
    EventsrcError,
    NotPermittedError,
    PayloadTooLargeError,
    RequestTimeoutError,
    ServerUnavailableError,
)
from eventsrc.store.publisher import Requester, SubjectRefusedError

__all__ = ["ApiClient", "CoordinatorUnavailableError", "RequestTimeoutError"]


class ApiClient:
    """Request/reply to ``eventsrc.api.<endpoint>``; returns the reply's ``data``."""

    def __init__(self, nc: Client, *, timeout: float = 10.0) -> None:
        self._timeout = timeout
        self._requests = Requester(nc, timeout=timeout)

    async def call(
        self,
        endpoint: str,
        request: BaseModel | dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> Any:
        """Raises the mapped EventsrcError on an error reply, ServerUnavailableError when no
        coordinator answers."""
        if isinstance(request, BaseModel):
            body = request.model_dump_json().encode()
        else:
            body = orjson.dumps(request or {})
        try:
            reply = await self._requests.request(
                api.subject(endpoint), body, timeout=timeout or self._timeout
            )
        except SubjectRefusedError as err:
            raise NotPermittedError(
                f"NATS refused {endpoint} to these credentials ({err.text}); use credentials "
                f"of a role that may (secure mode: submitter for submit/cancel/drain)"
            ) from err
        except nats.errors.NoRespondersError as err:
            raise ServerUnavailableError(
                "no coordinator answers on this NATS server; start one with "
                "`python -m eventsrc.coordinator --nats-url ...`"
            ) from err
        except nats.errors.MaxPayloadError as err:
            raise PayloadTooLargeError(
                f"the {endpoint} request is {len(body)} bytes, more than the NATS server "
                f"accepts in one message; send a reference to the data instead"
            ) from err
        except nats.errors.TimeoutError as err:
            raise RequestTimeoutError(
                f"the coordinator did not answer {endpoint} within "
                f"{timeout or self._timeout:g} s; check that it is running"
            ) from err
        except nats.errors.Error as err:
            raise ServerUnavailableError(f"NATS request failed: {err}") from err
        try:
            document = orjson.loads(reply.data)
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

"""Calling the coordinator's command API, with errors mapped back to ours."""

from __future__ import annotations

from typing import Any

import nats.errors
import orjson
from nats.aio.client import Client
from pydantic import BaseModel

from eventsrc.commands import api
from eventsrc.commands.tasks import QueueFullError
from eventsrc.errors import (
    DomainError,
    EventsrcError,
    InvalidRequestError,
    NotFoundError,
    NotPermittedError,
    PayloadTooLargeError,
    ServerUnavailableError,
)
from eventsrc.store.publisher import Requester, SubjectRefusedError


class RequestTimeoutError(ServerUnavailableError):
    """The request reached a coordinator (or might have) but no answer came in time."""


class CoordinatorUnavailableError(ServerUnavailableError):
    """The coordinator answered that it cannot do it now: a stream electing a leader, a
    leader stepping down. The same request may succeed a few seconds later."""


_ERRORS: dict[str, type[EventsrcError]] = {
    api.ERR_INVALID: InvalidRequestError,
    api.ERR_NOT_FOUND: NotFoundError,
    api.ERR_QUEUE_FULL: QueueFullError,
    api.ERR_CONFLICT: DomainError,
    api.ERR_UNAVAILABLE: CoordinatorUnavailableError,
    api.ERR_TOO_LARGE: PayloadTooLargeError,
}


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
        kind = _ERRORS.get(str(error.get("code")), EventsrcError)
        raise kind(str(error.get("message") or "the coordinator refused the request"))

"""Wrapping command handlers as the API's endpoints: validation, error codes, JSON.

Every request gets exactly one reply, whatever its bytes: a result, or an error with a
code and a one-line message. Requests are strict JSON (no NaN/Infinity, no numbers
beyond 64 bits) because what a command stores must stay hashable and replayable by
orjson, which refuses those.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from eventsrc.commands import api
from eventsrc.errors import EventsrcError, InvalidRequestError, PayloadTooLargeError, first_problem
from eventsrc.events import canonical_json, may_hold_long_number
from eventsrc.metrics import API_SECONDS
from eventsrc.store.transport import Request

log = logging.getLogger(__name__)

Handler = Callable[[Any], Awaitable[Any]]

MAX_MESSAGE = 500
"""Error messages are cut to this many characters (they may quote a request)."""


def endpoint(model: type[BaseModel], handler: Handler) -> Callable[[Request], Awaitable[None]]:
    """Wrap a handler: validate the request, map our errors to codes, reply JSON."""

    async def serve(request: Request) -> None:
        started, outcome = time.perf_counter(), "ok"
        try:
            command = _parse(model, request.data or b"{}")
            data = await handler(command)
            body = orjson.dumps({"ok": True, "data": _jsonable(data)})
        except ValidationError as err:
            outcome = api.ERR_INVALID
            await _error(request, api.ERR_INVALID, str(first_problem(err, root="request")))
        except EventsrcError as err:
            outcome = api.code_for(type(err))
            await _error(request, outcome, str(err))
        except Exception as err:
            outcome = api.ERR_INTERNAL
            log.exception("API handler failed")
            await _error(request, api.ERR_INTERNAL, f"internal error: {err!r}")
        else:
            await _respond(request, body)
        name = request.subject.rpartition(".")[2]
        API_SECONDS.labels(endpoint=name, outcome=outcome).observe(time.perf_counter() - started)

    return serve


def _parse(model: type[BaseModel], raw: bytes) -> BaseModel:
    """Validate a request; raises ValidationError or InvalidRequestError."""
    try:
        # pydantic's parser accepts NaN, Infinity and 1e400; orjson (strict) does not.
        orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        raise InvalidRequestError(f"request: not valid JSON ({err})") from err
    command = model.model_validate_json(raw)
    if not may_hold_long_number(raw):
        return command  # nothing in it that orjson could not store: skip writing it out
    try:
        canonical_json(command.model_dump())
    except TypeError as err:  # an integer beyond 64 bits somewhere in the request
        raise InvalidRequestError(f"request: {err}; send such numbers as strings") from err
    return command


def _jsonable(data: Any) -> Any:
    if isinstance(data, BaseModel):
        return data.model_dump(mode="json")
    if isinstance(data, dict):
        return {key: _jsonable(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [_jsonable(value) for value in data]
    return data


async def _error(request: Request, code: str, message: str) -> None:
    # One printable line, whatever the error quoted (dict keys, ids, exception text).
    message = " ".join("".join(c if c.isprintable() else " " for c in message).split())
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 1] + "…"
    body = orjson.dumps({"ok": False, "error": {"code": code, "message": message}})
    await _respond(request, body, error=(code, message))


async def _respond(request: Request, body: bytes, *, error: tuple[str, str] | None = None) -> None:
    try:
        await request.respond(body, error=error)
    except PayloadTooLargeError as err:
        if error is not None:  # an error reply is one line: never too large in practice
            log.warning("error reply not sent: %s", err)
            return
        await _error(request, api.ERR_TOO_LARGE, f"{err}; ask for less (e.g. a smaller limit)")

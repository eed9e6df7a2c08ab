"""Wrapping command handlers as NATS micro endpoints: validation, error codes, JSON."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from nats.micro.request import Request
from pydantic import BaseModel, ValidationError

from eventsrc.commands import api
from eventsrc.commands.tasks import QueueFullError
from eventsrc.errors import (
    DomainError,
    EventsrcError,
    InvalidIdError,
    NotFoundError,
    NotLeaderError,
    StoreError,
    StoreFullError,
)

log = logging.getLogger(__name__)

Handler = Callable[[Any], Awaitable[Any]]


def endpoint(model: type[BaseModel], handler: Handler) -> Callable[[Request], Awaitable[None]]:
    """Wrap a handler: validate the request, map our errors to codes, reply JSON."""

    async def serve(request: Request) -> None:
        try:
            command = model.model_validate_json(request.data or b"{}")
            data = await handler(command)
        except ValidationError as err:
            first = err.errors(include_url=False)[0]
            where = ".".join(str(part) for part in first["loc"]) or "request"
            await _error(request, api.ERR_INVALID, f"{where}: {first['msg']}")
            return
        except InvalidIdError as err:
            await _error(request, api.ERR_INVALID, str(err))
            return
        except NotFoundError as err:
            await _error(request, api.ERR_NOT_FOUND, str(err))
            return
        except QueueFullError as err:
            await _error(request, api.ERR_QUEUE_FULL, str(err))
            return
        except DomainError as err:
            await _error(request, api.ERR_CONFLICT, str(err))
            return
        except (StoreFullError, StoreError, NotLeaderError) as err:
            await _error(request, api.ERR_UNAVAILABLE, str(err))
            return
        except EventsrcError as err:
            await _error(request, api.ERR_REFUSED, str(err))
            return
        except Exception as err:
            log.exception("API handler failed")
            await _error(request, api.ERR_INTERNAL, f"internal error: {err}")
            return
        await request.respond(orjson.dumps({"ok": True, "data": _jsonable(data)}))

    return serve


def _jsonable(data: Any) -> Any:
    if isinstance(data, BaseModel):
        return data.model_dump(mode="json")
    if isinstance(data, dict):
        return {key: _jsonable(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [_jsonable(value) for value in data]
    return data


async def _error(request: Request, code: str, message: str) -> None:
    body = orjson.dumps({"ok": False, "error": {"code": code, "message": message}})
    await request.respond_error(code, message, data=body)

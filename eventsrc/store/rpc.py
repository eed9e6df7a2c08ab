"""Plain NATS request/reply on a subject of our choosing, not event-sourced: what the
node's ``TaskRequestResponse`` uses for quick questions between nodes. Bodies are bytes;
what they mean is the caller's."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable

import nats.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from eventsrc.errors import RequestTimeoutError, ServerUnavailableError
from eventsrc.store.connection import Connection

Responder = Callable[[bytes], Awaitable[bytes]]
"""Turns a request's body into the reply's."""


class Answering:
    """A subject being answered; ``close`` stops answering it."""

    def __init__(self, sub: Subscription) -> None:
        self._sub = sub

    async def close(self) -> None:
        """Stop answering; idempotent, and quiet when the connection is already gone."""
        with contextlib.suppress(nats.errors.Error):
            await self._sub.unsubscribe()


async def answer(nc: Connection, subject: str, respond: Responder) -> Answering:
    """Answer every request on ``subject`` with ``await respond(body)``; a reply that
    cannot be sent (the asker is gone) is dropped."""

    async def serve(msg: Msg) -> None:
        reply = await respond(msg.data)
        with contextlib.suppress(nats.errors.Error):
            await msg.respond(reply)

    return Answering(await nc.subscribe(subject, cb=serve))


async def ask(nc: Connection, subject: str, body: bytes, *, timeout: float) -> bytes:
    """The reply's body. Raises RequestTimeoutError when nothing answers within
    ``timeout`` (or nothing listens), ServerUnavailableError when NATS fails."""
    try:
        msg = await nc.request(subject, body, timeout=timeout)
    except (nats.errors.TimeoutError, nats.errors.NoRespondersError) as err:
        raise RequestTimeoutError(f"nothing answered {subject} within {timeout:g} s") from err
    except nats.errors.Error as err:
        raise ServerUnavailableError(f"NATS request to {subject} failed: {err}") from err
    return msg.data

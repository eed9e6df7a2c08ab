"""Request/reply over NATS: the micro service that answers and the requests that ask.

Outside the store, requests and replies are bytes and failures are our errors: nats-py's
errors are mapped here, once, for every caller (the command API client, the
coordinator's service).

- ``Requests`` asks: ``await requests.request(subject, body, name=...)`` returns the
  reply's bytes, or raises NotPermittedError (the server refused the subject to these
  credentials), PayloadTooLargeError (bigger than the server takes in one message),
  RequestTimeoutError (no answer in time) or ServerUnavailableError (nobody answers,
  or NATS failed).
- ``MicroService`` answers: a NATS micro service (``$SRV.PING/INFO/STATS`` work with
  standard tooling) whose endpoints are plain async handlers of ``Request`` (bytes in,
  ``respond(bytes)`` out).
- ``answer`` and ``ask`` are the plain request/reply between nodes (the node's
  ``TaskRequestResponse``): quick questions on a subject of the caller's, not
  event-sourced; nothing listening is a timeout there, as a question nobody answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import nats.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.micro import add_service
from nats.micro import request as micro_request
from nats.micro.service import Group, Service

from eventsrc.errors import (
    NotPermittedError,
    PayloadTooLargeError,
    RequestTimeoutError,
    ServerUnavailableError,
)
from eventsrc.store.connection import Connection
from eventsrc.store.publisher import Requester, SubjectRefusedError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Peer:
    """Who answers a kind of request, in the words of the errors ``Requests`` raises."""

    name: str
    """What answers, e.g. ``coordinator``."""
    start_hint: str
    """What to do when none answers."""
    role_hint: str
    """Which credentials may ask (secure mode)."""


class Requests:
    """Request/reply over one inbox (the store's ``Requester``), failures as our errors.

    A request to a subject the server refused to these credentials ends at once with
    NotPermittedError instead of waiting out its timeout.
    """

    __slots__ = ("_peer", "_requester", "_timeout")

    def __init__(self, nc: Connection, *, peer: Peer, timeout: float) -> None:
        self._peer = peer
        self._timeout = timeout
        self._requester = Requester(nc, timeout=timeout)

    async def request(
        self, subject: str, body: bytes, *, name: str, timeout: float | None = None
    ) -> bytes:
        """The reply to ``body`` sent on ``subject``; ``name`` says what was asked (for
        the error messages). Raises the errors in the module docstring."""
        timeout = timeout or self._timeout
        peer = self._peer
        try:
            reply = await self._requester.request(subject, body, timeout=timeout)
        except SubjectRefusedError as err:
            raise NotPermittedError(
                f"NATS refused {name} to these credentials ({err.text}); use credentials "
                f"of a role that may ({peer.role_hint})",
                subject=subject,
            ) from err
        except nats.errors.NoRespondersError as err:
            raise ServerUnavailableError(
                f"no {peer.name} answers on this NATS server; {peer.start_hint}"
            ) from err
        except nats.errors.MaxPayloadError as err:
            raise PayloadTooLargeError(
                f"the {name} request is {len(body)} bytes, more than the NATS server "
                f"accepts in one message; send a reference to the data instead"
            ) from err
        except nats.errors.TimeoutError as err:
            raise RequestTimeoutError(
                f"the {peer.name} did not answer {name} within {timeout:g} s; check that "
                f"it is running"
            ) from err
        except nats.errors.Error as err:
            raise ServerUnavailableError(f"NATS request failed: {err}") from err
        return reply.data


class Request:
    """One request to an endpoint: its bytes, and the one way to answer it."""

    __slots__ = ("_request",)

    def __init__(self, request: micro_request.Request) -> None:
        self._request = request

    @property
    def subject(self) -> str:
        """The subject the request was sent to (``eventsrc.api.<endpoint>``)."""
        return self._request.subject

    @property
    def data(self) -> bytes:
        """The request's body (empty when none was sent)."""
        return self._request.data or b""

    async def respond(self, body: bytes, *, error: tuple[str, str] | None = None) -> None:
        """Send the reply; ``error`` is ``(code, description)`` for the micro error
        headers (standard NATS tooling counts those replies as errors).

        Raises PayloadTooLargeError when the server takes no message that big (nothing
        was sent). A request sent without a reply subject has nobody waiting: nothing is
        sent. Any other NATS failure is logged: the asker times out.
        """
        try:
            if error is None:
                await self._request.respond(body)
            else:
                await self._request.respond_error(*error, data=body)
        except nats.errors.MaxPayloadError as err:
            raise PayloadTooLargeError(
                f"the reply is {len(body)} bytes, more than the NATS server accepts in one message"
            ) from err
        except ValueError:
            pass  # published without a reply subject: nobody waits for an answer
        except nats.errors.Error as err:
            log.warning("reply not sent: %s", err)


Handler = Callable[[Request], Awaitable[None]]
"""An endpoint's handler: answers its request with ``request.respond``."""


class MicroService:
    """A NATS micro service of plain async handlers, under one subject prefix.

    nats micro awaits a handler before it reads the next request of its endpoint, so
    each request runs in a task of its own (at most ``limit`` at a time per endpoint's
    semaphore): a slow request does not hold up the others.
    """

    def __init__(
        self, nc: Connection, *, name: str, version: str, description: str, prefix: str
    ) -> None:
        self._nc = nc
        self._name = name
        self._version = version
        self._description = description
        self._prefix = prefix
        self._service: Service | None = None
        self._group: Group | None = None
        self._requests: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Announce the service (no endpoints yet)."""
        self._service = await add_service(
            self._nc, name=self._name, version=self._version, description=self._description
        )
        self._group = self._service.add_group(name=self._prefix)

    async def add_endpoint(self, name: str, handler: Handler, *, limit: asyncio.Semaphore) -> None:
        """Serve ``<prefix>.<name>`` with ``handler``, at most ``limit`` requests at once."""
        assert self._group is not None, "MicroService.start() first"
        requests = self._requests

        def done(task: asyncio.Future[None]) -> None:
            requests.discard(task)
            limit.release()

        async def spawn(request: micro_request.Request) -> None:
            await limit.acquire()
            task = asyncio.ensure_future(handler(Request(request)))
            requests.add(task)
            task.add_done_callback(done)

        await self._group.add_endpoint(name=name, handler=spawn)

    async def stop(self, *, timeout: float = 10.0) -> None:
        """Stop answering, cancel the requests in flight and wait for them; idempotent."""
        service, self._service, self._group = self._service, None, None
        if service is not None:
            with contextlib.suppress(Exception):
                await service.stop()
        current = asyncio.current_task()
        tasks = [task for task in self._requests if task is not current]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)


# Plain request/reply between nodes.

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

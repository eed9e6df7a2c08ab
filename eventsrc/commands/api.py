"""The coordinator's command API: subjects and request models (JSON over NATS micro).

Every request gets one reply, a JSON object: ``{"ok": true, "data": ...}`` or
``{"ok": false, "error": {"code": ..., "message": ...}}`` with a one-line message (error
replies also carry the micro error headers, so standard NATS tooling counts them).
Codes: ``invalid`` (bad JSON, field or id), ``not_found``, ``conflict``, ``queue_full``,
``too_large``, ``unavailable``, ``refused``; ``internal`` only for a bug. ``ERROR_CODES``
maps them to our errors both ways (the coordinator sends, the client raises). Requests
are strict JSON: no NaN/Infinity, no integers beyond 64 bits.
"""

from __future__ import annotations

from typing import Final, NamedTuple

from pydantic import Field

from eventsrc.commands.base import Command
from eventsrc.commands.tasks import QueueFullError, SubmitTask
from eventsrc.errors import (
    CoordinatorUnavailableError,
    DomainError,
    EventsrcError,
    InvalidRequestError,
    NotFoundError,
    NotLeaderError,
    PayloadTooLargeError,
    RefusedError,
    StoreError,
)
from eventsrc.events import SkillMetadata, Token

SERVICE_NAME: Final = "eventsrc"
API_PREFIX: Final = "eventsrc.api"

ERR_INVALID: Final = "invalid"
ERR_NOT_FOUND: Final = "not_found"
ERR_CONFLICT: Final = "conflict"
ERR_QUEUE_FULL: Final = "queue_full"
ERR_REFUSED: Final = "refused"
ERR_UNAVAILABLE: Final = "unavailable"
ERR_TOO_LARGE: Final = "too_large"
ERR_INTERNAL: Final = "internal"


class ErrorCode(NamedTuple):
    """One row of the error table: ``code`` is sent for an error of any class in
    ``sent_for``; the client raises ``raised_as`` for it, a class of the same family (a
    base or a subclass of each), so ``except`` clauses work on both sides."""

    code: str
    raised_as: type[EventsrcError]
    sent_for: tuple[type[EventsrcError], ...]


ERROR_CODES: Final = (
    ErrorCode(ERR_INVALID, InvalidRequestError, (InvalidRequestError,)),
    ErrorCode(ERR_NOT_FOUND, NotFoundError, (NotFoundError,)),
    ErrorCode(ERR_QUEUE_FULL, QueueFullError, (QueueFullError,)),
    ErrorCode(ERR_CONFLICT, DomainError, (DomainError,)),
    ErrorCode(ERR_TOO_LARGE, PayloadTooLargeError, (PayloadTooLargeError,)),
    # StoreFullError is a RefusedError: full until someone acts, so asking again is no
    # help. This row comes before StoreError's.
    ErrorCode(ERR_REFUSED, RefusedError, (RefusedError,)),
    ErrorCode(ERR_UNAVAILABLE, CoordinatorUnavailableError, (StoreError, NotLeaderError)),
)
"""The one table between our errors and the API's codes. The first row that matches an
error wins (subclasses before their bases); any other EventsrcError is ``refused``."""


def code_for(kind: type[EventsrcError]) -> str:
    """The code the API sends for an error of class ``kind``."""
    for row in ERROR_CODES:
        if issubclass(kind, row.sent_for):
            return row.code
    return ERR_REFUSED


def error_for(code: str) -> type[EventsrcError]:
    """The class the client raises for an error reply with ``code`` (``internal`` or a
    code this version does not know: EventsrcError)."""
    return next((row.raised_as for row in ERROR_CODES if row.code == code), EventsrcError)


MAX_WAIT_S: Final = 3600.0
"""The longest a ``run`` or ``wait`` request is held open; wait again for longer."""


def subject(endpoint: str) -> str:
    """The request subject of an endpoint (``eventsrc.api.submit``)."""
    return f"{API_PREFIX}.{endpoint}"


class GetTask(Command):
    task_id: Token


class WaitTask(Command):
    """Answer once the task is terminal, or with its state when ``wait_s`` passed."""

    task_id: Token
    wait_s: float = Field(default=60.0, ge=0, le=MAX_WAIT_S)


class RunTask(SubmitTask):
    """Submit, then wait as ``WaitTask`` does: one request from submission to result."""

    wait_s: float = Field(default=60.0, ge=0, le=MAX_WAIT_S)


MAX_BATCH: Final = 1000
"""The most tasks one ``submit_many`` request carries (split a longer list)."""


class SubmitTasks(Command):
    """Many submissions in one request, each decided as ``submit`` decides one (and as
    idempotent); refused as a whole, with nothing stored, if any one is refused."""

    tasks: tuple[SubmitTask, ...] = Field(min_length=1, max_length=MAX_BATCH)


class ListTasks(Command):
    all: bool = False
    limit: int = Field(default=1000, ge=1, le=100_000)


class Empty(Command):
    """A request without fields (list nodes, skills, status)."""


class RegisterSkills(Command):
    """Catalog proposals (from nodes): register or update each skill."""

    skills: tuple[SkillMetadata, ...]


class NodeHello(Command):
    """A node introduces itself before joining; the coordinator prepares its consumer."""

    node_id: Token
    incarnation: str
    event_schema: int = 1
    eventsrc_version: str = ""
    # The node reads an ``in_use`` answer (older nodes get an error instead).
    answers_in_use: bool = False
    # An incarnation of this id whose process the node found dead on its own host.
    replaces: str = ""

"""The one error root of eventsrc and the tree below it.

Every error says what was wrong and what to do about it, in one line, so a CLI can
print ``str(err)`` and exit without a traceback. Classes defined outside this module
say where (in brackets); the command API sends each error as a code and the client
raises it back by the one table in ``eventsrc.commands.api``.

::

    EventsrcError
    ├── ConfigError               a config file, flag or environment value is unusable
    ├── EventError
    │   └── UndecodableEventError a stored message is not a valid event (carries seq, raw)
    │       └── UnknownEventTypeError  an event type this code does not know
    ├── StoreError
    │   ├── BatchRefusedError     the server turned an atomic batch away whole; nothing of it stored
    │   ├── ConcurrencyError      the aggregate moved on since it was read (append refused)
    │   ├── DuplicateEventError   the event id was already stored (publish deduplicated)
    │   ├── StoreFullError        the stream is at its limits; nothing was appended
    │   │                         (also a RefusedError)
    │   ├── PayloadTooLargeError  an event or payload is bigger than the server or a limit allows
    │   ├── RawPublishError       a batch of stored messages (an import) stopped publishing at
    │   │                         one of them [eventsrc.store.raw]
    │   └── ServerUnavailableError no NATS server answers at the given URL
    │       ├── RequestTimeoutError  a coordinator or node request got no answer in time
    │       └── CoordinatorUnavailableError  the coordinator cannot do it now; ask again
    │                                 soon (also a NotLeaderError)
    ├── NotCaughtUpError          a projection did not reach an awaited event in time
    ├── NotLeaderError            this coordinator was deposed by a newer leader epoch
    │   └── LeaseLostError        the leader lease expired or another coordinator holds it
    ├── RefusedError              the coordinator refused; asking again will not help
    ├── InvalidRequestError       a request is malformed (bad JSON, wrong field)
    │   ├── InvalidIdError        an id that would become a subject token is malformed
    │   ├── UsageError            a replay_tools flag value is unusable [replay_tools.common]
    │   └── ExportFileError       an export file cannot be imported [replay_tools.backup]
    ├── NotPermittedError         NATS refused a subject to these credentials (secure mode)
    ├── DomainError               a command was refused by the rules (unknown skill, ...)
    │   ├── NotFoundError         no such task, node or skill
    │   ├── NodeIdInUseError      a live process already holds this node id
    │   └── QueueFullError        the waiting queue is at its limit [eventsrc.commands.tasks]
    ├── SkillFileError            a SKILL.md cannot be used [eventsrc.node.gating]
    ├── OpenClawListError         ``openclaw skills list`` did not answer usably
    │                             [eventsrc.node.openclaw]
    ├── ToolchainError            Node.js or the openclaw CLI cannot be installed or run
    │                             here [eventsrc.openclaw_toolchain]
    └── EmbeddedServerError       the embedded nats-server could not be found or started

Outside the tree, because it never leaves the store: SubjectRefusedError
[eventsrc.store.publisher], a nats-py error the store turns into NotPermittedError
(eventsrc.store.transport for requests, the event store for appends);
and, because it never leaves the projections, Problem [eventsrc.projections.problem]: a
fold handler raises it for an event that cannot change the state, ``apply`` counts it.

``first_problem`` turns a pydantic ValidationError into the one line these errors carry.

This module imports nothing of ours so that every layer, ``eventsrc.events`` included,
may raise these errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


class EventsrcError(Exception):
    """Root of every error eventsrc raises on purpose."""


class ConfigError(EventsrcError):
    """A configuration value is missing, malformed or contradictory."""


class EventError(EventsrcError):
    """An event could not be encoded or decoded."""


class UndecodableEventError(EventError):
    """A stored message is not a valid event; it is skipped and reported, never fatal.

    Carries the stream sequence, the subject and the raw bytes so an operator can look
    at exactly what was stored.
    """

    def __init__(self, reason: str, *, seq: int = 0, subject: str = "", raw: bytes = b"") -> None:
        self.reason = reason
        self.seq = seq
        self.subject = subject
        self.raw = raw
        # The server time it was stored at, when read from a stream.
        self.time: datetime | None = None
        where = f" at stream sequence {seq} ({subject})" if seq else ""
        super().__init__(
            f"undecodable event{where}: {reason}; it was skipped — inspect it with "
            f"`replay_tools audit` or remove it from the stream"
        )


class UnknownEventTypeError(UndecodableEventError):
    """An event type this version of eventsrc does not know (written by newer code?)."""


class StoreError(EventsrcError):
    """The event store refused or could not complete an operation."""


class ConcurrencyError(StoreError):
    """An optimistic-concurrency append lost: the aggregate has newer events."""

    def __init__(self, subject: str, expected_seq: int) -> None:
        self.subject = subject
        self.expected_seq = expected_seq
        super().__init__(
            f"conflict on {subject}: expected its last event at sequence {expected_seq} but "
            f"it has moved on; re-read the aggregate and decide again"
        )


class BatchRefusedError(StoreError):
    """The server turned an atomic batch away before storing any of it (too many batches
    in flight, or it lost part of the batch): append its events one by one instead."""


class DuplicateEventError(StoreError):
    """The event id was stored before; the server deduplicated this publish."""

    def __init__(self, event_id: str, seq: int) -> None:
        self.event_id = event_id
        self.seq = seq
        super().__init__(f"event {event_id} was already stored at sequence {seq}")


class RefusedError(EventsrcError):
    """The coordinator refused the request for a reason asking again will not fix
    (its event stream is full, its own credentials are refused, ...)."""


class StoreFullError(StoreError, RefusedError):
    """The stream reached its configured limits and refuses new events."""


class PayloadTooLargeError(StoreError):
    """An event, payload or request is larger than the server's maximum payload or a
    configured limit (``max_payload_bytes``); nothing was stored."""


class ServerUnavailableError(StoreError):
    """No NATS server answered; the one-line message says which URL and what to try."""


class RequestTimeoutError(ServerUnavailableError):
    """A request reached a coordinator or a node (or might have) but no answer came in
    time."""


class EmbeddedServerError(EventsrcError):
    """The embedded nats-server binary is missing or failed to start."""


class NotCaughtUpError(EventsrcError):
    """A projection did not apply an awaited event within the time given."""


class DomainError(EventsrcError):
    """A command was refused by the domain rules; the message says which and why."""


class NodeIdInUseError(DomainError):
    """Another live process is a member under this node id."""


class NotFoundError(DomainError, LookupError):
    """No task, node or skill with that id."""


class InvalidRequestError(EventsrcError, ValueError):
    """A request is malformed: bad JSON, a missing or wrong field."""


class InvalidIdError(InvalidRequestError):
    """An id (skill name, node id, task id) that cannot become a NATS subject token."""


class NotPermittedError(EventsrcError):
    """The NATS server refused a publish to these credentials (a secure-mode role);
    ``subject`` is the refused subject where known."""

    def __init__(self, message: str, *, subject: str = "") -> None:
        super().__init__(message)
        self.subject = subject


class NotLeaderError(EventsrcError):
    """A newer coordinator leads; this one must not decide anything any more."""


class LeaseLostError(NotLeaderError):
    """The leader lease in JetStream KV is no longer ours (expired, taken or deleted)."""


class CoordinatorUnavailableError(ServerUnavailableError, NotLeaderError):
    """The coordinator answered that it cannot do it now: a stream electing a leader, a
    leader stepping down. The same request may succeed a few seconds later."""


@dataclass(frozen=True, slots=True)
class ValidationProblem:
    """The first problem of a pydantic validation error; ``str()`` is its one line."""

    where: str
    what: str
    more: int

    def __str__(self) -> str:
        others = f" (+{self.more} more)" if self.more else ""
        return f"{self.where}: {self.what}{others}"


def first_problem(err: ValidationError, *, root: str = "value") -> ValidationProblem:
    """Where and what the first problem is (``root`` when it is the whole value), and how
    many more there are: ``payload.size: Input should be a valid integer (+1 more)``."""
    first = err.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or root
    # A validator's own ValueError already says what is wrong; drop pydantic's prefix.
    cause = first.get("ctx", {}).get("error") if first["type"] == "value_error" else None
    what = str(cause) if cause is not None else first["msg"]
    return ValidationProblem(where=where, what=what, more=err.error_count() - 1)

"""The one error root of eventsrc and the tree below it.

Every error says what was wrong and what to do about it, in one line, so a CLI can
print ``str(err)`` and exit without a traceback.

::

    EventsrcError
    ├── InvalidIdError            an id that would become a subject token is malformed
    ├── ConfigError               a config file, flag or environment value is unusable
    ├── EventError
    │   └── UndecodableEventError a stored message is not a valid event (carries seq, raw)
    │       └── UnknownEventTypeError  an event type this code does not know
    ├── StoreError
    │   ├── ConcurrencyError      the aggregate moved on since it was read (append refused)
    │   ├── DuplicateEventError   the event id was already stored (publish deduplicated)
    │   ├── StoreFullError        the stream is at its limits; nothing was appended
    │   ├── PayloadTooLargeError  an event or payload is bigger than the server or a limit allows
    │   └── ServerUnavailableError no NATS server answers at the given URL
    ├── NotCaughtUpError          a projection did not reach an awaited event in time
    ├── NotLeaderError            this coordinator was deposed by a newer leader epoch
    │   └── LeaseLostError        the leader lease expired or another coordinator holds it
    ├── InvalidRequestError       a request is malformed (bad JSON, wrong field)
    ├── NotPermittedError         NATS refused a subject to these credentials (secure mode)
    ├── DomainError               a command was refused by the rules (unknown skill, ...)
    │   ├── NotFoundError         no such task, node or skill
    │   └── NodeIdInUseError      a live process already holds this node id
    └── EmbeddedServerError       the embedded nats-server could not be found or started

This module imports nothing of ours so that every layer, ``eventsrc.events`` included,
may raise these errors.
"""

from __future__ import annotations

from datetime import datetime


class EventsrcError(Exception):
    """Root of every error eventsrc raises on purpose."""


class InvalidIdError(EventsrcError, ValueError):
    """An id (skill name, node id, task id) that cannot become a NATS subject token."""


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


class DuplicateEventError(StoreError):
    """The event id was stored before; the server deduplicated this publish."""

    def __init__(self, event_id: str, seq: int) -> None:
        self.event_id = event_id
        self.seq = seq
        super().__init__(f"event {event_id} was already stored at sequence {seq}")


class StoreFullError(StoreError):
    """The stream reached its configured limits and refuses new events."""


class PayloadTooLargeError(StoreError):
    """An event, payload or request is larger than the server's maximum payload or a
    configured limit (``max_payload_bytes``); nothing was stored."""


class ServerUnavailableError(StoreError):
    """No NATS server answered; the one-line message says which URL and what to try."""


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

"""A node's work: its durable pull consumer on its assignment filter, the one place for
that consumer's settings.

The coordinator creates the consumer when a node says hello (``assignment_consumer``:
name ``node-<id>``, filters ``evt.task.*.to.<id>`` and ``evt.cluster``, explicit acks,
``ASSIGNMENT_ACK_WAIT_S``, no limit on redeliveries) and a returning node keeps it, so
what it had not acked is delivered again. The leader elections on ``evt.cluster`` come
along so that the node's fence learns of each one in stream order, ahead of any
assignment stored after it, without a second read of its assignments
(``carries_elections`` tells a consumer made before that from one made since).

The node takes its work with an ``AssignmentFeed``: each message is decoded here and
handed on as a ``Delivery`` (the event, or the UndecodableEventError saying why it is
not one, as the store's readers yield them) with its ack handle. The node never sees a
NATS message.

Messages arrive through ``PullFeed``, our own pull loop rather than nats-py's ``fetch``:
a worker wants each assignment the moment it is stored, and ``fetch`` sends two pull
requests per call and then waits for the rest of its batch (feed.py says more). The
hot path adds nothing per message to what the node did with nats-py's ``Msg`` itself:
one small object, decoded once, and an ack that is one publish.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

import nats.errors
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from eventsrc.errors import InvalidIdError, ServerUnavailableError, UndecodableEventError
from eventsrc.events import Event, decode
from eventsrc.events.subjects import CLUSTER_SUBJECT, assignments_filter
from eventsrc.ports import EVENTS_STREAM
from eventsrc.store.connection import Connection
from eventsrc.store.feed import PullFeed, ack_reply

ASSIGNMENT_ACK_WAIT_S: Final = 30.0
"""How long JetStream waits for a node's ack (or in-progress mark) before it delivers an
assignment again."""

CONSUMER_NAME_FORBIDDEN: Final = ("/", "\\")
"""Characters of a valid id that a JetStream consumer name may not hold (they would
become paths in the server's file store)."""

_IN_PROGRESS: Final = b"+WPI"


def usable_node_id(node_id: str) -> str:
    """``node_id`` if it can name the node's work consumer, else InvalidIdError (the
    subject-token rules of ``validate_token`` are checked there, not here)."""
    for bad in CONSUMER_NAME_FORBIDDEN:
        if bad in node_id:
            raise InvalidIdError(
                f"node id {node_id!r} contains {bad!r}, which a JetStream consumer name "
                f"cannot; choose another node id"
            )
    return node_id


def assignment_consumer_name(node_id: str) -> str:
    """The durable pull consumer ``node_id`` takes its work from; raises InvalidIdError
    as ``usable_node_id`` does."""
    return f"node-{usable_node_id(node_id)}"


def assignment_consumer(node_id: str) -> ConsumerConfig:
    """The settings of ``node_id``'s work consumer on the events stream (the coordinator
    creates it); raises InvalidIdError as ``assignment_consumer_name`` does."""
    return ConsumerConfig(
        durable_name=assignment_consumer_name(node_id),
        filter_subjects=[assignments_filter(node_id), CLUSTER_SUBJECT],
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.NEW,
        ack_wait=ASSIGNMENT_ACK_WAIT_S,
        max_deliver=-1,
    )


def carries_elections(config: ConsumerConfig) -> bool:
    """Whether a work consumer delivers the leader elections too (made as
    ``assignment_consumer`` makes them now; one made before filters assignments only)."""
    return CLUSTER_SUBJECT in (config.filter_subjects or ())


class Delivery:
    """One message of the work consumer: its ``event`` (or the UndecodableEventError saying
    why it is not one) and its ack handle. Unacked, JetStream delivers it again after
    ``ASSIGNMENT_ACK_WAIT_S``."""

    __slots__ = ("_msg", "_nc", "_reply", "event")

    event: Event | UndecodableEventError

    def __init__(self, nc: Connection, msg: Msg) -> None:
        self._nc = nc
        self._msg = msg
        self._reply = ack_reply(msg)  # read once: the fence and the node ask several times
        try:
            self.event = decode(msg.data, subject=msg.subject)
        except UndecodableEventError as err:
            self.event = err

    @property
    def delivered(self) -> int:
        """How often JetStream delivered this message (1 the first time)."""
        return self._reply.delivered

    @property
    def consumer_seq(self) -> int:
        """The consumer's own sequence of this delivery (one more for each delivery it
        made, redeliveries included)."""
        return self._reply.consumer_seq

    @property
    def seq(self) -> int:
        """The sequence of EVENTSRC_EVENTS the message is stored at."""
        return self._reply.stream_seq

    async def ack(self) -> None:
        """Done with: JetStream does not deliver it again. Raises ServerUnavailableError
        when the ack could not be sent."""
        try:
            # What nats-py's Msg.ack sends, without its extra await per message.
            await self._nc.publish(self._msg.reply)
        except nats.errors.Error as err:
            raise _not_sent("ack", err) from err

    async def in_progress(self) -> None:
        """Still working on it: JetStream's ack wait starts again. Raises
        ServerUnavailableError when the mark could not be sent."""
        try:
            await self._nc.publish(self._msg.reply, _IN_PROGRESS)
        except nats.errors.Error as err:
            raise _not_sent("in-progress mark", err) from err


OnDelivery = Callable[[Delivery], Awaitable[None]]


class AssignmentFeed:
    """Hands every delivery of a node's work consumer to ``on_delivery``, one at a time,
    in delivery order; acking is the caller's."""

    def __init__(
        self, nc: Connection, *, consumer: str, on_delivery: OnDelivery, batch: int
    ) -> None:
        self._feed = PullFeed(
            nc,
            stream=EVENTS_STREAM,
            consumer=consumer,
            on_message=lambda msg: on_delivery(Delivery(nc, msg)),
            batch=batch,
        )

    async def start(self) -> None:
        """Ask for work; deliveries start as assignments are stored."""
        await self._feed.start()

    async def stop(self) -> None:
        """Stop asking and receiving; what was delivered but not acked is delivered again
        after the ack wait."""
        await self._feed.stop()


def _not_sent(what: str, err: nats.errors.Error) -> ServerUnavailableError:
    reason = str(err) or type(err).__name__
    return ServerUnavailableError(f"NATS did not take the {what} ({reason})")

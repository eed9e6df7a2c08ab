"""Secure mode's accounts and permissions: who may publish and subscribe to what.

The coordinators' account holds the streams and exports to the nodes' and the clients'
accounts only the subjects their roles use; inside each account, per-user rules narrow
that to one identity (node A may not write node B's subjects) and its own inbox.
"""

from __future__ import annotations

from typing import Any, Final

from eventsrc.commands.api import API_PREFIX
from eventsrc.commands.api import subject as api_subject
from eventsrc.errors import ConfigError
from eventsrc.events.subjects import (
    EVENTS_FILTER,
    HEARTBEATS_FILTER,
    OUTPUT_FILTER,
    heartbeat_subject,
    node_subject,
    output_subject,
    reports_filter,
)
from eventsrc.ports import EVENTS_STREAM, HEARTBEATS_STREAM, OUTPUT_STREAM
from eventsrc.store.assignments import assignment_consumer_name
from eventsrc.store.credentials import (
    JS_API,
    JS_API_IMPORTED,
    ROLE_COORDINATOR,
    ROLE_NODE,
    ROLE_READER,
    ROLE_SUBMITTER,
    inbox_prefix,
)
from eventsrc.store.lease import LEADER_BUCKET_STREAM

READ_ENDPOINTS: Final = (
    "get",
    "wait",
    "tasks",
    "nodes",
    "skills",
    "status",
    "schedule_list",
    "schedule_next",
    "limits",
)
SUBMIT_ENDPOINTS: Final = (
    "submit",
    "submit_many",
    "run",
    "cancel",
    "drain",
    "schedule_add",
    "schedule_pause",
    "schedule_resume",
    "schedule_remove",
    "limit_set",
    "limit_remove",
)
NODE_ENDPOINTS: Final = ("node_hello", "register_skills", "wait")

ACCOUNT_CLUSTER: Final = "EVENTSRC"
"""The coordinators' account: the streams, the leader bucket, the API service."""
ACCOUNT_NODES: Final = "EVENTSRC_NODES"
ACCOUNT_CLIENTS: Final = "EVENTSRC_CLIENTS"
ACCOUNT_OF_ROLE: Final = {
    ROLE_COORDINATOR: ACCOUNT_CLUSTER,
    ROLE_NODE: ACCOUNT_NODES,
    ROLE_SUBMITTER: ACCOUNT_CLIENTS,
    ROLE_READER: ACCOUNT_CLIENTS,
}
RESPONSE_THRESHOLD: Final = "15m"
"""How long an imported request's reply may take (``wait`` blocks for up to ten minutes);
NATS' default of two minutes would drop a late answer."""

COORDINATOR_PUBLISH: Final = (
    EVENTS_FILTER,
    HEARTBEATS_FILTER,  # a local node running inside the coordinator (--local-node)
    OUTPUT_FILTER,  # and the progress and output of its tasks
    f"{JS_API}.>",
    "$JS.ACK.>",
    "$JS.FC.>",
    "$KV.EVENTSRC_LEADER.>",
    "$O.EVENTSRC_SNAPSHOTS.>",
    f"{API_PREFIX}.>",
    "$SRV.>",
    "_R_.>",  # replies to requests from the other accounts (NATS maps their reply subjects)
)

NODE_WRITES: Final = (
    node_subject("*"),
    reports_filter("*"),
    heartbeat_subject("*"),
    output_subject("*", "*"),
)
"""What nodes publish into the streams (each node only its own, by its permissions)."""


def stream_reads(api: str = JS_API_IMPORTED) -> list[str]:
    """Reading without consumers: stream info and single message gets (request/reply).

    Direct gets are left out on purpose: they reply with the stored message itself, which
    nobody needs. The leader bucket's stream info is in (not its messages): it lists who
    stands by, which reveals only coordinator ids, for ``eventsrc status`` and the
    dashboard.
    """
    return [
        *(
            f"{api}.STREAM.{op}.{stream}"
            for stream in (EVENTS_STREAM, HEARTBEATS_STREAM, OUTPUT_STREAM)
            for op in ("INFO", "MSG.GET")
        ),
        f"{api}.STREAM.INFO.{LEADER_BUCKET_STREAM}",
    ]


def _work(api: str, consumer: str) -> list[str]:
    """A node's pull consumer: ask for work, look at it, ack (``consumer`` may be ``*``)."""
    return [
        f"{api}.CONSUMER.MSG.NEXT.{EVENTS_STREAM}.{consumer}",
        f"{api}.CONSUMER.INFO.{EVENTS_STREAM}.{consumer}",
    ]


def exports() -> list[dict[str, Any]]:
    """What the cluster's account offers the others: every subject a node or client may
    publish to, as a service (requests and plain publishes alike)."""
    nodes, both = [ACCOUNT_NODES], [ACCOUNT_NODES, ACCOUNT_CLIENTS]
    pull, info = _work(JS_API, "*")
    return [
        *({"service": subject, "accounts": nodes} for subject in NODE_WRITES),
        # A pull request is answered by a stream of messages, the last up to its expiry.
        {"service": pull, "response_type": "stream", "accounts": nodes},
        {"service": info, "accounts": nodes},
        {"service": f"$JS.ACK.{EVENTS_STREAM}.>", "accounts": nodes},
        *({"service": subject, "accounts": both} for subject in stream_reads(JS_API)),
        {"service": f"{API_PREFIX}.>", "response_threshold": RESPONSE_THRESHOLD, "accounts": both},
        {"service": "$SRV.>", "response_type": "stream", "accounts": [ACCOUNT_CLIENTS]},
    ]


def imports(account: str) -> list[dict[str, Any]]:
    """An account's imports of the cluster's exports; the JetStream API lands under
    ``JS_API_IMPORTED``, everything else under its own subject."""
    found = []
    for export in exports():
        if account not in export["accounts"]:
            continue
        subject: str = export["service"]
        local = JS_API_IMPORTED + subject[len(JS_API) :] if subject.startswith(JS_API) else subject
        found.append({"service": {"account": ACCOUNT_CLUSTER, "subject": subject}, "to": local})
    return found


def _api(endpoints: tuple[str, ...]) -> list[str]:
    return [api_subject(name) for name in endpoints]


def permissions(role: str, node_id: str | None = None) -> dict[str, Any]:
    """The nats-server permissions map of an identity (``node_id`` for nodes), inside its
    role's account: the coordinator's publish list is broad and it may subscribe to
    anything; every other identity subscribes only to its own inbox."""
    name = identity_name(role, node_id)
    if role == ROLE_COORDINATOR:
        allow = [*COORDINATOR_PUBLISH, f"{inbox_prefix(name)}.>"]
        return {"publish": {"allow": allow}, "subscribe": {"allow": [">"]}}
    if role == ROLE_READER:
        allow = [*_api(READ_ENDPOINTS), "$SRV.>", *stream_reads()]
    elif role == ROLE_SUBMITTER:
        allow = [*_api(READ_ENDPOINTS), *_api(SUBMIT_ENDPOINTS), "$SRV.>", *stream_reads()]
    elif role == ROLE_NODE:
        assert node_id is not None
        consumer = assignment_consumer_name(node_id)
        allow = [
            node_subject(node_id),
            heartbeat_subject(node_id),
            reports_filter(node_id),
            output_subject("*", node_id),  # progress and output of the tasks it runs
            *_work(JS_API_IMPORTED, consumer),
            f"$JS.ACK.{EVENTS_STREAM}.{consumer}.>",
            *_api(NODE_ENDPOINTS),
            *stream_reads(),
        ]
    else:
        raise ConfigError(f"unknown role {role!r}")
    return {"publish": {"allow": allow}, "subscribe": {"allow": [f"{inbox_prefix(name)}.>"]}}


def identity_name(role: str, node_id: str | None = None) -> str:
    """An identity's name (its credentials file, inbox and certificate): the role, or
    ``node-<id>`` for a node."""
    return f"node-{node_id}" if role == ROLE_NODE else role

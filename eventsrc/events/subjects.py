"""The subjects events are stored under, made in one place (docs/design.md, Streams and
subjects). Every id given here is a validated subject token."""

from __future__ import annotations


def node_subject(node_id: str) -> str:
    """Membership and instance events of one node: ``evt.node.<node_id>``."""
    return f"evt.node.{node_id}"


def heartbeat_subject(node_id: str) -> str:
    """A node's heartbeats in EVENTSRC_HEARTBEATS: ``hb.<node_id>``."""
    return f"hb.{node_id}"

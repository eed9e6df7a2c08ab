"""The one way a NodeAgent is built from a NodeConfig, for ``python -m eventsrc.node`` and
for the coordinator's local node alike."""

from __future__ import annotations

from collections.abc import Mapping

from eventsrc.config import NodeConfig
from eventsrc.node.agent import NodeAgent
from eventsrc.node.setup import NodeSkills, discover, node_id_of
from eventsrc.store import Connection, JetStreamEventStore


def build_node_agent(
    nc: Connection,
    store: JetStreamEventStore,
    config: NodeConfig,
    *,
    env: Mapping[str, str],
    node_id: str | None = None,
    found: NodeSkills | None = None,
) -> NodeAgent:
    """A NodeAgent with every setting of ``config``, rescanning its skills as configured.

    ``node_id`` defaults to the config's (else the host name); ``found`` to a discovery
    now. Raises ConfigError for a configured skill that does not exist.
    """
    environment = dict(env)
    node_id = node_id or node_id_of(config)
    found = found if found is not None else discover(config, environment, node_id=node_id)
    turns = found.turns
    return NodeAgent(
        nc,
        store,
        node_id=node_id,
        skills=found.skills,
        executors=found.executors,
        unavailable=found.unavailable,
        capacity=config.capacity,
        heartbeat_interval=config.heartbeat_interval,
        labels=dict(config.labels),
        drain_timeout=config.drain_timeout,
        rescan=lambda: discover(config, environment, node_id=node_id, turns=turns),
        rescan_interval=config.rescan_interval,
        max_result_bytes=config.max_result_bytes,
    )

"""``python -m eventsrc.coordinator``: the main job, and the composition root that hands
the coordinator the node package's builder for its local node."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

from eventsrc.config import (
    CoordinatorConfig,
    NodeConfig,
    add_connection_options,
    connection_settings,
    load_config,
)
from eventsrc.coordinator.app import Coordinator
from eventsrc.dashboard.server import (
    DEFAULT_HTTP,
    dashboard_address,
    open_dashboard,
    read_token,
    secure_mode,
)
from eventsrc.metrics import track_node
from eventsrc.node.agent import NodeAgent
from eventsrc.node.assemble import build_node_agent
from eventsrc.node.setup import local_node_id
from eventsrc.runtime import EXIT_OK, configure_logging, run_program, stop_event_on_signals
from eventsrc.store import Connection, JetStreamEventStore


def build_local_node(
    nc: Connection, store: JetStreamEventStore, *, node_id: str | None
) -> NodeAgent:
    """A cluster of one's node: built-in python and ./skills, named ``<host>-local``
    unless configured."""
    config = NodeConfig(node_id=node_id or local_node_id(), skills=("python",))
    agent = build_node_agent(nc, store, config, env=os.environ)
    track_node(agent.node_id, lambda: agent.running)
    return agent


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m eventsrc.coordinator",
        description="Run the eventsrc coordinator. With no NATS URL it starts an embedded "
        "nats-server with JetStream on its data dir.",
    )
    parser.add_argument("--nats-url", help="NATS URL(s), comma-separated for a cluster")
    parser.add_argument("--data-dir", type=Path, help="data dir (default ./.eventsrc)")
    parser.add_argument("--stale-after", type=float, help="seconds without heartbeat")
    parser.add_argument("--sweep-interval", type=float, help="seconds between sweeps")
    parser.add_argument(
        "--replicas", type=int, help="stream replicas on a JetStream cluster (default 1; 3 for R3)"
    )
    parser.add_argument(
        "--lease-s", type=float, help="leader lease in seconds, for several coordinators"
    )
    parser.add_argument("--config", help="TOML config file")
    add_connection_options(parser.add_argument)
    parser.add_argument(
        "--embedded-port", type=int, help="port of the embedded server (0 = any free port)"
    )
    parser.add_argument(
        "--sync-interval",
        metavar="always|DURATION",
        help="when the embedded server flushes to disk: always (default: before every "
        "acknowledgement) or a duration such as 2m (faster; a power loss can lose what "
        "was acknowledged since the last flush)",
    )
    parser.add_argument(
        "--local-node",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run a node in this process (default: only with the embedded server)",
    )
    parser.add_argument(
        "--http",
        metavar="HOST:PORT",
        help=f"serve the dashboard and /metrics there, or off (default: {DEFAULT_HTTP} "
        "with the embedded server, else off)",
    )
    parser.add_argument(
        "--http-token", help="token the dashboard asks for (or EVENTSRC_HTTP_TOKEN)"
    )
    parser.add_argument("--http-token-file", type=Path, help="a file holding that token")
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING, ...")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = parse_args(argv)

    async def run() -> int:
        config = load_config(
            CoordinatorConfig,
            file=args.config,
            env=os.environ,
            flags={
                "nats_url": args.nats_url,
                "data_dir": args.data_dir,
                "stale_after": args.stale_after,
                "sweep_interval": args.sweep_interval,
                "replicas": args.replicas,
                "lease_s": args.lease_s,
                **connection_settings(vars(args), os.environ),
                "embedded_port": args.embedded_port,
                "sync_interval": args.sync_interval,
                "local_node": args.local_node,
                "log_level": args.log_level,
                "http": args.http,
                "http_token": args.http_token,
                "http_token_file": args.http_token_file,
            },
        )
        configure_logging(config.log_level)
        token = read_token(config.http_token, config.http_token_file)
        http = dashboard_address(
            config.http, default=not config.nats_url, token=token, secure=secure_mode(config)
        )
        stop = stop_event_on_signals()
        async with Coordinator(config, local_node=build_local_node) as coordinator:
            where = "embedded nats-server" if coordinator.embedded else "NATS"
            role = "leader" if coordinator.leading else "standby"
            print(
                f"eventsrc coordinator ready ({role}), {where} at {','.join(coordinator.servers)}",
                flush=True,
            )
            assert coordinator.runner is not None
            dashboard = None
            if http is not None:
                dashboard = await open_dashboard(
                    coordinator.runner,
                    coordinator.store,
                    http,
                    token=token,
                    role=lambda: "leader" if coordinator.leading else "standby",
                    identity=coordinator.coordinator_id,
                    standbys=coordinator.leadership.standbys if coordinator.leadership else None,
                )
            if dashboard is not None:
                print(f"dashboard at {dashboard.url} (metrics at /metrics)", flush=True)
            if coordinator.local_node is not None:
                node = coordinator.local_node
                print(
                    f"local node {node.node_id} runs here (skills: python and ./skills)", flush=True
                )
            try:
                await stop.wait()
            finally:
                if dashboard is not None:
                    await dashboard.close()
        return EXIT_OK

    return run_program(run)


if __name__ == "__main__":
    raise SystemExit(main())

"""``python -m eventsrc.node``: turn this machine into a cluster member."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from collections.abc import Sequence
from pathlib import Path

from eventsrc.config import (
    NodeConfig,
    add_connection_options,
    connection_settings,
    load_config,
    nats_options,
)
from eventsrc.errors import ConfigError, InvalidRequestError, NotPermittedError
from eventsrc.events.subjects import (
    heartbeat_subject,
    node_subject,
    reports_filter,
    subject_matches,
)
from eventsrc.metrics import MetricsServer, track_node
from eventsrc.node.assemble import build_node_agent
from eventsrc.node.setup import discover, node_id_of
from eventsrc.runtime import (
    EXIT_OK,
    configure_logging,
    parse_host_port,
    parse_labels,
    run_program,
    stop_event_on_signals,
)
from eventsrc.store import connect_nats, resolve_servers
from eventsrc.store.getreads import event_store


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m eventsrc.node",
        description="Run an eventsrc worker node: advertise skills, heartbeat, run tasks.",
    )
    parser.add_argument("--nats-url", help="NATS URL(s), comma-separated for a cluster")
    parser.add_argument("--node-id", help="node id (default: the host name)")
    parser.add_argument("--skills-dir", action="append", type=Path, help="OpenClaw skills folder")
    parser.add_argument("--skill", action="append", help="advertise a built-in skill by name")
    parser.add_argument("--capacity", type=int, help="tasks run at once (default 4)")
    parser.add_argument("--heartbeat-interval", type=float, help="seconds (default 5)")
    parser.add_argument("--label", action="append", help="K=V label for placement")
    parser.add_argument(
        "--rescan-interval", type=float, help="seconds between skill rescans (default 60, 0: off)"
    )
    parser.add_argument("--openclaw-agent", help="the OpenClaw agent served (default: its default)")
    parser.add_argument("--openclaw-model", help="provider/model for OpenClaw agent turns")
    parser.add_argument("--openclaw-max-turns", type=int, help="agent turns at once (1 per GB)")
    parser.add_argument("--config", help="TOML config file")
    add_connection_options(parser.add_argument)
    parser.add_argument(
        "--metrics", metavar="HOST:PORT", help="serve Prometheus metrics at /metrics there"
    )
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING, ...")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = parse_args(argv)

    async def run() -> int:
        metrics_at = _metrics_address(args.metrics)
        config = load_config(
            NodeConfig,
            file=args.config,
            env=os.environ,
            flags={
                "nats_url": args.nats_url,
                "node_id": args.node_id,
                "skills_dirs": tuple(args.skills_dir) if args.skills_dir else None,
                "skills": tuple(args.skill) if args.skill else None,
                "capacity": args.capacity,
                "heartbeat_interval": args.heartbeat_interval,
                "labels": parse_labels(args.label) or None,
                "rescan_interval": args.rescan_interval,
                "openclaw_agent": args.openclaw_agent,
                "openclaw_model": args.openclaw_model,
                "openclaw_max_turns": args.openclaw_max_turns,
                **connection_settings(vars(args), os.environ),
                "log_level": args.log_level,
            },
        )
        configure_logging(config.log_level)
        node_id = node_id_of(config)
        servers = resolve_servers(config.nats_url, os.environ)
        # What a task starts here reaches this cluster (`eventsrc submit`, `eventsrc mcp`
        # in a skill's command or agent turn) unless the environment says otherwise.
        env = dict(os.environ)
        if not env.get("EVENTSRC_NATS_URL"):
            env["EVENTSRC_NATS_URL"] = ",".join(servers)
        found = discover(config, env, node_id=node_id)
        stop = stop_event_on_signals()
        options = nats_options(config, servers, f"eventsrc-node-{node_id}")
        metrics = MetricsServer(*metrics_at) if metrics_at is not None else None
        if metrics is not None:
            await metrics.start()  # a taken address fails before the node joins
        try:
            nc = await connect_nats(options, long_running=True)
        except BaseException:
            if metrics is not None:
                await metrics.close()
            raise
        try:
            agent = build_node_agent(
                nc,
                event_store(nc, consumers=options.may_create_consumers()),
                config,
                env=env,
                node_id=node_id,
                found=found,
            )
            # SIGHUP: look for new or lost skills now (a binary just installed).
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, agent.rescan_now)
            try:
                await agent.start()
            except NotPermittedError as err:
                if not _own_subject(err.subject, node_id):
                    raise
                raise NotPermittedError(
                    f"these credentials do not allow node id {node_id} (NATS refused its "
                    f"events); start the node with the --node-id its credentials were made "
                    f"for (secure mode: DIR/creds/node-<ID>.nk is for node <ID>)"
                ) from err
            track_node(node_id, lambda: agent.running)
            if metrics is not None:
                print(f"metrics at {metrics.url}", flush=True)
            print(
                f"eventsrc node {node_id} ready with skills: "
                f"{', '.join(sorted(found.skills)) or 'none'}",
                flush=True,
            )
            await stop.wait()
            await agent.drain()
        finally:
            if metrics is not None:
                await metrics.close()
            await nc.close()
        return EXIT_OK

    return run_program(run)


def _metrics_address(text: str | None) -> tuple[str, int] | None:
    """``--metrics HOST:PORT``; a malformed value is a usage error."""
    if text is None:
        return None
    try:
        return parse_host_port(text, flag="--metrics")
    except InvalidRequestError as err:
        raise ConfigError(str(err)) from err


def _own_subject(subject: str, node_id: str) -> bool:
    """A subject only this node's credentials may write (what a wrong --node-id hits)."""
    return subject in (node_subject(node_id), heartbeat_subject(node_id)) or subject_matches(
        reports_filter(node_id), subject
    )


if __name__ == "__main__":
    raise SystemExit(main())

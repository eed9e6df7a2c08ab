"""``eventsrc dashboard``: the dashboard as a process of its own, for a cluster it does
not run in. It follows the streams with its own projection (read-only: it writes no
snapshot and never leads) and serves it like a coordinator does."""

from __future__ import annotations

import argparse
import os
import secrets
import socket
from typing import Any

from eventsrc.config import connection_config, nats_options
from eventsrc.dashboard.server import (
    DEFAULT_HTTP,
    dashboard_address,
    open_dashboard,
    read_token,
    secure_mode,
)
from eventsrc.errors import ConfigError
from eventsrc.runner import ProjectionRunner
from eventsrc.runtime import EXIT_OK, configure_logging, run_program, stop_event_on_signals
from eventsrc.store import connect_nats, resolve_servers
from eventsrc.store.getreads import event_store
from eventsrc.store.lease import standbys


def add_parser(sub: Any) -> None:
    """The ``dashboard`` subparser."""
    cmd = sub.add_parser(
        "dashboard", help="serve the web dashboard and /metrics for a cluster (read-only)"
    )
    cmd.add_argument("--http", metavar="HOST:PORT", help=f"where to serve (default {DEFAULT_HTTP})")
    cmd.add_argument("--http-token", help="token the dashboard asks for (or EVENTSRC_HTTP_TOKEN)")
    cmd.add_argument(
        "--http-token-file", help="a file holding that token (or EVENTSRC_HTTP_TOKEN_FILE)"
    )


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM."""
    configure_logging("WARNING")
    connection = connection_config(vars(args), os.environ)
    identity = f"dashboard-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"

    async def main() -> int:
        token = read_token(
            args.http_token or os.environ.get("EVENTSRC_HTTP_TOKEN"),
            args.http_token_file or os.environ.get("EVENTSRC_HTTP_TOKEN_FILE") or None,
        )
        wanted = args.http or os.environ.get("EVENTSRC_HTTP") or None
        http = dashboard_address(wanted, default=True, token=token, secure=secure_mode(connection))
        if http is None:  # "off", from --http or EVENTSRC_HTTP
            given = (
                "eventsrc dashboard --http off"
                if args.http
                else "EVENTSRC_HTTP=off eventsrc dashboard"
            )
            raise ConfigError(f"{given}: nothing to serve; give HOST:PORT")
        stop = stop_event_on_signals()
        servers = resolve_servers(args.nats_url, os.environ)
        options = nats_options(connection, servers, "eventsrc-dashboard")
        nc = await connect_nats(options, long_running=True)
        try:
            store = event_store(nc, consumers=options.may_create_consumers())
            async with ProjectionRunner(store, tune_gc=True) as runner:
                dashboard = await open_dashboard(
                    runner,
                    store,
                    http,
                    token=token,
                    role=lambda: "viewer",
                    identity=identity,
                    standbys=lambda: standbys(store.js),
                )
                print(f"dashboard at {dashboard.url} for {','.join(servers)}", flush=True)
                try:
                    await stop.wait()
                finally:
                    await dashboard.close()
        finally:
            await nc.close()
        return EXIT_OK

    return run_program(main)

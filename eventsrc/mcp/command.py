"""``eventsrc mcp [--http HOST:PORT]``: the subcommand (the SDK is imported only here when
it runs, so other ``eventsrc`` commands start without it)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from eventsrc.errors import InvalidRequestError
from eventsrc.runtime import EXIT_OK, EXIT_USAGE, configure_logging, run_program


def add_parser(sub: Any) -> None:
    """The ``mcp`` subparser."""
    cmd = sub.add_parser("mcp", help="serve the cluster as an MCP server (stdio or --http)")
    cmd.add_argument(
        "--http",
        metavar="HOST:PORT",
        help="serve streamable HTTP at http://HOST:PORT/mcp instead of stdio",
    )


def run(args: argparse.Namespace, parent_task_id: str | None) -> int:
    """Serve until the client goes away (stdio) or SIGINT/SIGTERM (HTTP).

    ``parent_task_id``: the task this server runs inside (from the environment), so its
    submissions are that task's sub-tasks.
    """
    from eventsrc.client import connect
    from eventsrc.mcp.server import build_server, parse_http, serve
    from eventsrc.mcp.tools import ClusterTools

    # Before the SDK configures its own: stdout belongs to the protocol on stdio.
    configure_logging("WARNING")
    try:
        http = parse_http(args.http) if args.http else None
    except InvalidRequestError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    tools = ClusterTools(
        lambda: connect(
            args.nats_url,
            creds=args.creds,
            tls_ca=args.tls_ca,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            project=False,
        ),
        parent_task_id=parent_task_id,
    )

    async def main() -> int:
        await serve(build_server(tools), http)
        return EXIT_OK

    return run_program(main)

#!/usr/bin/env python3
"""Container health checks for the eventsrc cluster (docker-compose.yml uses them).

    healthcheck.py nats [MONITOR_URL]   nats-server's /healthz?js-enabled-only=true
    healthcheck.py coordinator          a coordinator leads: `eventsrc status --json` works
    healthcheck.py node NODE_ID         the coordinator's projection shows NODE_ID alive

Exit 0 when healthy, 1 otherwise, with one line saying why. The eventsrc checks run the
`eventsrc` CLI, so they see the cluster the way a user does (NATS URL and credentials
from EVENTSRC_NATS_URL / EVENTSRC_NATS_CREDS, as in the containers' environment).
Standard library only: the NATS container runs it too.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

NATS_MONITOR = "http://127.0.0.1:8222"
TIMEOUT_S = 10.0


def check_nats(monitor: str = NATS_MONITOR) -> str | None:
    """None when the server is up with JetStream enabled, else what is wrong."""
    url = f"{monitor.rstrip('/')}/healthz?js-enabled-only=true"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as reply:
            body = json.loads(reply.read())
    except (OSError, ValueError, urllib.error.URLError) as err:
        return f"{url}: {err}"
    return None if body.get("status") == "ok" else f"{url}: {body}"


def _eventsrc(*args: str) -> tuple[Any, str | None]:
    """Run `eventsrc ARGS --json`; (parsed output, None) or (None, the error line)."""
    exe = shutil.which("eventsrc")
    argv = [exe] if exe else [sys.executable, "-m", "eventsrc.cli"]
    try:
        done = subprocess.run(
            [*argv, *args, "--json"], capture_output=True, text=True, timeout=TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        return None, f"eventsrc {' '.join(args)} did not answer in {TIMEOUT_S:g} s"
    if done.returncode != 0:
        return None, done.stderr.strip() or f"eventsrc {' '.join(args)} exited {done.returncode}"
    try:
        return json.loads(done.stdout), None
    except ValueError:
        return None, f"eventsrc {' '.join(args)} printed no JSON: {done.stdout[:200]!r}"


def check_coordinator() -> str | None:
    """None when a coordinator leads and answers the command API."""
    status, error = _eventsrc("status")
    if error is not None:
        return error
    if not status.get("leader"):
        return "no coordinator leads yet"
    return None


def check_node(node_id: str) -> str | None:
    """None when the leading coordinator sees ``node_id`` alive."""
    listing, error = _eventsrc("nodes")
    if error is not None:
        return error
    for node in listing.get("nodes", []):
        if node.get("node_id") == node_id:
            state = node.get("state")
            return None if state == "alive" else f"node {node_id} is {state}"
    return f"node {node_id} is not known to the coordinator"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["nats"] and len(args) <= 2:
        problem = check_nats(*args[1:])
    elif args == ["coordinator"]:
        problem = check_coordinator()
    elif args[:1] == ["node"] and len(args) == 2:
        problem = check_node(args[1])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    if problem is not None:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    print("healthy")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

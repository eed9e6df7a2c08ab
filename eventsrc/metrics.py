"""Prometheus metrics of this process: the command API's request durations and a node's
attempts, in one registry, served at ``/metrics`` by the dashboard or ``--metrics``.

The coordinator's cluster-wide figures (tasks, nodes, lag, problems, leadership) are
read from its projection at scrape time by ``eventsrc.dashboard.metrics``.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from eventsrc.errors import InvalidRequestError

REGISTRY = CollectorRegistry(auto_describe=True)
"""This process's own metrics (a private registry, not the client's global one)."""

API_SECONDS = Histogram(
    "eventsrc_api_request_seconds",
    "Command API request durations, by endpoint and outcome (ok or the error code)",
    ["endpoint", "outcome"],
    registry=REGISTRY,
)
NODE_RUNNING = Gauge(
    "eventsrc_node_running_tasks", "Attempts running on this node now", ["node"], registry=REGISTRY
)
NODE_ATTEMPTS = Counter(
    "eventsrc_node_attempts",
    "Attempts this node ended, by outcome (succeeded, failed) and skill",
    ["node", "outcome", "skill"],
    registry=REGISTRY,
)
NODE_EXECUTOR_SECONDS = Histogram(
    "eventsrc_node_executor_seconds",
    "How long this node's executors ran an attempt, by skill",
    ["node", "skill"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600),
    registry=REGISTRY,
)


def track_node(node_id: str, running: Callable[[], int]) -> None:
    """Expose a node's running attempts (read at scrape time)."""
    NODE_RUNNING.labels(node=node_id).set_function(lambda: float(running()))


def attempt_ended(node_id: str, skill: str, *, ok: bool, elapsed_ms: float) -> None:
    """Count one ended attempt of a node and its executor time."""
    NODE_ATTEMPTS.labels(node=node_id, outcome="succeeded" if ok else "failed", skill=skill).inc()
    NODE_EXECUTOR_SECONDS.labels(node=node_id, skill=skill).observe(elapsed_ms / 1000)


def exposition(*registries: CollectorRegistry) -> web.Response:
    """The text exposition of the registries, as an HTTP response."""
    body = b"".join(generate_latest(registry) for registry in registries)
    response = web.Response(body=body)
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    response.charset = "utf-8"
    return response


class MetricsServer:
    """``--metrics HOST:PORT`` of a node: ``/metrics`` on its own small HTTP server."""

    def __init__(self, host: str, port: int, *, flag: str = "--metrics") -> None:
        self._host, self._port, self._flag = host, port, flag
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> str:
        """Listen; returns the URL of ``/metrics`` (with the port 0 picked)."""
        app = web.Application()

        async def metrics(request: web.Request) -> web.Response:
            return exposition(REGISTRY)

        app.router.add_get("/metrics", metrics)
        self._runner, base = await serve_app(app, self._host, self._port, flag=self._flag)
        self.url = f"{base}/metrics"
        return self.url

    async def close(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()


async def serve_app(
    app: web.Application, host: str, port: int, *, flag: str
) -> tuple[web.AppRunner, str]:
    """Serve an aiohttp app on HOST:PORT in this event loop; the runner and its base URL
    (``http://host:port``, with the port 0 picked). InvalidRequestError (one line) when
    the address cannot be listened on."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise InvalidRequestError(
            f"{flag} {host}:{port}: cannot listen there ({err.strerror or err}); pick "
            f"another address or port"
        ) from err
    bound = sock.getsockname()[1]
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    try:
        await web.SockSite(runner, sock).start()
    except BaseException:
        await runner.cleanup()
        raise
    shown = f"[{host}]" if ":" in host else host
    return runner, f"http://{shown}:{bound}"

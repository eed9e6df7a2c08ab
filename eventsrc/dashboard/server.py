"""The dashboard's HTTP server: pages, JSON API, server-sent events, ``/metrics``.

aiohttp, because it runs inside the coordinator's own event loop with an explicit
start and stop (no signal handling of its own, no second loop or thread), so the
handlers read the coordinator's projection and use its NATS connection directly, and
server-sent events are a plain streamed response. Read-only: every route is a GET.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import secrets
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry

from eventsrc.commands.scenario import query_name, scenario_from_query
from eventsrc.commands.simulate import simulate, to_json, waits_over_time
from eventsrc.commands.views import task_info
from eventsrc.config import CommonConfig
from eventsrc.dashboard import views
from eventsrc.dashboard.metrics import ClusterCollector, ClusterTracker
from eventsrc.errors import ConfigError, InvalidRequestError, StoreError, UndecodableEventError
from eventsrc.events import validate_token
from eventsrc.events.subjects import node_subject, task_filter
from eventsrc.history import fold_heartbeats, fold_task, fold_until
from eventsrc.metrics import REGISTRY, exposition, serve_app
from eventsrc.ports import EVENTS_STREAM, HEARTBEATS_STREAM, EventStore, Record, StoredEvent
from eventsrc.projections.state import ClusterState
from eventsrc.runtime import parse_host_port

log = logging.getLogger(__name__)

DEFAULT_HTTP = "127.0.0.1:8470"
"""Where the embedded cluster of one serves its dashboard unless told otherwise."""
POLL_S = 0.5
"""How often the live stream and the counters look at the projection."""
PING_S = 15.0
"""How often the live stream sends a comment when nothing changed (keeps proxies open)."""
TIME_TRAVEL_CACHE = 8
"""How many folded states of the past are kept for the next request."""
TOKEN_COOKIE = "eventsrc_dashboard"
"""The cookie that ``?token=`` sets, so the page's own requests carry the token."""
HISTORY_LIMIT = 500
"""Most events shown in one node's or task's history."""
WHATIF_LIMIT = 100_000
"""Most records of each stream the what-if page simulates; beyond: replay_tools."""
WHATIF_BUCKETS = 40
"""Slices of the submissions' time span the what-if chart draws."""
STANDBYS_ASK_S = 1.0
"""How long the overview waits to learn the standbys before it says "unknown"."""

Standbys = Callable[[], Awaitable[tuple[str, ...]]]
"""The other coordinators standing by now; raises StoreError when nobody can say."""


class Projection(Protocol):
    """The live state the dashboard reads (a ``ProjectionRunner``)."""

    @property
    def state(self) -> ClusterState: ...

    def reading(self) -> AbstractAsyncContextManager[ClusterState]: ...


def is_loopback(host: str) -> bool:
    """Whether HOST only listens on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, *, token: str | None, secure: bool, flag: str = "--http") -> None:
    """Refuse to serve a secure cluster's dashboard beyond loopback without a token."""
    if secure and not token and not is_loopback(host):
        raise InvalidRequestError(
            f"{flag} {host}: this cluster runs in secure mode, so its dashboard listens "
            f"beyond loopback only with a token; add --http-token TOKEN or use 127.0.0.1"
        )


@dataclass(slots=True)
class Point:
    """A state of the past: the fold up to a sequence or a time."""

    state: ClusterState
    time: datetime | None


class Dashboard:
    """Serves one projection; ``start``/``close`` in the caller's event loop."""

    def __init__(
        self,
        projection: Projection,
        store: EventStore,
        *,
        host: str,
        port: int,
        role: Callable[[], str],
        identity: str,
        token: str | None = None,
        flag: str = "--http",
        standbys: Standbys | None = None,
    ) -> None:
        self._projection = projection
        self._standbys = standbys
        self._store = store
        self._host, self._port, self._flag = host, port, flag
        self._role = role
        self._identity = identity
        self._token = token or None
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._past: OrderedDict[tuple[str, str], Point] = OrderedDict()
        self._folding = asyncio.Lock()
        self._simulating = asyncio.Lock()
        self.whatif_limit = WHATIF_LIMIT
        self.stream_last_seq = 0
        self.registry = CollectorRegistry(auto_describe=True)
        self.tracker = ClusterTracker(self.registry)
        self.registry.register(
            ClusterCollector(
                lambda: self._projection.state,
                stream_last_seq=lambda: self.stream_last_seq,
                leading=lambda: self._role() == "leader",
                tracker=self.tracker,
            )
        )
        self.url = ""

    async def start(self) -> str:
        """Listen; returns the dashboard's URL (with the port 0 picked)."""
        self.tracker.observe(self._projection.state)
        self._runner, self.url = await serve_app(
            self._app(), self._host, self._port, flag=self._flag
        )
        self._tasks.append(asyncio.create_task(self._poll(), name="dashboard-poll"))
        return self.url

    async def close(self) -> None:
        """Stop serving; idempotent."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Dashboard:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard])
        get = app.router.add_get
        get("/", self._index)
        get("/static/{name}", self._static)
        get("/metrics", self._metrics)
        get("/api/overview", self._overview)
        get("/api/nodes", self._nodes)
        get("/api/nodes/{node_id}", self._node)
        get("/api/skills", self._skills)
        get("/api/tasks", self._tasks_list)
        get("/api/tasks/{task_id}", self._task)
        get("/api/history", self._history)
        get("/api/whatif", self._whatif)
        get("/api/live", self._live)
        return app

    async def _poll(self) -> None:
        while True:
            await self._refresh()
            self.tracker.observe(self._projection.state)
            await asyncio.sleep(POLL_S)

    async def _refresh(self) -> None:
        """Ask the stream for its last sequence (the lag is measured against it)."""
        try:
            last = await self._store.last_seq()
        except asyncio.CancelledError:
            raise
        except Exception as err:  # NATS away for a moment: the figure stays as it was
            log.debug("dashboard: stream position unknown: %s", err)
            return
        self.stream_last_seq = max(last, self.stream_last_seq)

    # -- access ------------------------------------------------------------------

    @web.middleware
    async def _guard(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        if self._token is not None and not self._authorized(request):
            if request.path.startswith(("/api/", "/metrics")):
                return _error(401, "a token is needed: send Authorization: Bearer TOKEN")
            return web.Response(
                status=401,
                text="This dashboard needs its token: open it as /?token=TOKEN.\n",
            )
        try:
            response: web.StreamResponse = await handler(request)
        except InvalidRequestError as err:
            return _error(400, str(err))
        except KeyError as err:
            return _error(404, f"not found: {err.args[0] if err.args else err}")
        if self._token is not None and request.query.get("token") == self._token:
            response.set_cookie(TOKEN_COOKIE, self._token, httponly=True, samesite="Strict")
        return response

    def _authorized(self, request: web.Request) -> bool:
        assert self._token is not None
        header = request.headers.get("Authorization", "")
        offered = [
            header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else "",
            request.cookies.get(TOKEN_COOKIE, ""),
            request.query.get("token", ""),
        ]
        return any(secrets.compare_digest(o.encode(), self._token.encode()) for o in offered if o)

    # -- pages and files ---------------------------------------------------------

    async def _index(self, request: web.Request) -> web.StreamResponse:
        return _file("index.html")

    async def _static(self, request: web.Request) -> web.StreamResponse:
        return _file(request.match_info["name"])

    async def _metrics(self, request: web.Request) -> web.StreamResponse:
        await self._refresh()
        return exposition(self.registry, REGISTRY)

    # -- the state, live or of the past -------------------------------------------

    @contextlib.asynccontextmanager
    async def _state(self, request: web.Request) -> AsyncIterator[tuple[ClusterState, datetime]]:
        """The state a request asks for: live, or at ``?seq=N`` / ``?time=ISO``."""
        seq, at = request.query.get("seq", ""), request.query.get("time", "")
        if not seq and not at:
            await self._refresh()
            async with self._projection.reading() as state:
                yield state, datetime.now(UTC)
            return
        point = await self._point(seq, at)
        yield point.state, point.time or datetime.now(UTC)

    async def _point(self, seq: str, at: str) -> Point:
        key = ("seq", seq) if seq else ("time", at)
        async with self._folding:
            if key in self._past:
                self._past.move_to_end(key)
                return self._past[key]
            until_seq, until_time = _parse_point(seq, at)
            state = ClusterState()
            last: list[datetime] = []

            def seen(record: Any) -> None:
                if isinstance(record, StoredEvent):
                    last[:] = [record.time]

            await fold_until(
                self._store, state, until_seq=until_seq, until_time=until_time, on_record=seen
            )
            if state.last_seq == 0:
                what = f"seq {until_seq}" if until_seq is not None else f"time {at}"
                raise InvalidRequestError(
                    f"{what} is before the first event the stream still holds (or the stream "
                    f"is empty): nothing to show there; see /api/history for the range"
                )
            time = until_time or (last[0] if last else None)
            await fold_heartbeats(self._store, state, until=time)
            point = Point(state, time)
            self._past[key] = point
            while len(self._past) > TIME_TRAVEL_CACHE:
                self._past.popitem(last=False)
            return point

    def _context(self, state: ClusterState, request: web.Request) -> dict[str, Any]:
        past = bool(request.query.get("seq") or request.query.get("time"))
        return {
            "role": "past" if past else self._role(),
            "serving": self._role(),
            "identity": self._identity,
            "applied_seq": state.last_seq,
            "stream_last_seq": max(self.stream_last_seq, self._projection.state.last_seq),
            "lag": max(self.stream_last_seq - self._projection.state.last_seq, 0),
        }

    async def _overview(self, request: web.Request) -> web.StreamResponse:
        async with self._state(request) as (state, now):
            body = {**self._context(state, request), **views.overview(state, now=now)}
        # Who stands by is not in the events (it is the lease bucket's soft state): known
        # for now only, and "unknown" (None) while the servers cannot say.
        body["standbys"] = None if body["role"] == "past" else await self._standbys_now()
        return _json(body)

    async def _standbys_now(self) -> list[str] | None:
        if self._standbys is None:
            return None
        try:
            async with asyncio.timeout(STANDBYS_ASK_S):
                standing_by = await self._standbys()
        except (StoreError, TimeoutError) as err:
            log.debug("dashboard: standbys unknown: %s", err or "no answer in time")
            return None
        # A coordinator's word that it stands by outlives its winning the lease by up to
        # a lease time: the one elected (the lease's holder, as the events say) is no
        # standby. Read from the events: the lease's value is not granted to readers.
        leader = self._projection.state.leader
        return [one for one in standing_by if one != leader]

    async def _nodes(self, request: web.Request) -> web.StreamResponse:
        async with self._state(request) as (state, now):
            body = {**self._context(state, request), "nodes": views.nodes(state, now=now)}
        return _json(body)

    async def _node(self, request: web.Request) -> web.StreamResponse:
        node_id = validate_token(request.match_info["node_id"], what="node id")
        async with self._state(request) as (state, now):
            if node_id not in state.nodes:
                raise KeyError(f"node {node_id}")
            body = {**self._context(state, request), "node": views.node(state, node_id, now=now)}
            until = state.last_seq
        body["history"] = await self._history_of(node_subject(node_id), until)
        return _json(body)

    async def _skills(self, request: web.Request) -> web.StreamResponse:
        async with self._state(request) as (state, _):
            body = {**self._context(state, request), "skills": views.skills(state)}
        return _json(body)

    async def _tasks_list(self, request: web.Request) -> web.StreamResponse:
        query = request.query
        wanted = frozenset(s for s in query.get("state", "").split(",") if s)
        unknown = wanted - set(views.task_states())
        if unknown:
            raise InvalidRequestError(
                f"state {', '.join(sorted(unknown))} is not a task state; use one of "
                f"{', '.join(views.task_states())}"
            )
        limit = _int(query.get("limit", "500"), "limit")
        async with self._state(request) as (state, _):
            body = {
                **self._context(state, request),
                "states": views.task_states(),
                "tasks": views.tasks(
                    state,
                    states=wanted,
                    skill=query.get("skill") or None,
                    node_id=query.get("node") or None,
                    limit=max(1, min(limit, 5000)),
                ),
            }
        return _json(body)

    async def _task(self, request: web.Request) -> web.StreamResponse:
        task_id = validate_token(request.match_info["task_id"], what="task id")
        async with self._state(request) as (state, _):
            context = self._context(state, request)
            view = state.tasks.get(task_id)
            until = state.last_seq
            children = [t.task_id for t in state.tasks.values() if t.parent_task_id == task_id]
            chain: list[str] = []
            parent = view.parent_task_id if view is not None else None
            while parent is not None and parent not in chain and len(chain) < 50:
                chain.append(parent)
                above = state.tasks.get(parent)
                parent = above.parent_task_id if above is not None else None
        if view is None and context["role"] != "past":
            view = await fold_task(self._store, task_id)  # finished and left memory
        if view is None:
            raise KeyError(f"task {task_id}")
        body = {
            **context,
            "task": task_info(view).model_dump(mode="json"),
            "spec": view.spec.model_dump(mode="json"),
            "parents": chain,
            "children": children,
            "timeline": await self._history_of(task_filter(task_id), until),
        }
        return _json(body)

    async def _history_of(self, subject: str, until: int) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = []
        if until < 1:
            return entries
        records = self._store.read(subjects=subject, until_seq=until)
        async with contextlib.aclosing(records) as reading:  # type: ignore[type-var]
            async for record in reading:
                if isinstance(record, UndecodableEventError):
                    entries.append({"seq": record.seq, "type": "undecodable", "detail": {}})
                else:
                    entries.append(views.timeline_entry(record.seq, record.time, record.event))
                if len(entries) >= HISTORY_LIMIT:
                    break
        return entries

    async def _history(self, request: web.Request) -> web.StreamResponse:
        """The range time travel can pick from: first and last sequence and time."""
        first: StoredEvent | None = None
        records = self._store.read()
        async with contextlib.aclosing(records) as reading:  # type: ignore[type-var]
            async for record in reading:
                if isinstance(record, StoredEvent):
                    first = record
                    break
        state = self._projection.state
        last_time = None
        if state.last_seq:  # one record: a viewer catching up must not read the backlog
            applied = self._store.read(from_seq=state.last_seq, until_seq=state.last_seq)
            async with contextlib.aclosing(applied) as reading:  # type: ignore[type-var]
                async for record in reading:
                    if isinstance(record, StoredEvent):
                        last_time = record.time
        return _json(
            {
                "first_seq": first.seq if first else 0,
                "first_time": first.time.isoformat() if first else None,
                "last_seq": state.last_seq,
                "last_time": last_time.isoformat() if last_time else None,
            }
        )

    async def _whatif(self, request: web.Request) -> web.StreamResponse:
        """The recorded tasks replayed on a changed cluster: recorded vs simulated
        waits over time, and the summary ``replay_tools what-if --json`` gives."""
        scenario = scenario_from_query(request.query.items())  # a bad option: 400 first
        async with self._simulating:  # one at a time: each reads both streams
            events = await self._bounded(EVENTS_STREAM)
            heartbeats = await self._bounded(HEARTBEATS_STREAM)
            # Pure and CPU-bound: off the event loop the coordinator also runs in.
            simulation = await asyncio.to_thread(
                simulate, events, heartbeats, scenario, spell=query_name
            )
        document = to_json(simulation)
        tasks = document.pop("tasks")
        body = {
            **self._context(self._projection.state, request),
            **document,
            "tasks": len(tasks),
            "series": waits_over_time(simulation, WHATIF_BUCKETS),
        }
        return _json(body)

    async def _bounded(self, stream: str) -> list[Record]:
        """Every record of a stream, or InvalidRequestError beyond ``whatif_limit``."""
        found: list[Record] = []
        records = self._store.read(stream=stream)
        async with contextlib.aclosing(records) as reading:  # type: ignore[type-var]
            async for record in reading:
                found.append(record)
                if len(found) > self.whatif_limit:
                    raise InvalidRequestError(
                        f"the {stream} stream holds more than "
                        f"{self.whatif_limit} records, more than the dashboard simulates; "
                        f"run replay_tools what-if with the same options"
                    )
        return found

    async def _live(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: ``change`` whenever the projection or a heartbeat moved."""
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        loop = asyncio.get_running_loop()
        last: tuple[int, int] | None = None
        ping = loop.time() + PING_S
        try:
            while True:
                state = self._projection.state
                beat = max((live.last_seq for live in state.liveness.values()), default=0)
                mark = (state.last_seq, beat)
                if mark != last:
                    last = mark
                    data = orjson.dumps(
                        {"last_seq": state.last_seq, "heartbeat": beat, "role": self._role()}
                    )
                    await response.write(b"event: change\ndata: " + data + b"\n\n")
                elif loop.time() >= ping:
                    await response.write(b": ping\n\n")
                if loop.time() >= ping:
                    ping = loop.time() + PING_S
                await asyncio.sleep(POLL_S)
        except ConnectionResetError:
            log.debug("live stream: the browser went away")
        return response


def _parse_point(seq: str, at: str) -> tuple[int | None, datetime | None]:
    if seq:
        number = _int(seq, "seq")
        if number < 1:
            raise InvalidRequestError(f"seq {number}: sequences start at 1")
        return number, None
    try:
        when = datetime.fromisoformat(at.replace("Z", "+00:00"))
    except ValueError as err:
        raise InvalidRequestError(
            f"time {at!r} is not an ISO time, e.g. 2026-12-01T13:00:00Z"
        ) from err
    return None, when if when.tzinfo else when.replace(tzinfo=UTC)


def _int(text: str, name: str) -> int:
    try:
        return int(text)
    except ValueError as err:
        raise InvalidRequestError(f"{name} {text!r} is not a whole number") from err


def _json(body: Any) -> web.Response:
    return web.Response(body=orjson.dumps(body), content_type="application/json")


def _error(status: int, message: str) -> web.Response:
    return web.Response(
        status=status,
        body=orjson.dumps({"error": message}),
        content_type="application/json",
    )


STATIC_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}


def _file(name: str) -> web.Response:
    suffix = name[name.rfind(".") :] if "." in name else ""
    if "/" in name or name.startswith(".") or suffix not in STATIC_TYPES:
        raise KeyError(name)
    path = resources.files("eventsrc.dashboard").joinpath("static", name)
    if not path.is_file():
        raise KeyError(name)
    return web.Response(
        body=path.read_bytes(),
        content_type=STATIC_TYPES[suffix],
        headers={"Cache-Control": "no-cache"},
    )


def secure_mode(config: CommonConfig) -> bool:
    """Whether the program reaches NATS with credentials (a secure-mode cluster)."""
    return bool(config.creds or config.user or config.token or config.tls_cert)


def read_token(token: str | None, token_file: str | Path | None) -> str | None:
    """The dashboard's token: given, or the first line of a file (how containers get a
    secret); ConfigError (one line) when the file cannot be read or is empty."""
    if token or token_file is None:
        return token or None
    try:
        text = Path(token_file).read_text().strip()
    except OSError as err:
        raise ConfigError(
            f"--http-token-file {token_file}: cannot read it ({err.strerror or err})"
        ) from err
    if not text:
        raise ConfigError(f"--http-token-file {token_file} is empty; write the token into it")
    return text.splitlines()[0].strip()


@dataclass(frozen=True, slots=True)
class Address:
    """Where to serve: HOST:PORT, and whether the user asked for it (else the default)."""

    host: str
    port: int
    asked: bool


def dashboard_address(
    http: str | None, *, default: bool, token: str | None, secure: bool
) -> Address | None:
    """The address ``--http HOST:PORT`` asks for (``off``: none); with no ``--http``,
    the loopback default when ``default``. ConfigError (a usage error, one line) for a
    malformed value or an exposure the rules refuse; checked before anything starts."""
    if http == "off" or (http is None and not default):
        return None
    try:
        host, port = parse_host_port(http or DEFAULT_HTTP, flag="--http")
        check_exposure(host, token=token, secure=secure)
    except InvalidRequestError as err:
        raise ConfigError(str(err)) from err
    return Address(host, port, asked=http is not None)


async def open_dashboard(
    projection: Projection,
    store: EventStore,
    address: Address,
    *,
    token: str | None,
    role: Callable[[], str],
    identity: str,
    standbys: Standbys | None = None,
) -> Dashboard:
    """Start the dashboard at ``address``. A busy default port falls back to a free
    one; an address asked for must be free."""

    def make(port: int) -> Dashboard:
        return Dashboard(
            projection,
            store,
            host=address.host,
            port=port,
            role=role,
            identity=identity,
            token=token,
            standbys=standbys,
        )

    dashboard = make(address.port)
    try:
        await dashboard.start()
    except InvalidRequestError:
        if address.asked:
            raise
        log.warning("dashboard: %s is taken; serving on a free port instead", DEFAULT_HTTP)
        dashboard = make(0)
        await dashboard.start()
    return dashboard

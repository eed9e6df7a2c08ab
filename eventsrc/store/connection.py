"""Connecting to NATS: URL resolution, credentials, and errors a person can act on."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import nats
from nats.aio.client import Client

from eventsrc.errors import ConfigError, ServerUnavailableError
from eventsrc.store.credentials import JS_API, Credentials, load_credentials

log = logging.getLogger(__name__)

Connection: TypeAlias = Client
"""A NATS connection as the rest of eventsrc holds it: opened by ``connect_nats``, passed
on, and looked into only by the store's modules."""

DEFAULT_URL = "nats://127.0.0.1:4222"
PERMISSION_ERROR = "permissions violation"  # nats-py lower-cases the server's -ERR text
PING_INTERVAL_S = 2.0
MAX_OUTSTANDING_PINGS = 2
"""A server cut off by the network sends no FIN, so only unanswered pings show it is
gone: after two missed pings 2 s apart (4-6 s) the client moves to another server.
nats-py's default (two minutes apart) left a client on a dead server for minutes."""

SERVER_PINGS = f'ping_interval: "{PING_INTERVAL_S:g}s"\nping_max: {MAX_OUTSTANDING_PINGS}'
"""The same rule on the server's side, for every nats-server config eventsrc writes
(``deploy/nats/*.conf`` carry it too): a cut-off client or route is dropped, with its
subscriptions, in about 6 s instead of minutes."""


class Refusals:
    """The permission errors NATS sends one connection, told to whoever waits on them.

    NATS reports a refused publish asynchronously (``-ERR 'Permissions Violation for
    Publish to "subj"'``) and drops the message, so a request to a refused subject would
    just time out. Requesters listen and fail their pending requests on that subject at
    once. Listeners are held weakly: a requester that is gone is never called, and none
    keeps its connection alive.
    """

    def __init__(self) -> None:
        self._listeners: list[weakref.WeakMethod[Callable[[str, str], None]]] = []

    def add(self, text: str) -> None:
        subject = refused_subject(text)
        if subject is None:
            return
        live = [(ref, ref()) for ref in self._listeners]
        self._listeners = [ref for ref, listener in live if listener is not None]
        for _, listener in live:
            if listener is not None:
                listener(subject, text)

    def listen(self, listener: Callable[[str, str], None]) -> None:
        """Call the bound method ``listener(subject, text)`` (subject lower-cased, as
        NATS' text is) on each refusal of a publish, while its object lives."""
        self._listeners.append(weakref.WeakMethod(listener))


def refused_subject(text: str) -> str | None:
    """The subject in a publish permission error's text (lower-cased by nats-py)."""
    head, sep, rest = text.partition("for publish to ")
    if not sep or PERMISSION_ERROR not in head:
        return None
    return rest.strip().strip('"').strip("'").lower()


_REFUSALS: weakref.WeakKeyDictionary[Client, Refusals] = weakref.WeakKeyDictionary()
_JS_API: weakref.WeakKeyDictionary[Client, str] = weakref.WeakKeyDictionary()
DEFAULT_DATA_DIR = Path(".eventsrc")
URL_FILE = "url"


def resolve_servers(
    flag: str | None, env: Mapping[str, str], *, data_dir: Path = DEFAULT_DATA_DIR
) -> tuple[str, ...]:
    """The NATS URLs to use: flag > ``EVENTSRC_NATS_URL`` > the embedded server's > default.

    Comma-separated values give a cluster's URLs. ``env`` is passed in because only
    entry points read ``os.environ``.
    """
    for value in (flag, env.get("EVENTSRC_NATS_URL")):
        if value and value.strip():
            return split_urls(value)
    written = data_dir / URL_FILE
    if written.is_file():
        text = written.read_text(encoding="utf-8").strip()
        if text:
            return split_urls(text)
    return (DEFAULT_URL,)


def split_urls(value: str) -> tuple[str, ...]:
    """``'a, b'`` -> ``('a', 'b')``: the comma-separated URL list of a cluster."""
    return tuple(part.strip() for part in value.split(",") if part.strip())


@dataclass(frozen=True, slots=True)
class NatsOptions:
    """Everything needed to open a connection; credentials are passed through to nats-py."""

    servers: tuple[str, ...] = (DEFAULT_URL,)
    name: str = "eventsrc"
    creds: str | None = None
    user: str | None = None
    password: str | None = None
    token: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None

    def credentials(self) -> Credentials | None:
        """The parsed ``creds`` file (None without one); raises ConfigError when unusable."""
        return load_credentials(self.creds) if self.creds else None

    def may_create_consumers(self) -> bool:
        """False for secure mode's restricted roles; their stores read by message get."""
        creds = self.credentials()
        return creds is None or creds.may_create_consumers


def _tls_context(options: NatsOptions) -> ssl.SSLContext | None:
    """The TLS context of ``options`` (None without TLS files); ConfigError with one line
    when a file is missing or not a usable PEM certificate or key."""
    if not (options.tls_ca or options.tls_cert or options.tls_key):
        return None
    if bool(options.tls_cert) != bool(options.tls_key):
        raise ConfigError(
            "--tls-cert and --tls-key go together (EVENTSRC_TLS_CERT, EVENTSRC_TLS_KEY): "
            "a client certificate needs its key"
        )
    try:
        context = ssl.create_default_context(cafile=_pem(options.tls_ca, "--tls-ca"))
        cert = _pem(options.tls_cert, "--tls-cert")
        if cert is not None:
            context.load_cert_chain(cert, _pem(options.tls_key, "--tls-key"))
    except ssl.SSLError as err:
        raise ConfigError(
            f"the TLS files are not a usable PEM CA, certificate and key ({err.reason or err}); "
            f"check --tls-ca, --tls-cert and --tls-key"
        ) from err
    return context


def _pem(path: str | None, flag: str) -> str | None:
    if path is None:
        return None
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"{flag} {file}: no such file; give the path of a PEM file")
    return str(file)


async def connect_nats(
    options: NatsOptions, *, long_running: bool, connect_timeout: float = 2.0
) -> Client:
    """Open a NATS connection.

    Long-running programs (coordinator, node) keep trying with backoff until a server
    answers and reconnect forever afterwards. One-shot commands and library clients fail
    fast with ServerUnavailableError whose message says which URL failed and what to do,
    but once connected they too ride through a server restart (reconnect and resubscribe
    by themselves). A missing or damaged credentials file is a ConfigError, raised
    before connecting.
    """
    creds = options.credentials()
    refusals = Refusals()
    nc = _Client()
    events = _ConnectionLog(nc, options.servers, loud=long_running, refusals=refusals)
    kwargs: dict[str, Any] = {
        "servers": list(options.servers),
        "name": options.name,
        "connect_timeout": connect_timeout,
        "allow_reconnect": long_running,
        # nats-py: -1 retries forever (also the first connect); 0 would too, so a
        # one-shot command allows one retry per server and then gives up.
        "max_reconnect_attempts": -1 if long_running else 1,
        "reconnect_time_wait": 1 if long_running else 0.1,
        "ping_interval": PING_INTERVAL_S,
        "max_outstanding_pings": MAX_OUTSTANDING_PINGS,
        "user_credentials": creds.path if creds is not None and creds.jwt else None,
        "nkeys_seed_str": creds.seed if creds is not None and not creds.jwt else None,
        "user": options.user,
        "password": options.password,
        "token": options.token,
        "tls": _tls_context(options),
        "error_cb": events.on_error,
        "disconnected_cb": events.on_disconnected,
        "reconnected_cb": events.on_reconnected,
    }
    if creds is not None and creds.inbox_prefix:
        kwargs["inbox_prefix"] = creds.inbox_prefix  # the only inbox it may subscribe to
    try:
        await nc.connect(**kwargs)
    except (OSError, TimeoutError, nats.errors.Error) as err:
        # nats-py leaves the socket open when the server refuses us during connect; after
        # a failed TLS handshake its close never returns, so it gets a moment only.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1.0):
                await nc.close()
        if options.tls_ca and not options.tls_cert and not _is_auth_error(err):
            # Mutual TLS: the server drops a client without a certificate in the handshake.
            raise ServerUnavailableError(
                f"NATS at {','.join(options.servers)} dropped the TLS connection ({err or 'lost'})"
                f": the server may want this program's client certificate; pass --tls-cert "
                f"and --tls-key (EVENTSRC_TLS_CERT, EVENTSRC_TLS_KEY)"
            ) from err
        raise unavailable(options.servers, err) from err
    _REFUSALS[nc] = refusals
    _JS_API[nc] = creds.jetstream_api if creds is not None else JS_API
    events.connected()
    if not long_running:
        # Failing fast was for the first connect; from now on, reconnect (nats-py reads
        # these options on every disconnect).
        nc.options["allow_reconnect"] = True
        nc.options["max_reconnect_attempts"] = -1
        nc.options["reconnect_time_wait"] = 0.5
    return nc


_CRLF = b"\r\n"


class _Client(Client):
    """nats-py's client, surviving the PONG of a flush that gave up, and reading headers
    faster.

    nats-py 2.16 hands each PONG to the oldest flush waiting for one. A flush that timed
    out or was cancelled (a subscription drained while the network was cut) leaves its
    future there, cancelled; when the link heals and its PONG arrives, ``set_result``
    raises, the read loop ends and the connection silently reads nothing again, never
    reconnecting. Here that PONG is consumed: it answered a PING nobody waits for.
    (tests/store/test_late_pong.py shows the failure without this.)

    Every stored event comes with its ``Nats-Msg-Id`` header, so a replay parses a header
    block per event: nats-py's parser looks at each character of a name in a Python
    generator; the one below gives the same result from ``str.split`` (a block 2.7 ->
    1.0 µs alone, a rebuild 15.2 -> 14.7 µs of CPU per event).
    tests/store/test_header_lines.py holds it to nats-py's own on every kind of line.
    """

    @staticmethod
    def _parse_header_lines(raw: bytes) -> dict[str, str]:
        # nats-py 2.16's rules: "Name: Value" lines split at the first ":", lines without
        # one skipped, names ASCII without whitespace inside, values stripped, UTF-8.
        out: dict[str, str] = {}
        for line in raw.split(_CRLF):
            name, sep, value = line.partition(b":")
            if not sep:
                continue
            try:
                key = name.strip().decode("ascii")
            except UnicodeDecodeError:
                continue
            if key and key.split() != [key]:  # whitespace inside the name
                continue
            out[key] = value.strip().decode("utf-8", "replace")
        return out

    async def _process_pong(self) -> None:
        # nats-py internals (2.16): without them, its own handling.
        if getattr(self, "_pongs", None) and self._pongs[0].done():
            self._pongs.pop(0)
            self._pongs_received += 1
            self._pings_outstanding = 0
            return
        await super()._process_pong()


def refusals_of(nc: Client) -> Refusals:
    """The permission errors of a connection opened by ``connect_nats`` (an empty record,
    never told of any, for another connection)."""
    found = _REFUSALS.get(nc)
    if found is None:
        found = _REFUSALS[nc] = Refusals()
    return found


def jetstream_api(nc: Client) -> str:
    """The JetStream API prefix of a connection: ``$JS.API``, or for secure mode's nodes
    and clients the prefix their account imports it under (what the credentials say)."""
    return _JS_API.get(nc, JS_API)


def unavailable(servers: tuple[str, ...], err: BaseException) -> ServerUnavailableError:
    """The one-line error for a NATS server that does not answer or refuses us."""
    reason = str(err) or type(err).__name__
    if _is_auth_error(err):
        return ServerUnavailableError(
            f"NATS at {','.join(servers)} refused the connection ({reason}): it wants "
            f"credentials this program lacks or does not accept; pass --creds FILE or set "
            f"EVENTSRC_NATS_CREDS (secure mode: DIR/creds/<role>.nk)"
        )
    if isinstance(err, ssl.SSLError) or "certificate" in reason.lower() or "tls" in reason.lower():
        return ServerUnavailableError(
            f"NATS at {','.join(servers)} refused the TLS handshake ({reason}): give the CA "
            f"that signed the server's certificate with --tls-ca (EVENTSRC_TLS_CA) and, if "
            f"the server wants client certificates, --tls-cert and --tls-key"
        )
    return ServerUnavailableError(
        f"cannot reach NATS at {','.join(servers)} ({reason}); start the coordinator "
        f"(python -m eventsrc.coordinator) or pass --nats-url / set EVENTSRC_NATS_URL"
    )


def _is_auth_error(err: BaseException) -> bool:
    return isinstance(err, nats.errors.AuthorizationError) or "authorization" in str(err).lower()


class _ConnectionLog:
    """nats-py's callbacks for one connection: one warning per distinct problem, never a
    traceback each, and once it was connected, which server was lost.

    One-shot commands (``loud=False``) report the final error themselves. Permission
    errors go to ``refusals`` so that waiting requests end at once.
    """

    def __init__(
        self, nc: Client, servers: tuple[str, ...], *, loud: bool, refusals: Refusals
    ) -> None:
        self._nc = nc
        self._servers = servers
        self._loud = loud
        self._refusals = refusals
        self._last = ""
        self._why_lost = ""
        self.connected_to = ""  # the server we last had; "" before the first connect

    async def on_error(self, err: Exception) -> None:
        if PERMISSION_ERROR in str(err):
            self._refusals.add(str(err))
            if self._loud:
                log.warning("NATS refused: %s (check the credentials' role)", err)
            return
        reason = str(err) or type(err).__name__
        if self.connected_to and not self._nc.is_reconnecting and _is_connection_loss(err):
            self._why_lost = reason  # said with the disconnect, which follows
            return
        if not self._loud:
            return
        # One line per kind of failure, not one per attempt and server.
        kind = type(err).__name__
        if not self.connected_to:
            self._say(f"{unavailable(self._servers, err)}; retrying", key=f"connect {kind}")
        elif self._nc.is_reconnecting:
            servers = ", ".join(self._servers)
            self._say(f"still reconnecting to NATS ({servers}): {reason}", key=f"retry {kind}")
        else:
            self._say(f"NATS error: {reason}", key=f"error {reason}")

    async def on_disconnected(self) -> None:
        if self._nc.is_closed or not self.connected_to:
            return  # a clean close, or never connected
        others = [u for u in self._servers if u.rstrip("/") != self.connected_to.rstrip("/")]
        target = ", ".join(others) if others else "it"
        why, self._why_lost = self._why_lost or "connection lost", ""
        if self._loud:
            message = f"lost NATS at {self.connected_to} ({why}); reconnecting to {target}"
            self._say(message, key=message)

    def connected(self) -> None:
        url = self._nc.connected_url
        self.connected_to = url.geturl() if url is not None else self.connected_to
        self._last = ""

    async def on_reconnected(self) -> None:
        self.connected()
        if self._loud:
            log.warning("reconnected to NATS at %s", self.connected_to)

    def _say(self, message: str, *, key: str) -> None:
        if key != self._last:
            self._last = key
            log.warning("%s", message)


def _is_connection_loss(err: Exception) -> bool:
    return isinstance(
        err,
        OSError
        | nats.errors.UnexpectedEOF
        | nats.errors.ConnectionClosedError
        | nats.errors.StaleConnectionError,
    )

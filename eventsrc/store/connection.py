"""Connecting to NATS: URL resolution, credentials, and errors a person can act on."""

from __future__ import annotations

import collections
import contextlib
import logging
import ssl
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client

from eventsrc.errors import ServerUnavailableError
from eventsrc.store.credentials import Credentials, load_credentials

log = logging.getLogger(__name__)

DEFAULT_URL = "nats://127.0.0.1:4222"
PERMISSION_ERROR = "permissions violation"  # nats-py lower-cases the server's -ERR text


class Refusals:
    """The permission errors NATS sent one connection, and who wants to hear of them.

    NATS reports a refused publish asynchronously (``-ERR 'Permissions Violation for
    Publish to "subj"'``) and drops the message, so a request to a refused subject would
    just time out. Requesters register a listener and fail their pending requests on
    that subject at once.
    """

    def __init__(self) -> None:
        self.texts: collections.deque[str] = collections.deque(maxlen=20)
        self._listeners: list[Callable[[str, str], None]] = []

    def add(self, text: str) -> None:
        self.texts.append(text)
        subject = refused_subject(text)
        if subject is not None:
            for listener in self._listeners:
                listener(subject, text)

    def listen(self, listener: Callable[[str, str], None]) -> None:
        """Call ``listener(subject, text)`` (subject lower-cased, as NATS' text is) on
        each refusal of a publish."""
        self._listeners.append(listener)


def refused_subject(text: str) -> str | None:
    """The subject in a publish permission error's text (lower-cased by nats-py)."""
    head, sep, rest = text.partition("for publish to ")
    if not sep or PERMISSION_ERROR not in head:
        return None
    return rest.strip().strip('"').strip("'").lower()


_REFUSALS: weakref.WeakKeyDictionary[Client, Refusals] = weakref.WeakKeyDictionary()
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
    if not (options.tls_ca or options.tls_cert):
        return None
    context = ssl.create_default_context(cafile=options.tls_ca)
    if options.tls_cert:
        context.load_cert_chain(options.tls_cert, options.tls_key)
    return context


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
    events = _ConnectionLog(options.servers, loud=long_running, refusals=refusals)
    nc = Client()

    async def reconnected() -> None:
        await events.on_reconnected(nc)

    kwargs: dict[str, Any] = {
        "servers": list(options.servers),
        "name": options.name,
        "connect_timeout": connect_timeout,
        "allow_reconnect": long_running,
        # nats-py: -1 retries forever (also the first connect); 0 would too, so a
        # one-shot command allows one retry per server and then gives up.
        "max_reconnect_attempts": -1 if long_running else 1,
        "reconnect_time_wait": 1 if long_running else 0.1,
        "user_credentials": creds.path if creds is not None and creds.jwt else None,
        "nkeys_seed_str": creds.seed if creds is not None and not creds.jwt else None,
        "user": options.user,
        "password": options.password,
        "token": options.token,
        "tls": _tls_context(options),
        "error_cb": events.on_error,
        "reconnected_cb": reconnected,
    }
    try:
        await nc.connect(**kwargs)
    except (OSError, TimeoutError, nats.errors.Error) as err:
        # nats-py leaves the socket open when the server refuses us during connect.
        with contextlib.suppress(Exception):
            await nc.close()
        raise unavailable(options.servers, err) from err
    _REFUSALS[nc] = refusals
    events.connected(nc)
    if not long_running:
        # Failing fast was for the first connect; from now on, reconnect (nats-py reads
        # these options on every disconnect).
        nc.options["allow_reconnect"] = True
        nc.options["max_reconnect_attempts"] = -1
        nc.options["reconnect_time_wait"] = 0.5
    return nc


def refusals_of(nc: Client) -> Refusals:
    """The permission errors of a connection opened by ``connect_nats`` (an empty record,
    never told of any, for another connection)."""
    found = _REFUSALS.get(nc)
    if found is None:
        found = _REFUSALS[nc] = Refusals()
    return found


def unavailable(servers: tuple[str, ...], err: BaseException) -> ServerUnavailableError:
    """The one-line error for a NATS server that does not answer or refuses us."""
    reason = str(err) or type(err).__name__
    if isinstance(err, nats.errors.AuthorizationError) or "authorization" in reason.lower():
        return ServerUnavailableError(
            f"NATS at {','.join(servers)} refused the connection ({reason}): it wants "
            f"credentials this program lacks or does not accept; pass --creds FILE or set "
            f"EVENTSRC_NATS_CREDS (secure mode: DIR/creds/<role>.nk)"
        )
    return ServerUnavailableError(
        f"cannot reach NATS at {','.join(servers)} ({reason}); start the coordinator "
        f"(python -m eventsrc.coordinator) or pass --nats-url / set EVENTSRC_NATS_URL"
    )


class _ConnectionLog:
    """nats-py's callbacks for one connection: one warning per distinct problem, never a
    traceback each, naming the server that was lost once we had one.

    One-shot commands (``loud=False``) report the final error themselves. Permission
    errors go to ``refusals`` so that waiting requests end at once.
    """

    def __init__(self, servers: tuple[str, ...], *, loud: bool, refusals: Refusals) -> None:
        self._servers = servers
        self._loud = loud
        self._refusals = refusals
        self._last = ""
        self.connected_to = ""  # the server we last had; "" before the first connect

    async def on_error(self, err: Exception) -> None:
        if PERMISSION_ERROR in str(err):
            self._refusals.add(str(err))
            if self._loud:
                log.warning("NATS refused: %s (check the credentials' role)", err)
            return
        if not self._loud:
            return
        if self.connected_to:
            # Running, and a server went away: say which; the others may well be up.
            others = [u for u in self._servers if u.rstrip("/") != self.connected_to.rstrip("/")]
            target = ", ".join(others) if len(self._servers) > 1 else "it"
            reason = str(err) or type(err).__name__
            message = f"lost NATS at {self.connected_to} ({reason}); reconnecting to {target}"
        else:
            message = f"{unavailable(self._servers, err)}; retrying"
        if message != self._last:
            self._last = message
            log.warning("%s", message)

    def connected(self, nc: Client) -> None:
        url = nc.connected_url
        self.connected_to = url.geturl() if url is not None else self.connected_to
        self._last = ""

    async def on_reconnected(self, nc: Client) -> None:
        self.connected(nc)
        if self._loud:
            log.warning("reconnected to NATS at %s", self.connected_to)

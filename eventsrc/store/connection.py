"""Connecting to NATS: URL resolution, credentials, and errors a person can act on."""

from __future__ import annotations

import contextlib
import logging
import ssl
import weakref
from collections.abc import Awaitable, Callable, Mapping
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

_DENIED: weakref.WeakKeyDictionary[Client, list[str]] = weakref.WeakKeyDictionary()
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
    refusals: list[str] = []
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
        "error_cb": _error_logger(options.servers, loud=long_running, refusals=refusals),
    }
    nc = Client()
    try:
        await nc.connect(**kwargs)
    except (OSError, TimeoutError, nats.errors.Error) as err:
        # nats-py leaves the socket open when the server refuses us during connect.
        with contextlib.suppress(Exception):
            await nc.close()
        raise unavailable(options.servers, err) from err
    _DENIED[nc] = refusals
    if not long_running:
        # Failing fast was for the first connect; from now on, reconnect (nats-py reads
        # these options on every disconnect).
        nc.options["allow_reconnect"] = True
        nc.options["max_reconnect_attempts"] = -1
        nc.options["reconnect_time_wait"] = 0.5
    return nc


def refused(nc: Client, subject: str) -> str | None:
    """The server's permission error for a publish to ``subject`` on this connection, if
    it sent one (NATS reports them asynchronously; a request just times out)."""
    quoted = f'"{subject.lower()}"'
    return next((text for text in _DENIED.get(nc, ()) if text.endswith(quoted)), None)


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


def _error_logger(
    servers: tuple[str, ...], *, loud: bool, refusals: list[str]
) -> Callable[[Exception], Awaitable[None]]:
    """nats-py's error callback: one warning per distinct problem, not a traceback each.

    One-shot commands (``loud=False``) report the final error themselves. Permission
    errors are kept (the newest few) for ``refused``.
    """
    last = ""

    async def on_error(err: Exception) -> None:
        nonlocal last
        if PERMISSION_ERROR in str(err):
            refusals.append(str(err))
            del refusals[:-20]
            if loud:
                log.warning("NATS refused: %s (check the credentials' role)", err)
            return
        message = str(unavailable(servers, err))
        if loud and message != last:
            last = message
            log.warning("%s; retrying", message)

    return on_error

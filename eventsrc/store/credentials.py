"""Reading a ``--creds`` file: a NATS JWT ``.creds`` file or an NKey seed (secure mode).

``eventsrc secure init`` writes one NKey seed per identity, decorated like nsc does::

    # eventsrc NATS credentials: role=node name=node-gpu-box
    -----BEGIN USER NKEY SEED-----
    SUA...
    ------END USER NKEY SEED------

A bare seed file (one ``SU...`` line, as ``nk -gen user`` writes) works too. A file with
a ``BEGIN NATS USER JWT`` block is an operator-mode ``.creds`` file and is handed to
nats-py as it is.

The role decides how the identity reaches the streams (``Credentials.jetstream_api``) and
the name its inbox (``Credentials.inbox_prefix``): secure mode's server config gives each
role its account and each identity its inbox, so both must match it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import nkeys

from eventsrc.errors import ConfigError

ROLE_COORDINATOR: Final = "coordinator"
ROLE_NODE: Final = "node"
ROLE_SUBMITTER: Final = "submitter"
ROLE_READER: Final = "reader"

RESTRICTED_ROLES: Final = frozenset({ROLE_NODE, ROLE_SUBMITTER, ROLE_READER})
"""Roles that may not create JetStream consumers: a consumer's deliver subject is not
checked against its creator's permissions, so it could push stored messages into the
streams under other subjects. These read by message get instead."""

JS_API: Final = "$JS.API"
"""The JetStream API where the streams live (the cluster's account)."""
JS_API_IMPORTED: Final = "$JS.eventsrc.API"
"""The JetStream API as secure mode's nodes and clients reach it: their accounts import the
few API subjects they may use from the cluster's account under this prefix. Not under
``$JS.API`` itself: in an account without JetStream the server answers that prefix
too ("JetStream not enabled for account"), and its answer would race the imported one."""
INBOX_PREFIX: Final = "_INBOX_"
"""Secure mode's identities receive replies under ``_INBOX_<name>.>`` and may subscribe to
nothing else, so no identity reads another's replies."""

_JWT_MARKER = "BEGIN NATS USER JWT"
_ROLE_LINE = re.compile(r"^#.*\brole=(?P<role>[\w-]+)", re.MULTILINE)
_NAME_LINE = re.compile(r"^#.*\bname=(?P<name>[^\s.*>]+)", re.MULTILINE)


def inbox_prefix(identity: str) -> str:
    """The inbox prefix of a secure-mode identity: ``_INBOX_<identity>``."""
    return f"{INBOX_PREFIX}{identity}"


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a credentials file holds: a JWT creds path, or a user seed and its role."""

    path: str
    jwt: bool
    seed: str | None = None
    role: str | None = None
    name: str | None = None

    @property
    def may_create_consumers(self) -> bool:
        """False for the restricted roles of secure mode (they read by message get)."""
        return self.role not in RESTRICTED_ROLES

    @property
    def jetstream_api(self) -> str:
        """The JetStream API prefix these credentials reach the streams through."""
        return JS_API_IMPORTED if self.role in RESTRICTED_ROLES else JS_API

    @property
    def inbox_prefix(self) -> str | None:
        """The identity's own inbox prefix (secure mode), None for nats-py's default."""
        return inbox_prefix(self.name) if self.name else None


def load_credentials(path: str) -> Credentials:
    """Read and check a credentials file; ConfigError with one line when it is unusable."""
    file = Path(path).expanduser()
    hint = "pass a file written by `eventsrc secure init` (DIR/creds/*.nk) or a NATS .creds file"
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise ConfigError(f"credentials file {file} does not exist; {hint}") from err
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read credentials file {file} ({err}); {hint}") from err
    if _JWT_MARKER in text:
        return Credentials(path=str(file), jwt=True)
    seeds = [line.strip() for line in text.splitlines() if line.strip().startswith("SU")]
    if len(seeds) != 1:
        raise ConfigError(
            f"credentials file {file} holds no NATS user seed (a line starting with SU) "
            f"and no JWT; {hint}"
        )
    try:
        nkeys.from_seed(bytearray(seeds[0].encode())).wipe()
    except (nkeys.NkeysError, ValueError, TypeError) as err:
        raise ConfigError(f"credentials file {file}: the user seed is damaged; {hint}") from err
    role = _ROLE_LINE.search(text)
    name = _NAME_LINE.search(text)
    return Credentials(
        path=str(file),
        jwt=False,
        seed=seeds[0],
        role=role.group("role") if role else None,
        name=name.group("name") if name else None,
    )

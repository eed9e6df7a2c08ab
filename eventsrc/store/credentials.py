"""Reading a ``--creds`` file: a NATS JWT ``.creds`` file or an NKey seed (secure mode).

``eventsrc secure init`` writes one NKey seed per identity, decorated like nsc does::

    # eventsrc NATS credentials: role=node id=gpu-box
    -----BEGIN USER NKEY SEED-----
    SUA...
    ------END USER NKEY SEED------

A bare seed file (one ``SU...`` line, as ``nk -gen user`` writes) works too. A file with
a ``BEGIN NATS USER JWT`` block is an operator-mode ``.creds`` file and is handed to
nats-py as it is.
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

_JWT_MARKER = "BEGIN NATS USER JWT"
_ROLE_LINE = re.compile(r"^#.*\brole=(?P<role>[\w-]+)", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a credentials file holds: a JWT creds path, or a user seed and its role."""

    path: str
    jwt: bool
    seed: str | None = None
    role: str | None = None

    @property
    def may_create_consumers(self) -> bool:
        """False for the restricted roles of secure mode (they read by message get)."""
        return self.role not in RESTRICTED_ROLES


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
    return Credentials(
        path=str(file), jwt=False, seed=seeds[0], role=role.group("role") if role else None
    )

"""Secure mode: a nats-server config with one NKey user per role, and their seeds.

``eventsrc secure init DIR`` writes::

    DIR/nats-server.conf      JetStream on, no anonymous clients, a user per identity
    DIR/secure.json           the settings and the public keys (no secrets); the config
                              is regenerated from it by ``add-node``
    DIR/creds/<name>.nk       one seed per identity (mode 0600): coordinator, submitter,
                              reader, node-<id> for each node

Permissions (docs/design.md, Who writes what) are subject rules; JetStream publishes
are plain publishes, so
the subject is the gate. Only the coordinator may create consumers: a consumer's
deliver subject is not checked against its creator's permissions, so anyone who could
create one could push stored messages back into the streams under other subjects.
Nodes and clients read with message gets instead (``eventsrc.store.getreads``).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import nkeys

from eventsrc.commands.api import API_PREFIX
from eventsrc.commands.api import subject as api_subject
from eventsrc.errors import ConfigError
from eventsrc.events import validate_token
from eventsrc.events.subjects import (
    EVENTS_FILTER,
    HEARTBEATS_FILTER,
    OUTPUT_FILTER,
    heartbeat_subject,
    node_subject,
    output_subject,
    reports_filter,
)
from eventsrc.ports import EVENTS_STREAM, HEARTBEATS_STREAM, OUTPUT_STREAM
from eventsrc.store.assignments import assignment_consumer_name, usable_node_id
from eventsrc.store.credentials import (
    ROLE_COORDINATOR,
    ROLE_NODE,
    ROLE_READER,
    ROLE_SUBMITTER,
)
from eventsrc.store.durability import jetstream_block
from eventsrc.store.lease import LEADER_BUCKET_STREAM

CONFIG_FILE: Final = "nats-server.conf"
STATE_FILE: Final = "secure.json"
CREDS_DIR: Final = "creds"

READ_ENDPOINTS: Final = (
    "get",
    "wait",
    "tasks",
    "nodes",
    "skills",
    "status",
    "schedule_list",
    "schedule_next",
    "limits",
)
SUBMIT_ENDPOINTS: Final = (
    "submit",
    "submit_many",
    "run",
    "cancel",
    "drain",
    "schedule_add",
    "schedule_pause",
    "schedule_resume",
    "schedule_remove",
    "limit_set",
    "limit_remove",
)
NODE_ENDPOINTS: Final = ("node_hello", "register_skills", "wait")

COORDINATOR_PUBLISH: Final = (
    EVENTS_FILTER,
    HEARTBEATS_FILTER,  # a local node running inside the coordinator (--local-node)
    OUTPUT_FILTER,  # and the progress and output of its tasks
    "$JS.API.>",
    "$JS.ACK.>",
    "$JS.FC.>",
    "$KV.EVENTSRC_LEADER.>",
    "$O.EVENTSRC_SNAPSHOTS.>",
    f"{API_PREFIX}.>",
    "$SRV.>",
    "_INBOX.>",  # replies to API requests
)
INBOX: Final = "_INBOX.>"


def stream_reads() -> list[str]:
    """Reading without consumers: stream info and single message gets (request/reply).

    Direct gets are left out on purpose: they reply with the stored message itself, to a
    reply subject the requester picks, which could be a stream subject. The leader
    bucket's stream info is in (not its messages): it lists who stands by, which reveals
    only coordinator ids, for ``eventsrc status`` and the dashboard.
    """
    return [
        *(
            f"$JS.API.STREAM.{op}.{stream}"
            for stream in (EVENTS_STREAM, HEARTBEATS_STREAM, OUTPUT_STREAM)
            for op in ("INFO", "MSG.GET")
        ),
        f"$JS.API.STREAM.INFO.{LEADER_BUCKET_STREAM}",
    ]


def _api(endpoints: tuple[str, ...]) -> list[str]:
    return [api_subject(name) for name in endpoints]


def permissions(role: str, node_id: str | None = None) -> dict[str, Any]:
    """The nats-server permissions map of a role (``node_id`` for nodes); the
    coordinator's publish list is broad and it may subscribe to anything."""
    if role == ROLE_COORDINATOR:
        return {"publish": {"allow": list(COORDINATOR_PUBLISH)}, "subscribe": {"allow": [">"]}}
    if role == ROLE_READER:
        allow = [*_api(READ_ENDPOINTS), "$SRV.>", *stream_reads()]
    elif role == ROLE_SUBMITTER:
        allow = [*_api(READ_ENDPOINTS), *_api(SUBMIT_ENDPOINTS), "$SRV.>", *stream_reads()]
    elif role == ROLE_NODE:
        assert node_id is not None
        consumer = f"{EVENTS_STREAM}.{assignment_consumer_name(node_id)}"
        allow = [
            node_subject(node_id),
            heartbeat_subject(node_id),
            reports_filter(node_id),
            output_subject("*", node_id),  # progress and output of the tasks it runs
            f"$JS.API.CONSUMER.MSG.NEXT.{consumer}",
            f"$JS.API.CONSUMER.INFO.{consumer}",
            f"$JS.ACK.{consumer}.>",
            *_api(NODE_ENDPOINTS),
            *stream_reads(),
        ]
    else:
        raise ConfigError(f"unknown role {role!r}")
    return {"publish": {"allow": allow}, "subscribe": {"allow": [INBOX]}}


@dataclass
class Identity:
    """One NKey user: its role, node id (nodes) and public key."""

    role: str
    nkey: str
    node_id: str | None = None

    @property
    def name(self) -> str:
        return f"node-{self.node_id}" if self.role == ROLE_NODE else self.role


@dataclass
class SecureSetup:
    """What ``secure.json`` holds; the server config is rendered from it."""

    store_dir: str
    host: str = "0.0.0.0"
    port: int = 4222
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca: str | None = None
    users: list[Identity] = field(default_factory=list)

    def render(self) -> str:
        """The nats-server config text."""
        lines = [
            "# Written by `eventsrc secure`; regenerated by `eventsrc secure add-node`.",
            f"host: {json.dumps(self.host)}",
            f"port: {self.port}",
            jetstream_block(self.store_dir),
        ]
        if self.tls_cert:
            tls = {"cert_file": self.tls_cert, "key_file": self.tls_key}
            if self.tls_ca:
                tls["ca_file"] = self.tls_ca
            lines.append(f"tls: {json.dumps(tls)}")
        lines.append("# No no_auth_user: a connection without credentials is refused.")
        lines.append("authorization {\n  users: [")
        for user in self.users:
            entry = {"nkey": user.nkey, "permissions": permissions(user.role, user.node_id)}
            lines.append(f"    # {user.name}\n    {json.dumps(entry)}")
        lines.append("  ]\n}")
        return "\n".join(lines) + "\n"


def _new_seed() -> tuple[str, str]:
    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    pair = nkeys.from_seed(bytearray(seed))
    public = pair.public_key.decode()
    pair.wipe()
    return seed.decode(), public


def _write_seed(folder: Path, identity_name: str, role: str, seed: str) -> Path:
    path = folder / CREDS_DIR / f"{identity_name}.nk"
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    text = (
        f"# eventsrc NATS credentials: role={role} name={identity_name}\n"
        "# Secret: whoever holds this file is this identity. Use it with --creds FILE\n"
        "# or EVENTSRC_NATS_CREDS=FILE.\n"
        "-----BEGIN USER NKEY SEED-----\n"
        f"{seed}\n"
        "------END USER NKEY SEED------\n"
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    return path


def _add(folder: Path, setup: SecureSetup, role: str, node_id: str | None = None) -> Path:
    seed, public = _new_seed()
    identity = Identity(role=role, nkey=public, node_id=node_id)
    setup.users.append(identity)
    return _write_seed(folder, identity.name, role, seed)


def init(
    folder: Path,
    *,
    nodes: tuple[str, ...] = (),
    store_dir: str | None = None,
    host: str = "0.0.0.0",
    port: int = 4222,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    tls_ca: str | None = None,
    force: bool = False,
) -> list[Path]:
    """Write the config and a seed per identity; the files written.

    Raises ConfigError when ``folder`` holds a setup already (unless ``force``) or a
    node id is not a valid subject token.
    """
    if (folder / STATE_FILE).exists() and not force:
        raise ConfigError(
            f"{folder} holds a secure setup already; use `eventsrc secure add-node` to add "
            f"nodes, or --force to replace every key"
        )
    if bool(tls_cert) != bool(tls_key):
        raise ConfigError("--tls-cert and --tls-key go together")
    ids = [usable_node_id(validate_token(node, what="node id")) for node in nodes]
    if len(set(ids)) != len(ids):
        raise ConfigError("a node id is given twice")
    folder.mkdir(parents=True, exist_ok=True)
    setup = SecureSetup(
        store_dir=str(Path(store_dir or folder / "jetstream").resolve()),
        host=host,
        port=port,
        tls_cert=_absolute(tls_cert),
        tls_key=_absolute(tls_key),
        tls_ca=_absolute(tls_ca),
    )
    written = [
        _add(folder, setup, role) for role in (ROLE_COORDINATOR, ROLE_SUBMITTER, ROLE_READER)
    ]
    written += [_add(folder, setup, ROLE_NODE, node) for node in ids]
    return [*_save(folder, setup), *written]


def add_node(folder: Path, node_id: str) -> list[Path]:
    """Add a node identity to an existing setup; the files written."""
    setup = load(folder)
    node_id = usable_node_id(validate_token(node_id, what="node id"))
    if any(user.node_id == node_id for user in setup.users):
        raise ConfigError(f"node {node_id} has credentials already ({folder / CREDS_DIR})")
    creds = _add(folder, setup, ROLE_NODE, node_id)
    return [*_save(folder, setup), creds]


def load(folder: Path) -> SecureSetup:
    """Read ``secure.json``; ConfigError when the folder holds no setup."""
    try:
        data = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise ConfigError(
            f"{folder} holds no secure setup; create one with `eventsrc secure init {folder}`"
        ) from err
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot read {folder / STATE_FILE}: {err}") from err
    users = [Identity(**user) for user in data.pop("users", [])]
    return SecureSetup(**data, users=users)


def _save(folder: Path, setup: SecureSetup) -> list[Path]:
    state, config = folder / STATE_FILE, folder / CONFIG_FILE
    state.write_text(json.dumps(asdict(setup), indent=2) + "\n", encoding="utf-8")
    config.write_text(setup.render(), encoding="utf-8")
    return [config, state]


def _absolute(path: str | None) -> str | None:
    return str(Path(path).resolve()) if path else None

"""Secure mode: a nats-server config with one NKey user per role, and their seeds.

``eventsrc secure init DIR`` writes::

    DIR/nats-server.conf      a single server: listen address, JetStream, TLS; includes
    DIR/auth.conf             the accounts and a user per identity, no anonymous clients
    DIR/secure.json           the settings and the public keys (no secrets); the config
                              is regenerated from it by ``add-node``
    DIR/creds/<name>.nk       one seed per identity (mode 0600): coordinator, submitter,
                              reader, node-<id> for each node

Isolation is NATS' own: three accounts. The coordinators' account holds the streams;
nodes and clients live in accounts of their own and reach the streams only through the
subjects the coordinators' account exports to them. A reply subject names a subject of
the requester's own account, so an answer to a request (from JetStream or the API) can
never be stored by a stream, whatever reply subject the requester picked. Inside each
account, per-user permissions are subject rules (docs/design.md, Who writes what), and
each identity may subscribe only to its own inbox, ``_INBOX_<name>.>``.

Only the coordinator may create consumers: a consumer's deliver subject is not checked
against its creator's permissions, so anyone who could create one could push stored
messages back into the streams under other subjects. Nodes and clients read with
message gets instead (``eventsrc.store.getreads``).
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import nkeys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

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
    JS_API,
    JS_API_IMPORTED,
    ROLE_COORDINATOR,
    ROLE_NODE,
    ROLE_READER,
    ROLE_SUBMITTER,
    inbox_prefix,
)
from eventsrc.store.lease import LEADER_BUCKET_STREAM

CONFIG_FILE: Final = "nats-server.conf"
AUTH_FILE: Final = "auth.conf"
STATE_FILE: Final = "secure.json"
CREDS_DIR: Final = "creds"
TLS_DIR: Final = "tls"
CA_CERT: Final = "ca.pem"
CA_KEY: Final = "ca-key.pem"
SERVER_CERT: Final = "server.pem"
SERVER_KEY: Final = "server-key.pem"
CA_DAYS: Final = 3650
CERT_DAYS: Final = 825
"""Server and client certificates: at most 825 days, as clients such as browsers and
macOS accept."""

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

ACCOUNT_CLUSTER: Final = "EVENTSRC"
"""The coordinators' account: the streams, the leader bucket, the API service."""
ACCOUNT_NODES: Final = "EVENTSRC_NODES"
ACCOUNT_CLIENTS: Final = "EVENTSRC_CLIENTS"
ACCOUNT_OF_ROLE: Final = {
    ROLE_COORDINATOR: ACCOUNT_CLUSTER,
    ROLE_NODE: ACCOUNT_NODES,
    ROLE_SUBMITTER: ACCOUNT_CLIENTS,
    ROLE_READER: ACCOUNT_CLIENTS,
}
RESPONSE_THRESHOLD: Final = "15m"
"""How long an imported request's reply may take (``wait`` blocks for up to ten minutes);
NATS' default of two minutes would drop a late answer."""

COORDINATOR_PUBLISH: Final = (
    EVENTS_FILTER,
    HEARTBEATS_FILTER,  # a local node running inside the coordinator (--local-node)
    OUTPUT_FILTER,  # and the progress and output of its tasks
    f"{JS_API}.>",
    "$JS.ACK.>",
    "$JS.FC.>",
    "$KV.EVENTSRC_LEADER.>",
    "$O.EVENTSRC_SNAPSHOTS.>",
    f"{API_PREFIX}.>",
    "$SRV.>",
    "_R_.>",  # replies to requests from the other accounts (NATS maps their reply subjects)
)

NODE_WRITES: Final = (
    node_subject("*"),
    reports_filter("*"),
    heartbeat_subject("*"),
    output_subject("*", "*"),
)
"""What nodes publish into the streams (each node only its own, by its permissions)."""


def stream_reads(api: str = JS_API_IMPORTED) -> list[str]:
    """Reading without consumers: stream info and single message gets (request/reply).

    Direct gets are left out on purpose: they reply with the stored message itself, which
    nobody needs. The leader bucket's stream info is in (not its messages): it lists who
    stands by, which reveals only coordinator ids, for ``eventsrc status`` and the
    dashboard.
    """
    return [
        *(
            f"{api}.STREAM.{op}.{stream}"
            for stream in (EVENTS_STREAM, HEARTBEATS_STREAM, OUTPUT_STREAM)
            for op in ("INFO", "MSG.GET")
        ),
        f"{api}.STREAM.INFO.{LEADER_BUCKET_STREAM}",
    ]


def _work(api: str, consumer: str) -> list[str]:
    """A node's pull consumer: ask for work, look at it, ack (``consumer`` may be ``*``)."""
    return [
        f"{api}.CONSUMER.MSG.NEXT.{EVENTS_STREAM}.{consumer}",
        f"{api}.CONSUMER.INFO.{EVENTS_STREAM}.{consumer}",
    ]


def exports() -> list[dict[str, Any]]:
    """What the cluster's account offers the others: every subject a node or client may
    publish to, as a service (requests and plain publishes alike)."""
    nodes, both = [ACCOUNT_NODES], [ACCOUNT_NODES, ACCOUNT_CLIENTS]
    pull, info = _work(JS_API, "*")
    return [
        *({"service": subject, "accounts": nodes} for subject in NODE_WRITES),
        # A pull request is answered by a stream of messages, the last up to its expiry.
        {"service": pull, "response_type": "stream", "accounts": nodes},
        {"service": info, "accounts": nodes},
        {"service": f"$JS.ACK.{EVENTS_STREAM}.>", "accounts": nodes},
        *({"service": subject, "accounts": both} for subject in stream_reads(JS_API)),
        {"service": f"{API_PREFIX}.>", "response_threshold": RESPONSE_THRESHOLD, "accounts": both},
        {"service": "$SRV.>", "response_type": "stream", "accounts": both},
    ]


def imports(account: str) -> list[dict[str, Any]]:
    """An account's imports of the cluster's exports; the JetStream API lands under
    ``JS_API_IMPORTED``, everything else under its own subject."""
    found = []
    for export in exports():
        if account not in export["accounts"]:
            continue
        subject: str = export["service"]
        local = JS_API_IMPORTED + subject[len(JS_API) :] if subject.startswith(JS_API) else subject
        found.append({"service": {"account": ACCOUNT_CLUSTER, "subject": subject}, "to": local})
    return found


def _api(endpoints: tuple[str, ...]) -> list[str]:
    return [api_subject(name) for name in endpoints]


def permissions(role: str, node_id: str | None = None) -> dict[str, Any]:
    """The nats-server permissions map of an identity (``node_id`` for nodes), inside its
    role's account: the coordinator's publish list is broad and it may subscribe to
    anything; every other identity subscribes only to its own inbox."""
    name = Identity(role=role, nkey="", node_id=node_id).name
    if role == ROLE_COORDINATOR:
        allow = [*COORDINATOR_PUBLISH, f"{inbox_prefix(name)}.>"]
        return {"publish": {"allow": allow}, "subscribe": {"allow": [">"]}}
    if role == ROLE_READER:
        allow = [*_api(READ_ENDPOINTS), "$SRV.>", *stream_reads()]
    elif role == ROLE_SUBMITTER:
        allow = [*_api(READ_ENDPOINTS), *_api(SUBMIT_ENDPOINTS), "$SRV.>", *stream_reads()]
    elif role == ROLE_NODE:
        assert node_id is not None
        consumer = assignment_consumer_name(node_id)
        allow = [
            node_subject(node_id),
            heartbeat_subject(node_id),
            reports_filter(node_id),
            output_subject("*", node_id),  # progress and output of the tasks it runs
            *_work(JS_API_IMPORTED, consumer),
            f"$JS.ACK.{EVENTS_STREAM}.{consumer}.>",
            *_api(NODE_ENDPOINTS),
            *stream_reads(),
        ]
    else:
        raise ConfigError(f"unknown role {role!r}")
    return {"publish": {"allow": allow}, "subscribe": {"allow": [f"{inbox_prefix(name)}.>"]}}


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
    tls_made: bool = False
    """``--tls``: the CA and certificates are ours (DIR/tls/); add-node issues one more."""
    users: list[Identity] = field(default_factory=list)

    def render(self) -> str:
        """The nats-server config text."""
        lines = [
            "# Written by `eventsrc secure`; regenerated by `eventsrc secure add-node`.",
            f"host: {json.dumps(self.host)}",
            f"port: {self.port}",
            f"jetstream {{ store_dir: {json.dumps(self.store_dir)} }}",
        ]
        if self.tls_cert:
            tls: dict[str, Any] = {"cert_file": self.tls_cert, "key_file": self.tls_key}
            if self.tls_ca:
                # Mutual TLS: a client without a certificate signed by this CA is refused
                # during the handshake, before it can try its credentials.
                tls |= {"ca_file": self.tls_ca, "verify": True}
            lines.append("# TLS only: a plain connection is refused.")
            lines.append(f"tls: {json.dumps(tls)}")
        lines.append(f"include {json.dumps(AUTH_FILE)}")
        return "\n".join(lines) + "\n"

    def render_auth(self) -> str:
        """The accounts and users alone: included by the config above, and by any
        server config of its own (``deploy/nats/secure.conf`` in the compose files)."""
        lines = [
            "# Written by `eventsrc secure`; regenerated by `eventsrc secure add-node`.",
            "# No no_auth_user: a connection without credentials is refused.",
            "accounts {",
        ]
        for account in (ACCOUNT_CLUSTER, ACCOUNT_NODES, ACCOUNT_CLIENTS):
            lines.append(f"  {account}: {{")
            if account == ACCOUNT_CLUSTER:
                lines.append("    jetstream: enabled")
                lines.append(f"    exports: {json.dumps(exports())}")
            else:
                lines.append(f"    imports: {json.dumps(imports(account))}")
            lines.append("    users: [")
            for user in self.users:
                if ACCOUNT_OF_ROLE[user.role] != account:
                    continue
                perms = permissions(user.role, user.node_id)
                entry = {"nkey": user.nkey, "permissions": perms}
                lines.append(f"      # {user.name}\n      {json.dumps(entry)}")
            lines.append("    ]\n  }")
        lines.append("}")
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


def _add(folder: Path, setup: SecureSetup, role: str, node_id: str | None = None) -> list[Path]:
    """A new identity: its seed, and its client certificate when the setup made TLS."""
    seed, public = _new_seed()
    identity = Identity(role=role, nkey=public, node_id=node_id)
    setup.users.append(identity)
    written = [_write_seed(folder, identity.name, role, seed)]
    if setup.tls_made:
        written += _issue_client(folder / TLS_DIR, identity.name)
    return written


def init(
    folder: Path,
    *,
    nodes: tuple[str, ...] = (),
    store_dir: str | None = None,
    host: str = "0.0.0.0",
    port: int = 4222,
    tls: bool = False,
    tls_hosts: tuple[str, ...] = (),
    tls_cert: str | None = None,
    tls_key: str | None = None,
    tls_ca: str | None = None,
    force: bool = False,
) -> list[Path]:
    """Write the config and a seed per identity; the files written.

    ``tls`` makes a CA, a server certificate for ``tls_hosts`` (and the local names) and
    a client certificate per identity in ``folder/tls``; ``tls_cert``/``tls_key`` (and
    ``tls_ca`` for client certificates) name your own instead. Raises ConfigError when
    ``folder`` holds a setup already (unless ``force``) or a node id is not a valid
    subject token.
    """
    if (folder / STATE_FILE).exists() and not force:
        raise ConfigError(
            f"{folder} holds a secure setup already; use `eventsrc secure add-node` to add "
            f"nodes, or --force to replace every key"
        )
    if bool(tls_cert) != bool(tls_key):
        raise ConfigError("--server-cert and --server-key go together")
    if tls and tls_cert:
        raise ConfigError("--tls makes the certificates; leave out --server-cert/--server-key")
    if tls_ca and not tls_cert:
        raise ConfigError("--client-ca goes with --server-cert and --server-key")
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
    written = []
    if tls:
        written += _make_tls(folder, setup, tls_hosts)
    for role in (ROLE_COORDINATOR, ROLE_SUBMITTER, ROLE_READER):
        written += _add(folder, setup, role)
    for node in ids:
        written += _add(folder, setup, ROLE_NODE, node)
    return [*_save(folder, setup), *written]


def add_node(folder: Path, node_id: str) -> list[Path]:
    """Add a node identity to an existing setup; the files written."""
    setup = load(folder)
    node_id = usable_node_id(validate_token(node_id, what="node id"))
    if any(user.node_id == node_id for user in setup.users):
        raise ConfigError(f"node {node_id} has credentials already ({folder / CREDS_DIR})")
    written = _add(folder, setup, ROLE_NODE, node_id)
    return [*_save(folder, setup), *written]


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
    state, config, auth = folder / STATE_FILE, folder / CONFIG_FILE, folder / AUTH_FILE
    state.write_text(json.dumps(asdict(setup), indent=2) + "\n", encoding="utf-8")
    auth.write_text(setup.render_auth(), encoding="utf-8")
    config.write_text(setup.render(), encoding="utf-8")
    return [config, auth, state]


def _make_tls(folder: Path, setup: SecureSetup, hosts: tuple[str, ...]) -> list[Path]:
    """The CA and the server certificate; the setup then serves TLS with them."""
    tls_dir = folder / TLS_DIR
    written = _make_ca(tls_dir)
    names = [*hosts, *(() if setup.host in ("0.0.0.0", "::") else (setup.host,))]
    written += _issue_server(tls_dir, names)
    setup.tls_made = True
    setup.tls_cert = str((tls_dir / SERVER_CERT).resolve())
    setup.tls_key = str((tls_dir / SERVER_KEY).resolve())
    setup.tls_ca = str((tls_dir / CA_CERT).resolve())
    return written


def client_cert_files(name: str) -> tuple[str, str]:
    """The certificate and key file names of an identity's client certificate."""
    return f"{name}.pem", f"{name}-key.pem"


def _make_ca(tls_dir: Path) -> list[Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "eventsrc secure mode CA")])
    cert = (
        _builder(subject, subject, key.public_key(), CA_DAYS)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return _write_pair(tls_dir, CA_CERT, CA_KEY, cert, key)


def _issue_server(tls_dir: Path, hosts: list[str]) -> list[Path]:
    names = list(dict.fromkeys([*hosts, "localhost", "127.0.0.1", "::1", socket.gethostname()]))
    alt: list[x509.GeneralName] = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    usage = ExtendedKeyUsageOID.SERVER_AUTH
    return _issue(tls_dir, "eventsrc nats-server", SERVER_CERT, SERVER_KEY, usage, alt)


def _issue_client(tls_dir: Path, name: str) -> list[Path]:
    cert_file, key_file = client_cert_files(name)
    usage = ExtendedKeyUsageOID.CLIENT_AUTH
    return _issue(tls_dir, name, cert_file, key_file, usage, [])


def _issue(
    tls_dir: Path,
    common_name: str,
    cert_file: str,
    key_file: str,
    usage: x509.ObjectIdentifier,
    alt: list[x509.GeneralName],
) -> list[Path]:
    """A certificate signed by the setup's CA (``DIR/tls/ca-key.pem``)."""
    try:
        ca_key = serialization.load_pem_private_key((tls_dir / CA_KEY).read_bytes(), None)
        ca = x509.load_pem_x509_certificate((tls_dir / CA_CERT).read_bytes())
    except (OSError, ValueError) as err:
        raise ConfigError(
            f"cannot read the setup's CA in {tls_dir} ({err}); it is needed to issue "
            f"certificates (was it moved away?)"
        ) from err
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (
        _builder(subject, ca.subject, key.public_key(), CERT_DAYS)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if alt:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    return _write_pair(tls_dir, cert_file, key_file, builder.sign(ca_key, hashes.SHA256()), key)


def _builder(
    subject: x509.Name, issuer: x509.Name, public: ec.EllipticCurvePublicKey, days: int
) -> x509.CertificateBuilder:
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=days))
    )


def _write_pair(
    tls_dir: Path,
    cert_file: str,
    key_file: str,
    cert: x509.Certificate,
    key: ec.EllipticCurvePrivateKey,
) -> list[Path]:
    tls_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    cert_path, key_path = tls_dir / cert_file, tls_dir / key_file
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    return [cert_path, key_path]


def _absolute(path: str | None) -> str | None:
    return str(Path(path).resolve()) if path else None

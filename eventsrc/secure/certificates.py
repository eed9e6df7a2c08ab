"""Secure mode's TLS files: a CA of the setup's own, the server's certificate and a
client certificate per identity (EC P-256 keys, written with mode 0600)."""

from __future__ import annotations

import ipaddress
import os
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from eventsrc.errors import ConfigError

CA_CERT: Final = "ca.pem"
CA_KEY: Final = "ca-key.pem"
SERVER_CERT: Final = "server.pem"
SERVER_KEY: Final = "server-key.pem"
CA_DAYS: Final = 3650
CERT_DAYS: Final = 825
"""Server and client certificates: at most 825 days, as clients such as browsers and
macOS accept."""


def client_cert_files(name: str) -> tuple[str, str]:
    """The certificate and key file names of an identity's client certificate."""
    return f"{name}.pem", f"{name}-key.pem"


def make_ca(tls_dir: Path) -> list[Path]:
    """A new CA in ``tls_dir``: its certificate and key; the files written."""
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


def issue_server(tls_dir: Path, hosts: list[str]) -> list[Path]:
    """The server's certificate for ``hosts`` and the local names, signed by the CA."""
    names = list(dict.fromkeys([*hosts, "localhost", "127.0.0.1", "::1", socket.gethostname()]))
    alt: list[x509.GeneralName] = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    usage = ExtendedKeyUsageOID.SERVER_AUTH
    return _issue(tls_dir, "eventsrc nats-server", SERVER_CERT, SERVER_KEY, usage, alt)


def issue_client(tls_dir: Path, name: str) -> list[Path]:
    """An identity's client certificate and key, signed by the CA."""
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

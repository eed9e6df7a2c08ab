"""``eventsrc secure init|add-node`` and reading ``--creds`` files: the files written,
and one clear line (no traceback) for a user's mistake."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509

from eventsrc import secure
from eventsrc.errors import ConfigError, InvalidIdError
from eventsrc.store.credentials import load_credentials


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTSRC_")}
    return subprocess.run(
        [sys.executable, "-m", "eventsrc.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def test_init_writes_config_and_one_secret_seed_per_identity(tmp_path: Path) -> None:
    folder = tmp_path / "sec"
    result = _cli("secure", "init", str(folder), "--node", "gpu-1", "--node", "cpu-2")
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in (folder / "creds").iterdir())
    assert names == [
        "coordinator.nk",
        "node-cpu-2.nk",
        "node-gpu-1.nk",
        "reader.nk",
        "submitter.nk",
    ]
    seeds = []
    for path in (folder / "creds").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        creds = load_credentials(str(path))
        assert creds.seed is not None and creds.seed.startswith("SU") and not creds.jwt
        seeds.append(creds.seed)
    assert load_credentials(str(folder / "creds" / "node-gpu-1.nk")).role == "node"
    assert not load_credentials(str(folder / "creds" / "reader.nk")).may_create_consumers
    assert load_credentials(str(folder / "creds" / "coordinator.nk")).may_create_consumers
    config = (folder / secure.AUTH_FILE).read_text()
    assert "no_auth_user" not in config.replace("No no_auth_user", "")
    assert '"evt.task.*.from.gpu-1"' in config and '"hb.cpu-2"' in config
    state = json.loads((folder / "secure.json").read_text())
    written = json.dumps(state)
    assert not any(seed in written for seed in seeds)  # public keys only
    assert all(user["nkey"].startswith("U") for user in state["users"])
    assert len(state["users"]) == 5


def test_add_node_extends_the_config_and_refuses_duplicates(tmp_path: Path) -> None:
    folder = tmp_path / "sec"
    secure.init(folder, nodes=("a",))
    before = (folder / "creds" / "node-a.nk").read_text()
    written = secure.add_node(folder, "b")
    assert folder / "creds" / "node-b.nk" in written
    config = (folder / secure.AUTH_FILE).read_text()
    assert '"hb.a"' in config and '"hb.b"' in config
    assert (folder / "creds" / "node-a.nk").read_text() == before
    with pytest.raises(ConfigError, match="already"):
        secure.add_node(folder, "b")
    with pytest.raises(ConfigError, match="already"):
        secure.init(folder)


def test_bad_node_id_is_one_line(tmp_path: Path) -> None:
    result = _cli("secure", "init", str(tmp_path / "sec"), "--node", "a.b")
    assert result.returncode == 2  # a usage error, like every bad id
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "node id" in result.stderr


def test_a_node_id_that_cannot_name_a_consumer_writes_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "sec"
    result = _cli("secure", "init", str(folder), "--node", "ok", "--node", "a/b")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "consumer name" in result.stderr
    assert not folder.exists()
    secure.init(folder, nodes=("ok",))
    with pytest.raises(InvalidIdError, match="consumer name"):
        secure.add_node(folder, "a\\b")
    assert sorted(p.name for p in (folder / "creds").iterdir()) == [
        "coordinator.nk",
        "node-ok.nk",
        "reader.nk",
        "submitter.nk",
    ]


def test_node_permissions_follow_the_design() -> None:
    perms = secure.permissions("node", "n1")
    publish = perms["publish"]["allow"]
    assert {"evt.node.n1", "hb.n1", "evt.task.*.from.n1"} <= set(publish)
    assert not any(p.startswith(("evt.task.*.to", "evt.skill", "evt.cluster")) for p in publish)
    assert not any("CONSUMER.CREATE" in p or "DIRECT" in p for p in publish)
    assert perms["subscribe"]["allow"] == ["_INBOX_node-n1.>"]
    reader = secure.permissions("reader")
    assert "eventsrc.api.submit" not in reader["publish"]["allow"]


@pytest.mark.parametrize(
    ("content", "expected"),
    [(None, "does not exist"), ("not a key\n", "no NATS user seed"), ("SUAXYZ\n", "damaged")],
)
def test_unusable_creds_file_is_one_line(
    tmp_path: Path, content: str | None, expected: str
) -> None:
    path = tmp_path / "me.nk"
    if content is not None:
        path.write_text(content)
    # The URL is never dialled: the file is checked first.
    result = _cli("--nats-url", "nats://127.0.0.1:9", "--creds", str(path), "status")
    assert result.returncode == 2  # a bad --creds is a usage error
    assert expected in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    node = subprocess.run(
        [
            sys.executable,
            "-m",
            "eventsrc.node",
            "--nats-url",
            "nats://127.0.0.1:9",
            "--creds",
            str(path),
            "--node-id",
            "x",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert node.returncode == 2 and expected in node.stderr
    assert "Traceback" not in node.stderr


def test_tls_init_makes_a_ca_and_add_node_issues_the_nodes_certificate(tmp_path: Path) -> None:
    folder = tmp_path / "sec"
    secure.init(folder, nodes=("a",), host="127.0.0.1", tls=True, tls_hosts=("nats-1",))
    secure.add_node(folder, "b")
    tls_dir = folder / secure.TLS_DIR
    ca = x509.load_pem_x509_certificate((tls_dir / secure.CA_CERT).read_bytes())
    server = x509.load_pem_x509_certificate((tls_dir / secure.SERVER_CERT).read_bytes())
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"nats-1", "localhost"} <= set(names.get_values_for_type(x509.DNSName))
    for name in ("coordinator", "submitter", "reader", "node-a", "node-b"):
        cert_file, key_file = secure.client_cert_files(name)
        cert = x509.load_pem_x509_certificate((tls_dir / cert_file).read_bytes())
        cert.verify_directly_issued_by(ca)  # raises unless the setup's CA signed it
        assert (tls_dir / key_file).stat().st_mode & 0o077 == 0, key_file
    server.verify_directly_issued_by(ca)
    assert (tls_dir / secure.CA_KEY).stat().st_mode & 0o077 == 0
    config = (folder / secure.CONFIG_FILE).read_text()
    assert '"verify": true' in config and str(tls_dir / secure.SERVER_CERT) in config


def test_tls_init_refuses_mixed_certificate_options(tmp_path: Path) -> None:
    result = _cli("secure", "init", str(tmp_path / "s"), "--tls", "--server-cert", "x.pem")
    assert result.returncode == 2 and "go together" in result.stderr, result.stderr
    result = _cli(
        "secure", "init", str(tmp_path / "s"), "--tls", "--server-cert", "x", "--server-key", "y"
    )
    assert result.returncode == 2 and "--tls makes the certificates" in result.stderr
    assert "Traceback" not in result.stderr

"""docker-compose.yml, its overlay and the Dockerfile, checked without a Docker engine.

The compose files are read with PyYAML (merge keys resolved as compose does for
``<<: *anchor``); commands are checked against the real entry points and argument
parsers, and the NATS configs by nats-server itself (``-t``).
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from eventsrc import secure
from eventsrc.coordinator.__main__ import parse_args as coordinator_args
from eventsrc.node.__main__ import parse_args as node_args
from eventsrc.store.server import find_nats_server
from tests.nats_cluster import REPO, SHIPPED_STORE_LINE

NATS = ("nats-1", "nats-2", "nats-3")
COORDINATORS = ("coordinator-1", "coordinator-2")
NODES = ("node-1", "node-2", "node-3")
PROMETHEUS = "prometheus"
HEALTHCHECK_IN_IMAGE = "/usr/local/bin/eventsrc-healthcheck"


def load_compose(*names: str) -> dict[str, Any]:
    """The compose files merged as ``docker compose -f a -f b`` does for what we use:
    services' maps merge, ``command`` is replaced, ``volumes`` merge by target."""
    merged: dict[str, Any] = {}
    for name in names:
        document = yaml.safe_load((REPO / name).read_text())
        for key, value in document.items():
            if key != "services":
                merged[key] = value
                continue
            services = merged.setdefault("services", {})
            for service, spec in value.items():
                services[service] = _merge_service(services.get(service, {}), spec)
    return merged


def _merge_service(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overlay.items():
        if key == "volumes":
            mounts = {_mount(v)[1]: v for v in base.get("volumes", [])}
            mounts.update({_mount(v)[1]: v for v in value})
            merged[key] = list(mounts.values())
        elif key == "environment":
            merged[key] = {**base.get("environment", {}), **value}
        else:
            merged[key] = value
    return merged


def _mount(spec: str) -> tuple[str, str]:
    source, target, *_ = spec.split(":")
    return source, target


def mounts(service: Mapping[str, Any]) -> dict[str, str]:
    """target -> source of a service's volumes."""
    return {target: source for source, target in map(_mount, service.get("volumes", []))}


def nats_conf(path: Path) -> dict[str, Any]:
    """The few settings we check, read from a nats-server config with patterns."""
    text = path.read_text()
    cluster = re.search(r"^cluster\s*\{(.*?)^\}", text, re.S | re.M)
    assert cluster is not None, f"{path} has no cluster block"
    routes = re.findall(r"nats(?:-route)?://([\w.-]+):(\d+)", cluster.group(1))
    return {
        "server_name": _setting(text, "server_name"),
        "port": int(_setting(text, "port")),
        "http_port": int(_setting(text, "http_port")),
        "store_dir": _setting(text, "store_dir"),
        "cluster_name": _setting(cluster.group(1), "name"),
        "cluster_port": int(_setting(cluster.group(1), "port")),
        "routes": sorted((host, int(port)) for host, port in routes),
    }


def _setting(text: str, key: str) -> str:
    found = re.search(rf"^\s*{key}\s*[:=]\s*\"?([^\s\"#]+)", text, re.M)
    assert found is not None, f"no {key} in:\n{text}"
    return found.group(1)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose("docker-compose.yml")


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    services: dict[str, Any] = compose["services"]
    return services


def test_the_topology_is_three_nats_two_coordinators_three_nodes(
    services: dict[str, Any],
) -> None:
    assert sorted(services) == sorted((*NATS, *COORDINATORS, *NODES, PROMETHEUS))


def _flag(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


@pytest.mark.parametrize("overlay", [(), ("docker-compose.secure.yml",)])
def test_prometheus_scrapes_every_coordinator_and_node(overlay: tuple[str, ...]) -> None:
    services = load_compose("docker-compose.yml", *overlay)["services"]
    config_file = mounts(services[PROMETHEUS])["/etc/prometheus/prometheus.yml"]
    config = yaml.safe_load((REPO / config_file).read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    expected = {
        "eventsrc-coordinators": [
            f"{name}:{_flag(services[name]['command'], '--http').rpartition(':')[2]}"
            for name in COORDINATORS
        ],
        "eventsrc-nodes": [
            f"{name}:{_flag(services[name]['command'], '--metrics').rpartition(':')[2]}"
            for name in NODES
        ],
    }
    for job, targets in expected.items():
        assert jobs[job]["static_configs"][0]["targets"] == targets, job
        assert jobs[job].get("metrics_path", "/metrics") == "/metrics"
    for name in COORDINATORS:
        args = coordinator_args(services[name]["command"][3:])
        assert args.http == "0.0.0.0:8470"
    if overlay:
        # A secure cluster's dashboard needs its token: the coordinators read the file
        # Prometheus sends.
        token = jobs["eventsrc-coordinators"]["authorization"]["credentials_file"]
        assert mounts(services[PROMETHEUS])[token] == "./deploy/secure/http-token"
        for name in COORDINATORS:
            assert services[name]["environment"]["EVENTSRC_HTTP_TOKEN_FILE"] == token
            assert mounts(services[name])["/secure"] == "./deploy/secure"


def test_the_grafana_dashboard_is_valid_json_over_our_metrics() -> None:
    import json

    board = json.loads((REPO / "deploy" / "grafana" / "eventsrc-dashboard.json").read_text())
    exprs = [t["expr"] for panel in board["panels"] for t in panel["targets"]]
    assert exprs and all("eventsrc_" in expr for expr in exprs)


def test_each_nats_server_has_its_config_and_routes_to_the_other_two(
    services: dict[str, Any],
) -> None:
    configs = {}
    for name in NATS:
        service = services[name]
        assert service["command"] == ["nats-server", "-c", "/etc/nats/nats.conf"]
        source = mounts(service)["/etc/nats/nats.conf"]
        path = REPO / source
        assert path == REPO / "deploy" / "nats" / f"{name}.conf" and path.is_file(), source
        configs[name] = nats_conf(path)
        assert configs[name]["server_name"] == name
        assert service["hostname"] == name
    assert {c["cluster_name"] for c in configs.values()} == {"eventsrc"}
    for name, config in configs.items():
        others = sorted((other, configs[other]["cluster_port"]) for other in NATS if other != name)
        assert config["routes"] == others, (name, config["routes"])


@pytest.mark.parametrize("name", NATS)
def test_nats_server_accepts_each_shipped_config(name: str) -> None:
    path = REPO / "deploy" / "nats" / f"{name}.conf"
    checked = subprocess.run(
        [find_nats_server(), "-t", "-c", str(path)], capture_output=True, text=True, timeout=30
    )
    assert checked.returncode == 0, checked.stderr
    # Durable by default: flushed to disk before a write is acknowledged.
    assert "  sync_interval: always\n" in path.read_text(encoding="utf-8")


def test_jetstream_data_lives_on_declared_named_volumes(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    declared = set(compose["volumes"])
    assert declared == {f"{name}-data" for name in (*NATS, PROMETHEUS)}
    for name in NATS:
        store_dir = nats_conf(REPO / "deploy" / "nats" / f"{name}.conf")["store_dir"]
        assert f"store_dir: {store_dir}" == SHIPPED_STORE_LINE
        assert mounts(services[name])[store_dir] == f"{name}-data"


def test_every_program_gets_all_three_nats_urls(services: dict[str, Any]) -> None:
    ports = {name: nats_conf(REPO / "deploy" / "nats" / f"{name}.conf")["port"] for name in NATS}
    urls = ",".join(f"nats://{name}:{ports[name]}" for name in NATS)
    for name in (*COORDINATORS, *NODES):
        command = services[name]["command"]
        assert command[command.index("--nats-url") + 1] == urls, name
        assert services[name]["environment"]["EVENTSRC_NATS_URL"] == urls, name


def test_commands_resolve_to_real_entry_points_and_flags(services: dict[str, Any]) -> None:
    for name in COORDINATORS:
        args = _python_module(services[name]["command"], "eventsrc.coordinator")
        parsed = coordinator_args(args)
        assert parsed.replicas == 3, name
    for name in NODES:
        args = _python_module(services[name]["command"], "eventsrc.node")
        parsed = node_args(args)
        assert parsed.node_id == name
        assert parsed.skills_dir == [Path("/skills")]
        assert mounts(services[name])["/skills"] == "./examples/skills"
    assert (REPO / "examples" / "skills").is_dir()
    assert find_nats_server()


def _python_module(command: list[str], module: str) -> list[str]:
    assert command[:3] == ["python", "-m", module], command
    spec = importlib.util.find_spec(f"{module}.__main__")
    assert spec is not None and spec.origin is not None, module
    return command[3:]


def test_health_checks_are_real_commands(services: dict[str, Any]) -> None:
    for name, service in services.items():
        if name == PROMETHEUS:  # its own image; /-/ready is Prometheus's readiness check
            assert "http://127.0.0.1:9090/-/ready" in service["healthcheck"]["test"]
            continue
        test = service["healthcheck"]["test"]
        assert test[:2] == ["CMD", "eventsrc-healthcheck"], (name, test)
        kind = test[2]
        expected = {"nats": NATS, "coordinator": COORDINATORS, "node": NODES}[kind]
        assert name in expected, (name, test)
        if kind == "node":
            assert test[3] == name
        if kind == "nats":
            port = nats_conf(REPO / "deploy" / "nats" / f"{name}.conf")["http_port"]
            assert test[3] == f"http://127.0.0.1:{port}"
    script = (REPO / "deploy" / "healthcheck.py").read_text()
    assert "/healthz?js-enabled-only=true" in script
    dockerfile = (REPO / "Dockerfile").read_text()
    assert f"COPY deploy/healthcheck.py {HEALTHCHECK_IN_IMAGE}" in dockerfile


def test_programs_wait_for_healthy_nats(services: dict[str, Any]) -> None:
    for name in (*COORDINATORS, *NODES):
        depends = services[name]["depends_on"]
        for server in NATS:
            assert depends[server] == {"condition": "service_healthy"}, (name, depends)
    standby = services["coordinator-2"]["depends_on"]["coordinator-1"]
    assert standby == {"condition": "service_healthy"}


def test_the_image_installs_the_package_and_its_console_scripts() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim$", dockerfile, re.M)
    assert "RUN pip install ." in dockerfile
    for copied in re.findall(r"^COPY (\S+) ", dockerfile, re.M):
        assert (REPO / copied).exists(), copied
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for script, target in project["scripts"].items():
        module, _, function = target.partition(":")
        loaded = importlib.import_module(module)
        assert callable(getattr(loaded, function)), script
    ignored = (REPO / ".dockerignore").read_text().split()
    assert ".venv" in ignored and "deploy/secure" in ignored  # never bake credentials in


def test_the_secure_overlay_gives_every_program_its_credentials(tmp_path: Path) -> None:
    services = load_compose("docker-compose.yml", "docker-compose.secure.yml")["services"]
    for name in (*COORDINATORS, *NODES):
        service = services[name]
        identity = "coordinator" if name in COORDINATORS else f"node-{name}"
        creds = f"/secure/{secure.CREDS_DIR}/{identity}.nk"  # what `secure init` writes
        command = service["command"]
        assert command[command.index("--creds") + 1] == creds, name
        assert mounts(service)["/secure"] == "./deploy/secure"
        reader = f"/secure/{secure.CREDS_DIR}/reader.nk"
        assert service["environment"]["EVENTSRC_NATS_CREDS"] == reader
        parse = coordinator_args if name in COORDINATORS else node_args
        assert parse(command[3:]).creds == creds
    for name in NATS:
        service = services[name]
        assert service["command"] == ["nats-server", "-c", "/etc/nats/secure.conf"]
        # Lay the mounts out as the container sees them, with a stand-in auth.conf,
        # and let nats-server check that the includes fit together.
        etc = tmp_path / name
        etc.mkdir()
        for target, source in mounts(service).items():
            if target.startswith("/etc/nats/"):
                destination = etc / Path(target).name
                if source == f"./deploy/secure/{secure.AUTH_FILE}":
                    destination.write_text("authorization { users = [{user: a, password: b}] }\n")
                else:
                    shutil.copy(REPO / source, destination)
        checked = subprocess.run(
            [find_nats_server(), "-t", "-c", str(etc / "secure.conf")],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert checked.returncode == 0, checked.stderr

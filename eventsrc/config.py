"""Configuration: one frozen object per program, from defaults < file < environment < flags.

Only entry points call ``load_config`` with ``os.environ``; library code receives the
finished object. Config files are TOML with the same flat keys as the model fields;
environment variables are ``EVENTSRC_<FIELD>`` (``EVENTSRC_STALE_AFTER=30``).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from eventsrc.errors import ConfigError, first_problem
from eventsrc.runtime import AddOption
from eventsrc.store.connection import NatsOptions
from eventsrc.store.durability import SYNC_ALWAYS, sync_interval

ENV_PREFIX = "EVENTSRC_"

CONNECTION_ENV: Final = {
    "creds": "EVENTSRC_NATS_CREDS",
    "tls_ca": "EVENTSRC_TLS_CA",
    "tls_cert": "EVENTSRC_TLS_CERT",
    "tls_key": "EVENTSRC_TLS_KEY",
}
"""The connection settings every program takes, and the environment variable of each
(the flag is the name with dashes: ``--tls-ca``)."""


def add_connection_options(add: AddOption) -> None:
    """``--creds`` and the TLS files, the same for every program."""
    add("--creds", help=f"NATS credentials file (default: {CONNECTION_ENV['creds']})")
    add(
        "--tls-ca",
        help=f"CA certificate (PEM) the NATS servers' certificates are checked against "
        f"(default: {CONNECTION_ENV['tls_ca']})",
    )
    add(
        "--tls-cert",
        help=f"client certificate (PEM), for a server that asks for one (mutual TLS; "
        f"default: {CONNECTION_ENV['tls_cert']})",
    )
    add("--tls-key", help=f"its private key (PEM) (default: {CONNECTION_ENV['tls_key']})")


def connection_settings(flags: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, str | None]:
    """The connection settings from ``add_connection_options``' flags (``vars(args)``),
    else from the environment: keys as in ``CommonConfig``, None where neither has one."""
    return {
        name: flags.get(name) or env.get(variable) or None
        for name, variable in CONNECTION_ENV.items()
    }


def connection_config(flags: Mapping[str, Any], env: Mapping[str, str]) -> CommonConfig:
    """``connection_settings`` as the config of a program that has no other settings."""
    return CommonConfig.model_validate(connection_settings(flags, env))


class CommonConfig(BaseModel):
    """Settings every long-running program shares."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    nats_url: str | None = None
    creds: str | None = Field(default=None, description="NATS .creds file")
    user: str | None = None
    password: str | None = None
    token: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    log_level: str = "INFO"


class CoordinatorConfig(CommonConfig):
    """The coordinator's settings."""

    data_dir: Path = Path(".eventsrc")
    embedded_port: int | None = Field(
        default=None, ge=0, description="port of the embedded server; 0 = any free port"
    )
    stale_after: float = Field(default=15.0, gt=0, description="seconds without heartbeat")
    sweep_interval: float = Field(default=5.0, gt=0)
    lease_s: float = Field(
        default=6.0, ge=1.0, le=300.0, description="leader lease (KV TTL); renewed every third"
    )
    sync_interval: str = Field(
        default=SYNC_ALWAYS,
        description="when the embedded server flushes to disk: always, or a duration (2m)",
    )
    local_node: bool | None = Field(
        default=None, description="run a node in-process; default: only with embedded server"
    )
    local_node_id: str | None = Field(default=None, description="default: <host name>-local")
    replicas: int = Field(default=1, ge=1, le=5)
    max_queued: int = Field(default=100_000, ge=1, description="waiting tasks before refusal")
    max_payload_bytes: int = Field(
        default=512 * 1024, ge=1, description="largest task payload (JSON bytes) accepted"
    )
    events_max_age: float = Field(default=0, ge=0, description="seconds; 0 = forever")
    events_max_bytes: int = Field(default=-1, ge=-1)
    heartbeats_max_per_node: int = Field(default=1000, ge=1)
    heartbeats_max_age: float = Field(default=3600, gt=0)
    output_max_age: float = Field(
        default=3600, gt=0, description="seconds a running task's progress/output is kept"
    )
    output_max_bytes: int = Field(
        default=256 * 1024 * 1024, ge=1024 * 1024, description="bytes of progress/output kept"
    )
    http: str | None = Field(
        default=None, description="dashboard HOST:PORT, or off; default: loopback if embedded"
    )
    http_token: str | None = Field(default=None, description="token the dashboard asks for")
    http_token_file: Path | None = Field(default=None, description="file holding that token")

    @field_validator("sync_interval")
    @classmethod
    def _sync_interval(cls, value: str) -> str:
        return sync_interval(value)


ConfigT = TypeVar("ConfigT", bound=BaseModel)


def load_config(
    model: type[ConfigT],
    *,
    file: str | Path | None,
    env: Mapping[str, str],
    flags: Mapping[str, Any],
) -> ConfigT:
    """Merge the layers and validate; raise ConfigError with one line on bad input.

    ``flags`` holds only the flags the user gave (None values are ignored).
    """
    merged: dict[str, Any] = {}
    if file is not None:
        merged.update(_read_toml(Path(file)))
    for name in model.model_fields:
        value = env.get(ENV_PREFIX + name.upper())
        if value is not None and value != "":
            merged[name] = value
    merged.update({key: value for key, value in flags.items() if value is not None})
    try:
        return model.model_validate(merged)
    except ValidationError as err:
        problem = first_problem(err, root="settings")
        raise ConfigError(
            f"bad setting {problem.where!r}: {problem.what} (from flags, "
            f"EVENTSRC_{problem.where.upper()} or the config file)"
        ) from err


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError as err:
        raise ConfigError(f"config file {path} does not exist; check the --config path") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {path} is not valid TOML: {err}") from err


class NodeConfig(CommonConfig):
    """A worker node's settings."""

    node_id: str | None = Field(default=None, description="default: the host name")
    skills_dirs: tuple[Path, ...] = ()
    skills: tuple[str, ...] = Field(default=(), description="built-in or catalog skills")
    capacity: int = Field(default=4, ge=1, le=10_000)
    heartbeat_interval: float = Field(default=5.0, gt=0)
    labels: dict[str, str] = Field(default_factory=dict)
    workspace: Path = Path(".")
    drain_timeout: float = Field(default=30.0, ge=0, description="seconds to finish on SIGTERM")
    rescan_interval: float = Field(default=60.0, ge=0, description="0: never rescan skills")
    openclaw_agent: str | None = Field(
        default=None, description="the OpenClaw agent served (default: OpenClaw's default)"
    )
    openclaw_model: str | None = Field(
        default=None, description="provider/model for agent turns (default: OpenClaw's)"
    )
    openclaw_max_turns: int | None = Field(
        default=None, ge=1, le=1000, description="agent turns at once (default: 1 per GB free)"
    )
    max_result_bytes: int = Field(
        default=512 * 1024, ge=1, description="largest task result (JSON bytes) reported"
    )


def nats_options(config: CommonConfig, servers: tuple[str, ...], name: str) -> NatsOptions:
    """Connection options (credentials, TLS) from a program's config."""
    return NatsOptions(
        servers=servers,
        name=name,
        creds=config.creds,
        user=config.user,
        password=config.password,
        token=config.token,
        tls_ca=config.tls_ca,
        tls_cert=config.tls_cert,
        tls_key=config.tls_key,
    )

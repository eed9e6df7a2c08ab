"""Builders for skill folders, fake binaries and OpenClaw config in temporary dirs."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path
from typing import Any


def write_skill(root: Path, folder: str, front: str, body: str = "# Skill\n") -> Path:
    """A skill folder ``root/folder`` whose SKILL.md has the given front matter lines."""
    path = root / folder
    path.mkdir(parents=True, exist_ok=True)
    (path / "SKILL.md").write_text(f"---\n{front.strip()}\n---\n{body}", encoding="utf-8")
    return path


def write_executable(folder: Path, name: str, text: str) -> Path:
    """An executable file (a script with its own shebang line)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def python_script(body: str) -> str:
    """Script text run by this test run's interpreter."""
    return f"#!{sys.executable}\n{body}"


def write_openclaw_config(home: Path, config: dict[str, Any]) -> Path:
    path = home / ".openclaw" / "openclaw.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config), encoding="utf-8")
    return path

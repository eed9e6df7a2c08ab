"""``eventsrc openclaw install``: the skill, the MCP entry, and an uninstall that gives
openclaw.json back byte for byte. (The real OpenClaw reads what it writes in
tests/e2e/test_openclaw.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from eventsrc.openclaw_install import MARKER, SKILL_NAME

URL = "nats://10.1.2.3:4222,nats://10.1.2.4:4222"
# Hand-formatted, with keys OpenClaw would keep and an existing MCP server.
BEFORE = b"""{ "agents": {"defaults": {"model": "scripted/echo"}},
  "mcp": {"servers": {"docs": {"command": "uvx", "args": ["docs-mcp"]}}},
  "skills": {"entries": {"weather": {"enabled": false}}}
}
"""


def run(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("EVENTSRC_", "OPENCLAW_"))}
    return subprocess.run(
        [sys.executable, "-m", "eventsrc.cli", *args],
        env={**clean, "HOME": str(home), **env},
        cwd=home,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / ".openclaw").mkdir()
    return tmp_path


def test_install_registers_the_server_and_uninstall_restores_the_bytes(home: Path) -> None:
    config = home / ".openclaw" / "openclaw.json"
    config.write_bytes(BEFORE)
    creds = home / "submitter.nk"
    installed = run(home, "--nats-url", URL, "--creds", str(creds), "openclaw", "install", "--mcp")
    assert installed.returncode == 0, installed.stderr

    skill = home / ".openclaw" / "skills" / SKILL_NAME / "SKILL.md"
    text = skill.read_text()
    assert f"name: {SKILL_NAME}" in text and '"requires": {"bins": ["eventsrc"]}' in text
    assert "eventsrc submit --skill" in text and "run_task" in text

    written = json.loads(config.read_bytes())
    assert written["agents"] == {"defaults": {"model": "scripted/echo"}}
    assert written["mcp"]["servers"]["docs"] == {"command": "uvx", "args": ["docs-mcp"]}
    entry = written["mcp"]["servers"]["eventsrc"]
    assert Path(entry["command"]).is_absolute()
    assert entry["args"][-5:] == ["--nats-url", URL, "--creds", str(creds), "mcp"]

    again = run(home, "--nats-url", URL, "openclaw", "install", "--mcp")  # idempotent
    assert again.returncode == 0, again.stderr
    removed = run(home, "openclaw", "install", "--uninstall")
    assert removed.returncode == 0, removed.stderr
    assert config.read_bytes() == BEFORE
    assert not skill.parent.exists()
    assert not (home / ".openclaw" / "eventsrc").exists()


def test_without_a_config_uninstall_leaves_none(home: Path) -> None:
    config = home / ".openclaw" / "openclaw.json"
    assert run(home, "--nats-url", URL, "openclaw", "install", "--mcp").returncode == 0
    assert "eventsrc" in json.loads(config.read_text())["mcp"]["servers"]
    assert run(home, "openclaw", "install", "--uninstall").returncode == 0
    assert not config.exists()


def test_a_config_changed_since_keeps_the_change_and_loses_our_entry(home: Path) -> None:
    config = home / ".openclaw" / "openclaw.json"
    config.write_bytes(BEFORE)
    assert run(home, "--nats-url", URL, "openclaw", "install", "--mcp").returncode == 0
    changed = json.loads(config.read_bytes())
    changed["gateway"] = {"port": 19001}
    config.write_text(json.dumps(changed))
    removed = run(home, "openclaw", "install", "--uninstall")
    assert removed.returncode == 0 and "changed since" in removed.stdout
    after = json.loads(config.read_bytes())
    assert after["gateway"] == {"port": 19001}
    assert after["mcp"]["servers"] == {"docs": {"command": "uvx", "args": ["docs-mcp"]}}


def test_state_dir_config_path_and_workspace_are_honoured(home: Path) -> None:
    state, config, workspace = home / "state", home / "elsewhere.json", home / "ws"
    env = {"OPENCLAW_STATE_DIR": str(state), "OPENCLAW_CONFIG_PATH": str(config)}
    done = run(home, "--nats-url", URL, "openclaw", "install", "--workspace", str(workspace), **env)
    assert done.returncode == 0, done.stderr
    assert MARKER in (workspace / "skills" / SKILL_NAME / "SKILL.md").read_text()
    assert not config.exists()  # no --mcp: the config is not touched
    assert run(home, "--nats-url", URL, "openclaw", "install", "--mcp", **env).returncode == 0
    assert (state / "skills" / SKILL_NAME / "SKILL.md").is_file()
    assert "eventsrc" in json.loads(config.read_text())["mcp"]["servers"]
    assert run(home, "openclaw", "install", "--uninstall", **env).returncode == 0
    assert not config.exists() and not (state / "skills" / SKILL_NAME).exists()


def test_json5_and_foreign_entries_are_refused_with_one_line(home: Path) -> None:
    config = home / ".openclaw" / "openclaw.json"
    config.write_text("{\n  // my model\n  agents: {},\n}\n")
    refused = run(home, "openclaw", "install", "--mcp")
    assert refused.returncode == 2  # a config that cannot be used as it is: exit 2
    assert "not plain JSON" in refused.stderr and "openclaw mcp set" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and "Traceback" not in refused.stderr
    assert config.read_text().startswith("{\n  // my model")

    config.write_text(json.dumps({"mcp": {"servers": {"eventsrc": {"command": "x"}}}}))
    clash = run(home, "openclaw", "install", "--mcp")
    assert clash.returncode == 2 and "openclaw mcp unset eventsrc" in clash.stderr


def test_a_node_on_the_machine_does_not_offer_the_skill_to_the_cluster(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from eventsrc.config import NodeConfig
    from eventsrc.node.discovery import SkillDiscovery
    from eventsrc.node.setup import discover

    assert run(home, "--nats-url", URL, "openclaw", "install").returncode == 0
    monkeypatch.setenv("HOME", str(home))
    scripts = Path(sys.executable).parent
    env = {"HOME": str(home), "PATH": f"{scripts}{os.pathsep}{os.environ.get('PATH', '')}"}
    seen = SkillDiscovery(env=env, home=home, workspace=home).scan().skills
    assert seen[SKILL_NAME].eligible  # OpenClaw's view: a skill for this machine's agent
    node = discover(NodeConfig(workspace=home), env)
    assert SKILL_NAME not in node.skills
    assert SKILL_NAME not in {skill.name for skill in node.unavailable}

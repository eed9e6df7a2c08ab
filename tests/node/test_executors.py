"""Executors run real child processes: limits, caps, kills, and what they return."""

from __future__ import annotations

import asyncio
import os
import textwrap
from functools import partial
from pathlib import Path

import pytest

from eventsrc.node.builtins import builtin_skill
from eventsrc.node.discovery import SkillDiscovery
from eventsrc.node.executors import (
    CommandExecutor,
    PythonExecutor,
    executor_for,
)
from tests.node.helpers import python_script, write_executable, write_skill
from tests.processes import is_gone
from tests.waiting import until

ENV = {"PATH": os.defpath}


def exists(path: Path) -> bool:
    return path.exists()


def text_of(path: Path) -> str:
    return path.read_text(encoding="utf-8") if path.exists() else ""


async def wait_for_file(path: Path, timeout: float = 10.0) -> str:
    """The text of a file a child writes once it is ready."""

    def written() -> str:
        text = text_of(path)
        return text if text.strip() else ""

    return await until(written, f"{path} to appear", timeout)


def spawner_code(pid_file: Path) -> str:
    """Python that starts a grandchild, records both pids, then spins forever."""
    return textwrap.dedent(
        f"""
        import os, subprocess, sys
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        with open({str(pid_file)!r}, "w") as f:
            f.write(f"{{os.getpid()}} {{child.pid}}")
        while True:
            pass
        """
    )


async def test_python_prints_42() -> None:
    outcome = await PythonExecutor(env=ENV).run({"code": "print(6*7)"}, timeout=10)
    assert outcome.ok, outcome.error
    assert outcome.result == {"stdout": "42\n", "stderr": "", "exit_code": 0}


async def test_python_runs_isolated_in_a_temporary_directory(tmp_path: Path) -> None:
    code = "import os, sys; print(os.getcwd()); print(sys.flags.isolated)"
    outcome = await PythonExecutor(env=ENV).run({"code": code}, timeout=10)
    cwd, isolated = outcome.result["stdout"].split()
    assert "eventsrc-python-" in cwd and not exists(Path(cwd))
    assert isolated == "1"


async def test_python_timeout_kills_the_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    started = asyncio.get_running_loop().time()
    outcome = await PythonExecutor(env=ENV, kill_grace=0.5).run(
        {"code": spawner_code(pid_file)}, timeout=1.0
    )
    assert asyncio.get_running_loop().time() - started < 5
    assert not outcome.ok and outcome.timed_out and not outcome.retryable
    assert outcome.error is not None and "timed out after 1s" in outcome.error
    for pid in map(int, pid_file.read_text(encoding="utf-8").split()):
        await until(partial(is_gone, pid), f"process {pid} to end after the time-out", 5)


async def test_sigterm_ignored_means_sigkill_after_the_grace(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    code = textwrap.dedent(
        f"""
        import os, signal
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        open({str(pid_file)!r}, "w").write(str(os.getpid()))
        while True:
            pass
        """
    )
    outcome = await PythonExecutor(env=ENV, kill_grace=0.2).run({"code": code}, timeout=0.5)
    assert outcome.timed_out and outcome.result["exit_code"] == -9
    pid = int(text_of(pid_file))
    await until(partial(is_gone, pid), f"process {pid} to end after SIGKILL", 5)


async def test_what_a_finished_command_left_running_is_killed(tmp_path: Path) -> None:
    folder = tmp_path / "bg"
    write_executable(
        folder, "bg.sh", "#!/bin/sh\nsleep 30 &\necho $! > bg.pid\necho '{\"done\": true}'\n"
    )
    started = asyncio.get_running_loop().time()
    outcome = await CommandExecutor(folder, "./bg.sh", env=ENV).run({}, timeout=20)
    assert outcome.result == {"done": True}
    # The background sleep holds stdout open; without the group kill this took 30 s.
    assert asyncio.get_running_loop().time() - started < 5
    pid = int(text_of(folder / "bg.pid"))
    await until(partial(is_gone, pid), f"the background sleep {pid} to end", 5)


async def test_cancel_event_kills_the_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    cancel = asyncio.Event()
    run = asyncio.create_task(
        PythonExecutor(env=ENV).run({"code": spawner_code(pid_file)}, timeout=30, cancel=cancel)
    )
    pids = [int(p) for p in (await wait_for_file(pid_file)).split()]
    cancel.set()
    outcome = await asyncio.wait_for(run, 10)
    assert not outcome.ok and outcome.cancelled and outcome.error == "cancelled"
    await until(lambda: all(map(is_gone, pids)), f"processes {pids} to end", 5)


async def test_cancelling_the_awaiting_task_kills_the_child(tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    run = asyncio.create_task(
        PythonExecutor(env=ENV).run({"code": spawner_code(pid_file)}, timeout=30)
    )
    pids = [int(p) for p in (await wait_for_file(pid_file)).split()]
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    await until(lambda: all(map(is_gone, pids)), f"processes {pids} to end", 5)


async def test_an_already_set_cancel_starts_nothing() -> None:
    cancel = asyncio.Event()
    cancel.set()
    outcome = await PythonExecutor(env=ENV).run({"code": "print(1)"}, timeout=5, cancel=cancel)
    assert outcome.cancelled and outcome.result is None


async def test_python_output_is_capped() -> None:
    code = "import sys; print('x' * 200_000); print('y' * 5000, file=sys.stderr)"
    outcome = await PythonExecutor(env=ENV, output_cap=1024).run({"code": code}, timeout=10)
    assert outcome.ok
    stdout, stderr = outcome.result["stdout"], outcome.result["stderr"]
    assert stdout.startswith("x" * 1024) and "x" * 1025 not in stdout
    assert "truncated: 198977 more bytes" in stdout
    assert stderr.startswith("y" * 1024) and "truncated" in stderr


async def test_python_non_zero_exit_fails_with_the_last_stderr_line() -> None:
    code = "import sys; print('partial'); print('boom', file=sys.stderr); sys.exit(3)"
    outcome = await PythonExecutor(env=ENV).run({"code": code}, timeout=10)
    assert not outcome.ok and not outcome.retryable
    assert outcome.error == "python failed with exit code 3: boom"
    assert outcome.result == {"stdout": "partial\n", "stderr": "boom\n", "exit_code": 3}


async def test_python_exception_names_the_error() -> None:
    outcome = await PythonExecutor(env=ENV).run({"code": "1/0"}, timeout=10)
    assert outcome.error is not None and outcome.error.endswith(
        "ZeroDivisionError: division by zero"
    )


@pytest.mark.parametrize("payload", [{}, {"code": 42}, "print(1)", None])
async def test_python_payload_without_code(payload: object) -> None:
    outcome = await PythonExecutor(env=ENV).run(payload, timeout=5)
    assert not outcome.ok and not outcome.retryable
    assert outcome.error is not None and '{"code"' in outcome.error


ECHO = python_script(
    textwrap.dedent(
        """
        import json, os, sys
        payload = json.load(sys.stdin)
        if payload.get("fail"):
            print("went wrong", file=sys.stderr)
            sys.exit(payload.get("code", 2))
        if payload.get("text"):
            print("plain words")
        else:
            print(json.dumps({"got": payload, "cwd": os.getcwd()}))
        """
    )
)


@pytest.fixture
def echo_skill(tmp_path: Path) -> Path:
    folder = write_skill(
        tmp_path / "skills", "echo", "name: echo\nmetadata:\n  eventsrc:\n    run: echo.py --x"
    )
    write_executable(folder, "echo.py", ECHO)
    return folder


async def test_command_skill_gets_json_and_returns_json(echo_skill: Path) -> None:
    outcome = await CommandExecutor(echo_skill, "echo.py", env=ENV).run({"n": [1, 2]}, timeout=10)
    assert outcome.ok, outcome.error
    assert outcome.result == {"got": {"n": [1, 2]}, "cwd": str(echo_skill)}


async def test_command_skill_text_output_and_failures(echo_skill: Path) -> None:
    executor = CommandExecutor(echo_skill, "./echo.py", env=ENV)
    assert (await executor.run({"text": True}, timeout=10)).result == "plain words"

    failed = await executor.run({"fail": True}, timeout=10)
    assert not failed.ok and not failed.retryable
    assert failed.error is not None and failed.error.endswith("exit code 2: went wrong")
    assert failed.result["exit_code"] == 2

    tempfail = await executor.run({"fail": True, "code": 75}, timeout=10)
    assert not tempfail.ok and tempfail.retryable


async def test_command_skill_timeout_s_caps_the_task_timeout(tmp_path: Path) -> None:
    folder = tmp_path / "slow"
    write_executable(folder, "slow.sh", "#!/bin/sh\nsleep 30\n")
    outcome = await CommandExecutor(folder, "./slow.sh", 0.3, env=ENV, kill_grace=0.2).run(
        {}, timeout=30
    )
    assert outcome.timed_out and outcome.error is not None and "0.3s" in outcome.error


async def test_command_that_cannot_start(tmp_path: Path) -> None:
    outcome = await CommandExecutor(tmp_path, "no-such-program-here", env=ENV).run({}, timeout=5)
    assert not outcome.ok and not outcome.retryable
    assert outcome.error is not None and "cannot start no-such-program-here" in outcome.error


async def test_discovered_run_skill_through_executor_for(echo_skill: Path, tmp_path: Path) -> None:
    scan = SkillDiscovery(env=ENV, workspace=tmp_path, home=tmp_path / "home").scan()
    executor = executor_for(scan.skills["echo"], ENV)
    assert isinstance(executor, CommandExecutor)
    outcome = await executor.run({"hello": "world"}, timeout=10)
    assert outcome.result["got"] == {"hello": "world"}


def test_executor_for_builtins_and_ineligible_skills(tmp_path: Path) -> None:
    assert isinstance(executor_for(builtin_skill("python"), ENV), PythonExecutor)
    # Other built-ins have no executor of their own; without openclaw they have none.
    assert executor_for(builtin_skill("search"), {"PATH": str(tmp_path)}) is None
    gated = (
        'name: g\nmetadata: {"openclaw": {"requires": {"env": ["NOPE"]}}, "eventsrc": {"run": "x"}}'
    )
    write_skill(tmp_path / "skills", "g", gated)
    skill = SkillDiscovery(env=ENV, workspace=tmp_path, home=tmp_path).scan().skills["g"]
    assert not skill.eligible and executor_for(skill, ENV) is None

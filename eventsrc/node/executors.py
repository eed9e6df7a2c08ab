"""What runs a task's skill on a node: a child process with a time limit and an output cap.

The children run through ``eventsrc.node.process``: each in a process group of its own,
killed as a whole on time-out or cancellation, so no executor leaves a process behind
(POSIX only).

Failures are results, never exceptions: ``ExecutionResult(ok=False, error=...)``.
``retryable`` is true only where another attempt may well succeed: a command that exits
with 75 (``EX_TEMPFAIL``), a failed OpenClaw agent turn, a spawn refused for lack of
resources (an OpenClaw turn's own rules are in ``eventsrc.node.agent_turn``). Time-outs
and cancellations are not retryable and say so in ``timed_out``
and ``cancelled``.
"""

from __future__ import annotations

import asyncio
import shlex
import shutil
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import orjson

from eventsrc.node.agent_turn import OpenClawExecutor, TurnLimit
from eventsrc.node.builtins import EXECUTABLE_BUILTINS
from eventsrc.node.discovery import BUILTIN_SOURCE, DiscoveredSkill
from eventsrc.node.process import (
    DEFAULT_KILL_GRACE_S,
    DEFAULT_OUTPUT_CAP,
    _Limits,
    _run_child,
    json_or_text,
)
from eventsrc.node.process import ExecutionResult as ExecutionResult

__all__ = [
    "DEFAULT_KILL_GRACE_S",
    "DEFAULT_OUTPUT_CAP",
    "EX_TEMPFAIL",
    "CommandExecutor",
    "ExecutionResult",
    "Executor",
    "OpenClawExecutor",
    "PythonExecutor",
    "executor_for",
]

EX_TEMPFAIL = 75
"""A ``run`` command exiting with this code (sysexits.h) asks for a retry."""


class Executor(Protocol):
    """Runs one task payload; ``cancel`` being set stops the run like a time-out does."""

    async def run(
        self, payload: Any, *, timeout: float, cancel: asyncio.Event | None = None
    ) -> ExecutionResult: ...


class PythonExecutor:
    """The built-in ``python`` skill: payload ``{"code": "..."}``.

    Runs the code with ``python -I`` (isolated: no user site, no PYTHON* variables) in a
    fresh temporary directory, the code read from stdin. Result:
    ``{"stdout", "stderr", "exit_code"}``; a non-zero exit is a failure that keeps them.
    """

    def __init__(
        self,
        *,
        env: Mapping[str, str] | None = None,
        python: str = sys.executable,
        output_cap: int = DEFAULT_OUTPUT_CAP,
        kill_grace: float = DEFAULT_KILL_GRACE_S,
    ) -> None:
        self._python = python
        self._limits = _Limits(env, output_cap, kill_grace)

    async def run(
        self, payload: Any, *, timeout: float, cancel: asyncio.Event | None = None
    ) -> ExecutionResult:
        code = payload.get("code") if isinstance(payload, Mapping) else None
        if not isinstance(code, str):
            return ExecutionResult(
                ok=False,
                error='the python skill needs a payload {"code": "<python source>"}; '
                f"got {_describe(payload)}",
            )
        with tempfile.TemporaryDirectory(prefix="eventsrc-python-") as workdir:
            child = await _run_child(
                [self._python, "-I", "-"],
                cwd=workdir,
                stdin=code.encode(),
                timeout=timeout,
                cancel=cancel,
                limits=self._limits,
            )
        if isinstance(child, ExecutionResult):
            return child
        return child.outcome(
            result=child.streams(), what="python", retryable=child.returncode == EX_TEMPFAIL
        )


class CommandExecutor:
    """A SKILL.md ``run`` command, started in the skill folder.

    The payload goes to stdin as JSON; stdout is the result, parsed as JSON when it
    parses, else the text. The first word is taken relative to the folder when such a
    file exists there, else looked up on PATH. ``timeout_s`` (the skill's own limit)
    caps the task's timeout.
    """

    def __init__(
        self,
        folder: Path,
        run: str,
        timeout_s: float | None = None,
        *,
        env: Mapping[str, str] | None = None,
        output_cap: int = DEFAULT_OUTPUT_CAP,
        kill_grace: float = DEFAULT_KILL_GRACE_S,
    ) -> None:
        self.folder = Path(folder)
        self.argv = shlex.split(run)
        if not self.argv:
            raise ValueError("a run command needs at least a program name")
        local = self.folder / self.argv[0]
        if not Path(self.argv[0]).is_absolute() and local.is_file():
            self.argv[0] = str(local.resolve())
        self.timeout_s = timeout_s
        self._limits = _Limits(env, output_cap, kill_grace)

    async def run(
        self, payload: Any, *, timeout: float, cancel: asyncio.Event | None = None
    ) -> ExecutionResult:
        try:
            data = orjson.dumps(payload) + b"\n"
        except TypeError as err:
            return ExecutionResult(ok=False, error=f"the payload is not JSON: {err}")
        if self.timeout_s is not None:
            timeout = min(timeout, self.timeout_s)
        child = await _run_child(
            self.argv,
            cwd=str(self.folder),
            stdin=data,
            timeout=timeout,
            cancel=cancel,
            limits=self._limits,
        )
        if isinstance(child, ExecutionResult):
            return child
        if child.returncode == 0:
            return ExecutionResult(ok=True, result=json_or_text(child.stdout.text()))
        return child.outcome(
            result=child.streams(),
            what=shlex.join(self.argv),
            retryable=child.returncode == EX_TEMPFAIL,
        )


def executor_for(
    skill: DiscoveredSkill,
    env: Mapping[str, str],
    *,
    workspace: Path | None = None,
    model: str | None = None,
    node_id: str | None = None,
    turns: TurnLimit | None = None,
) -> Executor | None:
    """The executor for a skill this node may run, or None ("no executor").

    Built-in ``python`` → PythonExecutor; a ``run`` command → CommandExecutor; else one
    OpenClaw agent turn per task when ``openclaw`` is on the PATH in ``env`` (in the
    served agent's ``workspace``, with ``model`` if set, at most ``turns`` at once).
    Ineligible skills get None.
    """
    if not skill.eligible:
        return None
    if skill.source == BUILTIN_SOURCE and skill.name in EXECUTABLE_BUILTINS:
        return PythonExecutor(env=env)
    if skill.run is not None and skill.folder is not None:
        return CommandExecutor(skill.folder, skill.run, skill.timeout_s, env=env)
    openclaw = shutil.which("openclaw", path=env.get("PATH", ""))
    if openclaw is not None:
        return OpenClawExecutor(
            skill.name,
            openclaw=openclaw,
            workspace=workspace,
            model=model,
            node_id=node_id,
            turns=turns,
            env=env,
        )
    return None


def _describe(payload: Any) -> str:
    if isinstance(payload, Mapping):
        return f"an object with keys {sorted(map(str, payload))}"
    return f"a {type(payload).__name__}"

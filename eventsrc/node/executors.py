"""What runs a task's skill on a node: a child process with a time limit and an output cap.

Every child starts in a process group of its own. When it times out, is cancelled, or
the awaiting task is cancelled, the whole group gets SIGTERM, then SIGKILL after a
grace period; when it exits by itself, whatever it left running in its group is
killed. So no executor leaves a process behind (POSIX only).

Failures are results, never exceptions: ``ExecutionResult(ok=False, error=...)``.
``retryable`` is true only where another attempt may well succeed: a command that exits
with 75 (``EX_TEMPFAIL``), a failed OpenClaw agent turn, a spawn refused for lack of
resources. Time-outs and cancellations are not retryable and say so in ``timed_out``
and ``cancelled``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import shlex
import shutil
import signal
import sys
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson

from eventsrc.node.builtins import EXECUTABLE_BUILTINS
from eventsrc.node.discovery import BUILTIN_SOURCE, DiscoveredSkill

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

DEFAULT_OUTPUT_CAP = 64 * 1024
"""Bytes kept per stream (stdout, stderr); the rest is counted and dropped."""
DEFAULT_KILL_GRACE_S = 2.0
EX_TEMPFAIL = 75
"""A ``run`` command exiting with this code (sysexits.h) asks for a retry."""


@dataclass(frozen=True)
class ExecutionResult:
    """The outcome of one run: ``result`` on success; on failure ``error`` says why."""

    ok: bool
    result: Any = None
    error: str | None = None
    retryable: bool = False
    timed_out: bool = False
    cancelled: bool = False


class Executor(Protocol):
    """Runs one task payload; ``cancel`` being set stops the run like a time-out does."""

    async def run(
        self, payload: Any, *, timeout: float, cancel: asyncio.Event | None = None
    ) -> ExecutionResult: ...


@dataclass(frozen=True)
class _Limits:
    env: Mapping[str, str] | None
    output_cap: int
    kill_grace: float


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
            return ExecutionResult(ok=True, result=_json_or_text(child.stdout.text()))
        return child.outcome(
            result=child.streams(),
            what=shlex.join(self.argv),
            retryable=child.returncode == EX_TEMPFAIL,
        )


class OpenClawExecutor:
    """Hands a skill without ``run`` to the local OpenClaw agent.

    Runs ``openclaw agent --session-id eventsrc-<skill>-<uuid> --message <text> --json
    --timeout <s>`` (plus ``--agent ID`` when given): one agent turn through the
    Gateway, which falls back to the embedded agent. The message names the skill and
    carries the payload as JSON. The result is the reply text (``payloads[].text``),
    parsed as JSON when it parses.
    """

    def __init__(
        self,
        skill: str,
        *,
        openclaw: str = "openclaw",
        agent: str | None = None,
        env: Mapping[str, str] | None = None,
        output_cap: int = DEFAULT_OUTPUT_CAP,
        kill_grace: float = DEFAULT_KILL_GRACE_S,
    ) -> None:
        self.skill = skill
        self._openclaw = openclaw
        self._agent = agent
        self._limits = _Limits(env, output_cap, kill_grace)

    def message(self, payload: Any) -> str:
        """The agent's instructions for one task."""
        body = orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode()
        return (
            f'Use your "{self.skill}" skill to carry out this task from an eventsrc '
            f"cluster.\nTask payload (JSON):\n{body}\n"
            "Reply with the result only: JSON if it is structured, else plain text."
        )

    async def run(
        self, payload: Any, *, timeout: float, cancel: asyncio.Event | None = None
    ) -> ExecutionResult:
        try:
            message = self.message(payload)
        except TypeError as err:
            return ExecutionResult(ok=False, error=f"the payload is not JSON: {err}")
        session = f"eventsrc-{self.skill}-{uuid.uuid4().hex}"
        argv = [self._openclaw, "agent", "--session-id", session]
        if self._agent:
            argv += ["--agent", self._agent]
        argv += ["--message", message, "--json", "--timeout", str(max(1, math.ceil(timeout)))]
        child = await _run_child(
            argv, cwd=None, stdin=None, timeout=timeout, cancel=cancel, limits=self._limits
        )
        if isinstance(child, ExecutionResult):
            return child
        if child.returncode != 0:
            # Model and gateway errors are mostly transient (rate limits, restarts).
            return child.outcome(result=child.streams(), what="openclaw agent", retryable=True)
        return ExecutionResult(ok=True, result=_agent_reply(child.stdout.text()))


def executor_for(skill: DiscoveredSkill, env: Mapping[str, str]) -> Executor | None:
    """The executor for a skill this node may run, or None ("no executor").

    Built-in ``python`` → PythonExecutor; a ``run`` command → CommandExecutor; else the
    local OpenClaw agent when ``openclaw`` is on the PATH in ``env``. Ineligible skills
    get None.
    """
    if not skill.eligible:
        return None
    if skill.source == BUILTIN_SOURCE and skill.name in EXECUTABLE_BUILTINS:
        return PythonExecutor(env=env)
    if skill.run is not None and skill.folder is not None:
        return CommandExecutor(skill.folder, skill.run, skill.timeout_s, env=env)
    openclaw = shutil.which("openclaw", path=env.get("PATH", ""))
    if openclaw is not None:
        return OpenClawExecutor(skill.name, openclaw=openclaw, env=env)
    return None


class _Capture:
    """Keeps the first ``cap`` bytes of a stream and counts the rest."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.data = bytearray()
        self.dropped = 0

    async def drain(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(65536):
            room = max(0, self.cap - len(self.data))
            self.data += chunk[:room]
            self.dropped += len(chunk) - min(room, len(chunk))

    def body(self) -> str:
        return self.data.decode("utf-8", errors="replace")

    def text(self) -> str:
        text = self.body()
        if self.dropped:
            text += f"\n[... output truncated: {self.dropped} more bytes]"
        return text


@dataclass(frozen=True)
class _Child:
    returncode: int
    stdout: _Capture
    stderr: _Capture
    timed_out: bool
    cancelled: bool
    timeout: float

    def streams(self) -> dict[str, Any]:
        return {
            "stdout": self.stdout.text(),
            "stderr": self.stderr.text(),
            "exit_code": self.returncode,
        }

    def outcome(self, *, result: Any, what: str, retryable: bool = False) -> ExecutionResult:
        """The ExecutionResult of a finished child; ok only for a clean exit 0."""
        if self.cancelled:
            return ExecutionResult(ok=False, result=result, error="cancelled", cancelled=True)
        if self.timed_out:
            return ExecutionResult(
                ok=False,
                result=result,
                timed_out=True,
                error=f"{what} timed out after {self.timeout:g}s and was killed",
            )
        if self.returncode == 0:
            return ExecutionResult(ok=True, result=result)
        if self.returncode < 0:
            error = f"{what} was killed by {_signal_name(-self.returncode)}"
        else:
            error = f"{what} failed with exit code {self.returncode}"
        tail = _last_line(self.stderr.body()) or _last_line(self.stdout.body())
        return ExecutionResult(
            ok=False,
            result=result,
            retryable=retryable,
            error=f"{error}: {tail}" if tail else error,
        )


class _ChildProtocol(asyncio.subprocess.SubprocessStreamProtocol):
    """Stream protocol that also tells when the child itself exited.

    ``Process.wait()`` returns only once every pipe is closed, which a grandchild
    holding stdout can delay forever; ``exited`` resolves when the child is reaped.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=2**16, loop=loop)
        self.exited: asyncio.Future[None] = loop.create_future()

    def process_exited(self) -> None:
        super().process_exited()
        if not self.exited.done():
            self.exited.set_result(None)


async def _run_child(
    argv: Sequence[str],
    *,
    cwd: str | None,
    stdin: bytes | None,
    timeout: float,
    cancel: asyncio.Event | None,
    limits: _Limits,
) -> _Child | ExecutionResult:
    """Run a child to its end, its time-out or ``cancel``; kill its group in every case."""
    if cancel is not None and cancel.is_set():
        return ExecutionResult(ok=False, error="cancelled", cancelled=True)
    loop = asyncio.get_running_loop()
    try:
        transport, protocol = await loop.subprocess_exec(
            lambda: _ChildProtocol(loop),
            *argv,
            cwd=cwd,
            env=None if limits.env is None else dict(limits.env),
            stdin=asyncio.subprocess.DEVNULL if stdin is None else asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as err:
        # Missing or non-executable programs will not fix themselves; EAGAIN may.
        transient = not isinstance(err, FileNotFoundError | PermissionError | NotADirectoryError)
        error = f"cannot start {argv[0]}: {err}"
        return ExecutionResult(ok=False, error=error, retryable=transient)
    try:
        return await _supervise(transport, protocol, stdin, timeout, cancel, limits)
    finally:
        transport.close()


async def _supervise(
    transport: asyncio.SubprocessTransport,
    protocol: _ChildProtocol,
    stdin: bytes | None,
    timeout: float,
    cancel: asyncio.Event | None,
    limits: _Limits,
) -> _Child:
    pid = transport.get_pid()
    assert protocol.stdout is not None and protocol.stderr is not None
    out, err = _Capture(limits.output_cap), _Capture(limits.output_cap)
    helpers = [
        asyncio.create_task(out.drain(protocol.stdout)),
        asyncio.create_task(err.drain(protocol.stderr)),
    ]
    if stdin is not None and protocol.stdin is not None:
        helpers.append(asyncio.create_task(_feed(protocol.stdin, stdin)))
    exited = protocol.exited
    stop = asyncio.create_task(cancel.wait()) if cancel is not None else None
    timed_out = cancelled = False
    try:
        try:
            waits: set[asyncio.Future[Any]] = {exited} if stop is None else {exited, stop}
            await asyncio.wait(waits, timeout=max(timeout, 0), return_when=asyncio.FIRST_COMPLETED)
            if not exited.done():
                cancelled = stop is not None and stop.done()
                timed_out = not cancelled
                _signal_group(pid, signal.SIGTERM)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(exited), limits.kill_grace)
        finally:
            # Also on CancelledError: nothing of the group may outlive this call.
            _signal_group(pid, signal.SIGKILL)
            if stop is not None:
                stop.cancel()
        await exited
        # The pipes close when their last holder dies; one that left the group (setsid)
        # must not hang us, so the readers get a bounded time.
        _, pending = await asyncio.wait(helpers, timeout=limits.kill_grace)
    except BaseException:
        for task in helpers:
            task.cancel()
        raise
    for task in pending:
        task.cancel()
    returncode = transport.get_returncode()
    assert returncode is not None
    return _Child(returncode, out, err, timed_out, cancelled, timeout)


async def _feed(writer: asyncio.StreamWriter, data: bytes) -> None:
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        writer.write(data)
        await writer.drain()
    writer.close()
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        await writer.wait_closed()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _agent_reply(stdout: str) -> Any:
    """The reply text of ``openclaw agent --json`` output (log lines may precede it)."""
    decoder = json.JSONDecoder()
    starts = [0] + [i + 1 for i, ch in enumerate(stdout) if ch == "\n"]
    for start in (s for s in starts if stdout.startswith("{", s)):
        try:
            parsed, _ = decoder.raw_decode(stdout, start)
        except ValueError:
            continue
        if isinstance(parsed, dict) and isinstance(parsed.get("payloads"), list):
            texts = [
                p["text"]
                for p in parsed["payloads"]
                if isinstance(p, dict) and isinstance(p.get("text"), str) and p["text"]
            ]
            return _json_or_text("\n".join(texts))
    return _json_or_text(stdout)


def _json_or_text(text: str) -> Any:
    stripped = text.strip()
    if not stripped:
        return None
    try:
        return orjson.loads(stripped)
    except orjson.JSONDecodeError:
        return stripped


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:500] if lines else ""


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _describe(payload: Any) -> str:
    if isinstance(payload, Mapping):
        return f"an object with keys {sorted(map(str, payload))}"
    return f"a {type(payload).__name__}"

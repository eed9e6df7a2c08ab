"""The child processes executors run: a process group each, a time limit, an output cap.

While an attempt runs, each line of the child's stdout and stderr also goes to the
attempt's output sink (``eventsrc.node.output``), which streams them live.

Every child starts in a process group of its own. When it times out, is cancelled, or
the awaiting task is cancelled, the whole group gets SIGTERM, then SIGKILL after a
grace period; when it exits by itself, whatever it left running in its group is
killed. So no executor leaves a process behind (POSIX only).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from eventsrc.events.output import OutputKind
from eventsrc.lineage import TASK_ID_ENV, running_task
from eventsrc.node.output import OutputSink, current_output

__all__ = ["DEFAULT_KILL_GRACE_S", "DEFAULT_OUTPUT_CAP"]

DEFAULT_OUTPUT_CAP = 64 * 1024
"""Bytes kept per stream (stdout, stderr); the rest is counted and dropped."""
DEFAULT_KILL_GRACE_S = 2.0
_MAX_PARTIAL = 65536


@dataclass(frozen=True)
class ExecutionResult:
    """The outcome of one run: ``result`` on success; on failure ``error`` says why."""

    ok: bool
    result: Any = None
    error: str | None = None
    retryable: bool = False
    timed_out: bool = False
    cancelled: bool = False
    # An OpenClaw turn's model, session, tokens and cost (an AgentRun), when there was one.
    agent: Any = None


@dataclass(frozen=True)
class _Limits:
    env: Mapping[str, str] | None
    output_cap: int
    kill_grace: float


class _Capture:
    """Keeps the first ``cap`` bytes of a stream and counts the rest; with a ``sink``,
    also hands it every line as it comes (whatever the cap)."""

    def __init__(
        self, cap: int, kind: OutputKind = "stdout", sink: OutputSink | None = None
    ) -> None:
        self.cap = cap
        self.data = bytearray()
        self.dropped = 0
        self._kind: OutputKind = kind
        self._sink = sink
        self._partial = bytearray()

    async def drain(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(65536):
            room = max(0, self.cap - len(self.data))
            self.data += chunk[:room]
            self.dropped += len(chunk) - min(room, len(chunk))
            if self._sink is not None:
                self._lines(chunk)
        if self._sink is not None and self._partial:
            self._sink.line(self._kind, self._partial.decode("utf-8", errors="replace"))
            self._partial.clear()

    def _lines(self, chunk: bytes) -> None:
        assert self._sink is not None
        *complete, rest = (self._partial + chunk).split(b"\n")
        for line in complete:
            self._sink.line(self._kind, line.decode("utf-8", errors="replace").rstrip("\r"))
        if len(rest) > _MAX_PARTIAL:  # an endless line goes out in pieces, not held
            self._sink.line(self._kind, rest.decode("utf-8", errors="replace"))
            rest.clear()
        self._partial = rest

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


def _child_env(env: Mapping[str, str] | None) -> dict[str, str] | None:
    """The child's environment: the executor's (None: this process's), with the id of
    the task being run, so what the child submits is its sub-task."""
    task_id = running_task.get()
    if task_id is None:
        return None if env is None else dict(env)
    return {**(os.environ if env is None else env), TASK_ID_ENV: task_id}


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
            env=_child_env(limits.env),
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
    sink = current_output.get()
    out = _Capture(limits.output_cap, "stdout", sink)
    err = _Capture(limits.output_cap, "stderr", sink)
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


def json_or_text(value: object) -> Any:
    """A command's or a turn's output as a result: parsed JSON when it parses, else text."""
    if not isinstance(value, str):
        return value
    stripped = value.strip()
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

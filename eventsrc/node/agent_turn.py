"""A skill without ``run`` is carried out by one OpenClaw agent turn: ``openclaw agent exec``.

``agent exec`` runs one isolated, headless, embedded turn — no gateway, no pairing —
against the machine's ordinary OpenClaw config (its model providers and credentials).
Per task:

- the message starts with ``$<skill>``, which makes OpenClaw tell the model to read that
  skill's SKILL.md first, and carries the payload as JSON (on stdin);
- the turn works in a fresh folder (``--cwd``) with its own state (``--state-dir``),
  both removed afterwards with OpenClaw's lock files for them; the served agent
  workspace's ``skills`` and ``.agents`` folders are linked into it, so OpenClaw finds
  workspace skills there as well as its bundled, managed and plugin ones;
- the node enforces the run timeout by killing the turn's process group: OpenClaw keeps
  retrying rate limits and 5xx answers for minutes whatever its own ``--timeout``;
- a model is chosen with ``--model`` when the node sets one.

The result is the turn's ``final`` text (JSON when it parses); model, provider, session,
tokens and cost go into an ``AgentRun``. A failure says what happened: authentication
and a missing provider are final (the line says what to configure on which node);
rate limits, server errors and OpenClaw's own time-out are retryable.

A turn costs about 1 GB of memory, so a node runs no more turns at once than its
available memory allows (``TurnLimit``), unless its settings say otherwise.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import hashlib
import json
import math
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
import psutil

from eventsrc.events import AgentRun
from eventsrc.node.process import (
    DEFAULT_KILL_GRACE_S,
    DEFAULT_OUTPUT_CAP,
    ExecutionResult,
    _Limits,
    _run_child,
    json_or_text,
)

TURN_MEMORY_MB = 1024
"""What one ``agent exec`` turn needs (0.85-0.97 GB measured with openclaw 2026.9.6)."""
EXIT_TIMEOUT = 2
"""``agent exec`` exits 2 when its own deadline passed."""
_LOCK_FAMILIES = ("gateway-lifecycle", "state-handles", "state-lifecycle")

_FINAL = (
    re.compile(r"\b(401|403)\b|authenticat|unauthori[sz]ed|invalid api key|forbidden", re.I),
    re.compile(r"no (route-compatible )?(authentication|auth|provider|api key|model)", re.I),
    re.compile(r"not configured|unknown model|model not found|billing|quota", re.I),
)
_RETRYABLE = re.compile(
    r"\b429\b|rate.?limit|retry-after|\b5\d\d\b|overload|unavailable|timed? ?out|timeout|"
    r"connection (refused|reset)|econn|network",
    re.I,
)


class TurnLimit:
    """How many agent turns a node runs at once: ``limit``, else what memory allows."""

    def __init__(self, limit: int | None = None) -> None:
        if limit is None:
            available_mb = psutil.virtual_memory().available // (1024 * 1024)
            limit = max(1, int(available_mb // TURN_MEMORY_MB))
        self.limit = limit
        self._slots = asyncio.Semaphore(limit)

    async def __aenter__(self) -> None:
        await self._slots.acquire()

    async def __aexit__(self, *_: object) -> None:
        self._slots.release()


class OpenClawExecutor:
    """Runs one task of ``skill`` as one ``openclaw agent exec --json`` turn.

    ``workspace`` is the served agent's workspace (its skills are linked into the task's
    folder); ``model`` a ``provider/model`` for every turn; ``node_id`` names this node
    in failure messages; ``turns`` is the node's shared TurnLimit.
    """

    def __init__(
        self,
        skill: str,
        *,
        openclaw: str = "openclaw",
        workspace: Path | None = None,
        model: str | None = None,
        node_id: str | None = None,
        turns: TurnLimit | None = None,
        env: Mapping[str, str] | None = None,
        output_cap: int = DEFAULT_OUTPUT_CAP,
        kill_grace: float = DEFAULT_KILL_GRACE_S,
    ) -> None:
        self.skill = skill
        self._openclaw = openclaw
        self._workspace = workspace
        self._model = model
        self._node = f"node {node_id}" if node_id else "this node"
        self._turns = turns or TurnLimit()
        self._limits = _Limits(env, output_cap, kill_grace)

    def with_model(self, model: str) -> OpenClawExecutor:
        """This executor with another model (a task's own), sharing the turn limit."""
        other = copy.copy(self)
        other._model = model
        return other

    def message(self, payload: Any) -> str:
        """The agent's instructions for one task."""
        body = orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode()
        return (
            f"${self.skill} Carry out this task from an eventsrc cluster with the "
            f"{self.skill} skill.\nTask payload (JSON):\n{body}\n"
            "Reply with the result only: JSON if it is structured, else plain text."
        )

    def argv(self, work: Path, timeout: float, state: Path | None = None) -> list[str]:
        """The command line of one turn in the folder ``work`` (its state in ``state``)."""
        argv = [self._openclaw, "agent", "exec", "--json", "--cwd", str(work)]
        if state is not None:
            argv += ["--state-dir", str(state)]
        argv += ["--timeout", str(max(1, math.ceil(timeout))), "--message-file", "-"]
        return [*argv, "--model", self._model] if self._model else argv

    async def run(
        self, payload: Any, *, timeout: float, cancel: asyncio.Event | None = None
    ) -> ExecutionResult:
        try:
            message = self.message(payload).encode()
        except TypeError as err:
            return ExecutionResult(ok=False, error=f"the payload is not JSON: {err}")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            await asyncio.wait_for(self._turns.__aenter__(), timeout)
        except TimeoutError:
            return ExecutionResult(
                ok=False,
                timed_out=True,
                error=f"no agent turn slot on {self._node} within {timeout:g}s "
                f"({self._turns.limit} turns at once)",
            )
        try:
            with tempfile.TemporaryDirectory(prefix=f"eventsrc-{self.skill}-") as folder:
                work, state = Path(folder) / "work", Path(folder) / "state"
                work.mkdir()
                state.mkdir()
                self._link_workspace(work)
                left = max(deadline - loop.time(), 0.0)
                try:
                    child = await _run_child(
                        self.argv(work, left, state),
                        cwd=str(work),
                        stdin=message,
                        timeout=left,
                        cancel=cancel,
                        limits=dataclasses.replace(
                            self._limits, env=in_one_process(self._limits.env)
                        ),
                    )
                finally:
                    remove_state_locks(state)
        finally:
            await self._turns.__aexit__()
        if isinstance(child, ExecutionResult):
            return child
        envelope = _envelope(child.stdout.body())
        agent = agent_run(envelope) if envelope is not None else None
        if child.timed_out:
            # Killed by us: OpenClaw's own deadline does not stop its retries.
            error = f"the OpenClaw agent turn timed out after {timeout:g}s and was killed"
            return ExecutionResult(ok=False, error=error, timed_out=True, agent=agent)
        if child.cancelled:
            return _with_agent(child.outcome(result=None, what="the agent turn"), agent)
        if envelope is None:
            outcome = child.outcome(
                result=child.streams(), what="openclaw agent exec", retryable=True
            )
            return _with_agent(outcome, agent)
        if child.returncode == 0 and envelope.get("ok") is True:
            return ExecutionResult(ok=True, result=json_or_text(envelope.get("final")), agent=agent)
        error, retryable = self.failure(envelope, child.returncode)
        return ExecutionResult(ok=False, error=error, retryable=retryable, agent=agent)

    def failure(self, envelope: Mapping[str, Any], returncode: int) -> tuple[str, bool]:
        """A failed turn's one-line error and whether another attempt may succeed."""
        error = envelope.get("error")
        text = ""
        if isinstance(error, dict):
            text = str(error.get("message") or "")
        text = " ".join(text.split()) or f"status {envelope.get('status')!r}"
        if envelope.get("status") == "timeout" or returncode == EXIT_TIMEOUT:
            return f"the OpenClaw agent turn on {self._node} timed out: {text}", True
        if any(pattern.search(text) for pattern in _FINAL):
            return (
                f"the OpenClaw agent on {self._node} cannot reach a model: {text} — configure "
                "a model provider and its credentials in ~/.openclaw/openclaw.json on "
                f"{self._node} (see 'openclaw models status')",
                False,
            )
        retryable = bool(_RETRYABLE.search(text))
        return f"the OpenClaw agent turn on {self._node} failed: {text}", retryable

    def _link_workspace(self, work: Path) -> None:
        if self._workspace is None:
            return
        for name in ("skills", ".agents"):
            source = self._workspace / name
            if source.is_dir():
                (work / name).symlink_to(source, target_is_directory=True)


def remove_state_locks(state_dir: Path) -> None:
    """Delete the lock files OpenClaw left in the system's temporary folder for a state dir.

    OpenClaw keeps three empty lock files per state database under
    ``/tmp/openclaw-state-locks-<uid>/`` (named by a hash of the database's path) and
    never removes them; one state dir per task would leave three per task forever.
    """
    database = (state_dir / "state" / "openclaw.sqlite").resolve()
    digest = hashlib.sha256(str(database).encode()).hexdigest()[:8]
    folder = Path("/tmp") / f"openclaw-state-locks-{os.getuid()}"
    for family in _LOCK_FAMILIES:
        (folder / f"{family}.{digest}.lock.sqlite").unlink(missing_ok=True)


NO_RESPAWN_FLAG = "--disable-warning=ExperimentalWarning"
"""The Node.js option OpenClaw's CLI re-executes itself for when it is not set."""


def in_one_process(env: Mapping[str, str] | None) -> dict[str, str]:
    """A turn's environment (None: this process's) with ``NO_RESPAWN_FLAG`` in
    ``NODE_OPTIONS``. Without it the CLI starts itself again, detached into a session of
    its own: out of reach of the process group the node kills when an attempt ends, so
    a turn timed out, cancelled or left behind by its parent would live on. It also
    saves starting Node.js twice per turn."""
    found = dict(os.environ if env is None else env)
    options = found.get("NODE_OPTIONS", "")
    if NO_RESPAWN_FLAG not in options and "--no-warnings" not in options:
        found["NODE_OPTIONS"] = f"{options} {NO_RESPAWN_FLAG}".strip()
    return found


def agent_run(envelope: Mapping[str, Any]) -> AgentRun:
    """The model, session, tokens and cost of an ``agent exec --json`` envelope (pure)."""
    usage = envelope.get("usage") if isinstance(envelope.get("usage"), dict) else {}
    assert isinstance(usage, dict)
    summary = envelope.get("toolSummary")
    tools = summary.get("tools") if isinstance(summary, dict) else None
    cost = envelope.get("costUsd")
    if cost is None and isinstance(usage.get("cost"), dict):
        cost = usage["cost"].get("total")
    return AgentRun(
        model=_text(envelope.get("model")),
        provider=_text(envelope.get("provider")),
        session_id=_text(envelope.get("sessionId")),
        input_tokens=_count(usage.get("input")),
        output_tokens=_count(usage.get("output")),
        total_tokens=_count(usage.get("total")),
        cost_usd=float(cost)
        if isinstance(cost, int | float) and not isinstance(cost, bool)
        else None,
        tools=tuple(str(t) for t in tools) if isinstance(tools, list) else (),
    )


def _envelope(stdout: str) -> dict[str, Any] | None:
    """The JSON envelope ``agent exec --json`` printed on stdout, if it did."""
    start = stdout.find("{")
    if start < 0:
        return None
    try:
        parsed = json.loads(stdout[start:])
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) and "status" in parsed else None


def _with_agent(outcome: ExecutionResult, agent: AgentRun | None) -> ExecutionResult:
    if agent is None:
        return outcome
    return ExecutionResult(
        ok=outcome.ok,
        result=outcome.result,
        error=outcome.error,
        retryable=outcome.retryable,
        timed_out=outcome.timed_out,
        cancelled=outcome.cancelled,
        agent=agent,
    )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _count(value: object) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0

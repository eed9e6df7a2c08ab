"""A scripted OpenAI chat-completions server on 127.0.0.1: the only double behind OpenClaw.

The tests (through the fixtures of ``tests/model_server.py``) and the OpenClaw benchmark
use it alike.

OpenClaw's ``openai-completions`` provider sends a streamed ``POST /v1/chat/completions``
with ``stream_options.include_usage``; this server answers each request with the next
turn of its script — a reply, a tool call, an HTTP error or a delay first — and records
every request it got, so callers assert on what OpenClaw actually asked the model.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

PROVIDER = "scripted"
MODEL = "scripted-model"
OTHER_MODEL = "scripted-other"
"""A second model of the same provider, for choosing one per node or per task."""
API_KEY = "sk-scripted-local"

Request = dict[str, Any]


@dataclass(frozen=True)
class Reply:
    """Answer with assistant text; ``text`` may be computed from the request."""

    text: str | Callable[[Request], str]
    delay: float = 0.0


@dataclass(frozen=True)
class ToolCall:
    """Answer with one call of the tool ``name`` with ``arguments``."""

    name: str
    arguments: dict[str, Any]
    delay: float = 0.0


@dataclass(frozen=True)
class Status:
    """Answer with an HTTP error status and an OpenAI-style error body."""

    code: int
    message: str = "scripted failure"
    delay: float = 0.0
    headers: tuple[tuple[str, str], ...] = ()


Turn = Reply | ToolCall | Status

EXHAUSTED = Reply("script exhausted")
"""What the server answers once its script is used up: a plain reply, so a turn ends."""


def tool_outputs(request: Request) -> list[str]:
    """The contents of the ``tool`` messages in a request, oldest first."""
    outputs: list[str] = []
    for message in request.get("messages", []):
        if message.get("role") != "tool":
            continue
        content = message.get("content")
        if isinstance(content, list):
            content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
        outputs.append(str(content))
    return outputs


@dataclass
class ModelServer:
    """A running scripted server; ``script`` is consumed one turn per request."""

    script: list[Turn] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    port: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def set_script(self, turns: Sequence[Turn]) -> None:
        """Replace the script (and forget earlier requests)."""
        with self._lock:
            self.script = list(turns)
            self.requests = []

    def next_turn(self, request: Request) -> Turn:
        with self._lock:
            self.requests.append(request)
            return self.script.pop(0) if self.script else EXHAUSTED


def _chunk(body: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def _stream(request: Request, turn: Reply | ToolCall) -> Iterator[bytes]:
    """The SSE chunks OpenAI sends for one streamed completion."""
    base = {"id": "chatcmpl-scripted", "object": "chat.completion.chunk", "created": 0}
    base["model"] = request.get("model", MODEL)
    if isinstance(turn, Reply):
        text = turn.text(request) if callable(turn.text) else turn.text
        delta: dict[str, Any] = {"role": "assistant", "content": text}
        finish = "stop"
        completion_tokens = max(1, len(text.split()))
    else:
        call = {
            "index": 0,
            "id": f"call_{len(str(request))}",
            "type": "function",
            "function": {"name": turn.name, "arguments": json.dumps(turn.arguments)},
        }
        delta = {"role": "assistant", "content": None, "tool_calls": [call]}
        finish = "tool_calls"
        completion_tokens = 7
    yield _chunk({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
    yield _chunk({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    if (request.get("stream_options") or {}).get("include_usage"):
        prompt_tokens = len(json.dumps(request.get("messages", []))) // 4
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        yield _chunk({**base, "choices": [], "usage": usage})
    yield b"data: [DONE]\n\n"


def _handler(server: ModelServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            if self.path.rstrip("/").endswith("/models"):
                self._json(200, {"object": "list", "data": [{"id": MODEL, "object": "model"}]})
            else:
                self._json(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if not self.path.rstrip("/").endswith("/chat/completions"):
                self._json(404, {"error": {"message": f"no route {self.path}"}})
                return
            try:
                request: Request = json.loads(raw or b"{}")
            except ValueError:
                self._json(400, {"error": {"message": "body is not JSON"}})
                return
            turn = server.next_turn(request)
            if turn.delay:
                time.sleep(turn.delay)
            if isinstance(turn, Status):
                error = {"message": turn.message, "type": "scripted", "code": turn.code}
                self._json(turn.code, {"error": error}, headers=turn.headers)
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            try:
                for chunk in _stream(request, turn):
                    self.wfile.write(chunk)
                    self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                pass
            self.close_connection = True

        def _json(
            self, code: int, body: dict[str, Any], *, headers: Sequence[tuple[str, str]] = ()
        ) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True


def serve() -> tuple[ModelServer, Callable[[], None]]:
    """Start a server on 127.0.0.1, port 0; returns it and its stop function."""
    model = ModelServer()
    httpd = _Server(("127.0.0.1", 0), _handler(model))
    model.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()

    def stop() -> None:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)

    return model, stop


def provider_config(server: ModelServer, **agent_defaults: Any) -> dict[str, Any]:
    """An ``openclaw.json`` body whose default model is the scripted server's."""
    defaults: dict[str, Any] = {"model": {"primary": f"{PROVIDER}/{MODEL}"}, **agent_defaults}
    model = {
        "id": MODEL,
        "name": "Scripted model",
        "reasoning": False,
        "input": ["text"],
        "cost": {"input": 1, "output": 2, "cacheRead": 0, "cacheWrite": 0},
        "contextWindow": 128000,
        "maxTokens": 4096,
    }
    provider = {
        "baseUrl": server.base_url,
        "apiKey": API_KEY,
        "api": "openai-completions",
        "timeoutSeconds": 60,
        "models": [model, {**model, "id": OTHER_MODEL, "name": "Other scripted model"}],
    }
    return {
        "agents": {"defaults": defaults},
        "models": {"mode": "merge", "providers": {PROVIDER: provider}},
    }


def write_openclaw_config(home: Path, config: dict[str, Any]) -> Path:
    """Write ``config`` as ``HOME/.openclaw/openclaw.json``; returns the file."""
    path = home / ".openclaw" / "openclaw.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2))
    return path

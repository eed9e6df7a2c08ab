"""The scripted model server behind OpenClaw as fixtures: ``model_server``, ``openclaw_home``.

The server itself (a scripted OpenAI chat-completions server on 127.0.0.1, the only test
double behind OpenClaw) is ``benchmarks.model_server``, which the benchmarks use too.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.model_server import (
    API_KEY,
    EXHAUSTED,
    MODEL,
    OTHER_MODEL,
    PROVIDER,
    ModelServer,
    Reply,
    Request,
    Status,
    ToolCall,
    Turn,
    provider_config,
    serve,
    tool_outputs,
    write_openclaw_config,
)

__all__ = [
    "API_KEY",
    "EXHAUSTED",
    "MODEL",
    "OTHER_MODEL",
    "PROVIDER",
    "ModelServer",
    "Reply",
    "Request",
    "Status",
    "ToolCall",
    "Turn",
    "model_server",
    "openclaw_home",
    "provider_config",
    "serve",
    "tool_outputs",
    "write_openclaw_config",
]


@pytest.fixture
def model_server() -> Iterator[ModelServer]:
    """A fresh scripted server for one test, stopped at its end."""
    model, stop = serve()
    try:
        yield model
    finally:
        stop()


@pytest.fixture
def openclaw_home(tmp_path: Path, model_server: ModelServer) -> Path:
    """A temporary HOME whose OpenClaw config points its default model at ``model_server``."""
    home = tmp_path / "home"
    write_openclaw_config(home, provider_config(model_server))
    return home

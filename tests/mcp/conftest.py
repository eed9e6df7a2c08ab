"""MCP server fixtures: the e2e cluster (coordinator and nodes as processes), and an MCP
client on the official SDK talking to ``eventsrc mcp`` over stdio or streamable HTTP."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.types import CallToolResult, TextContent

from tests.e2e.conftest import CLEAN_ENV, e2e
from tests.secure.conftest import secure_cluster, secure_server, tls_cluster, tls_server

__all__ = ["e2e", "secure_cluster", "secure_server", "tls_cluster", "tls_server"]


def mcp_argv(url: str, *extra: str, creds: str | None = None) -> list[str]:
    """``python -m eventsrc.cli --nats-url URL [--creds FILE] mcp EXTRA...``."""
    argv = ["-m", "eventsrc.cli", "--nats-url", url]
    if creds is not None:
        argv += ["--creds", creds]
    return [*argv, "mcp", *extra]


@asynccontextmanager
async def stdio_client(
    url: str, *, cwd: Path, creds: str | None = None, env: dict[str, str] | None = None
) -> AsyncIterator[Client]:
    """A connected SDK client that started ``eventsrc mcp`` as its stdio child."""
    params = StdioServerParameters(
        command=sys.executable,
        args=mcp_argv(url, creds=creds),
        env={**os.environ, **CLEAN_ENV, **(env or {})},
        cwd=cwd,
    )
    async with Client(params, read_timeout_seconds=120) as client:
        yield client


def text_of(result: CallToolResult) -> str:
    """The text a tool answered with (what an agent reads)."""
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


def data_of(result: CallToolResult) -> Any:
    """A tool's structured result; fails with its text when the tool failed."""
    assert not result.is_error, text_of(result)
    return result.structured_content


def tool_names(tools: Sequence[Any]) -> set[str]:
    return {tool.name for tool in tools}

"""Waiting in tests: poll a condition with a generous deadline, never a bare sleep."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest


async def until(
    condition: Callable[[], object], what: str = "the condition", timeout: float = 20.0
) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout`` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.02)

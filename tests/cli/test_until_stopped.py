"""``get --follow`` / ``tasks --watch`` stopped by a signal: the follow is torn down
(its consumers unsubscribed) before the command returns and closes the connection."""

from __future__ import annotations

import asyncio
import os
import signal

from eventsrc.cli import _until_stopped
from eventsrc.runtime import EXIT_OK


async def test_a_stopped_follow_has_ended_when_the_command_returns() -> None:
    torn_down: list[str] = []

    async def follow() -> int:
        try:
            await asyncio.sleep(3600)
        finally:
            await asyncio.sleep(0.05)  # as unsubscribing a consumer awaits the server
            torn_down.append("consumers")
        return 1

    loop = asyncio.get_running_loop()
    loop.call_later(0.1, os.kill, os.getpid(), signal.SIGTERM)
    try:
        assert await _until_stopped(follow()) == EXIT_OK
        assert torn_down == ["consumers"]
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)

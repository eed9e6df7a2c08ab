"""A connection whose flush timed out while the server was unreachable still works after.

A pause shorter than the ping timeout (a network cut, a server stopped for a moment) is
not noticed as a disconnect: the TCP connection resumes afterwards. Whatever was asked
meanwhile and given up on (here a flush that timed out; in the cluster, a subscription
drained while the coordinator stopped its service) gets its answer late. nats-py 2.16
let that late PONG end the connection's read loop: from then on it read nothing,
silently, for good. The server is paused with SIGSTOP: like a cut link, no FIN, no
reset, and the answers come once it resumes (the partition tests cut real links).
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator

import nats.errors
import pytest

from eventsrc.store.connection import NatsOptions, connect_nats
from eventsrc.store.server import EmbeddedServer
from tests.conftest import MakeServer


@pytest.fixture
def server(make_server: MakeServer) -> Iterator[EmbeddedServer]:
    started = make_server()
    pid = started.pid
    assert pid is not None
    try:
        yield started
    finally:
        os.kill(pid, signal.SIGCONT)  # never leave it stopped for its own teardown


async def test_a_connection_reads_again_after_a_flush_timed_out_while_the_server_paused(
    server: EmbeddedServer,
) -> None:
    assert server.url is not None and server.pid is not None
    options = NatsOptions(servers=(server.url,), name="late-pong")
    nc = await connect_nats(options, long_running=True)
    try:
        await nc.flush(timeout=5)  # nothing of the connect still in flight
        os.kill(server.pid, signal.SIGSTOP)
        await asyncio.sleep(0.2)  # the signal is delivered asynchronously
        with pytest.raises(nats.errors.FlushTimeoutError):
            await nc.flush(timeout=1)
        os.kill(server.pid, signal.SIGCONT)
        # The late PONG of that flush comes in first; this flush needs the next one.
        await nc.flush(timeout=5)
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox)
        await nc.publish(inbox, b"still reading")
        message = await sub.next_msg(timeout=5)
        assert message.data == b"still reading"
        assert nc.is_connected
    finally:
        await nc.close()

"""A connection that lived through a short cut still works after it heals.

A cut shorter than the ping timeout is not noticed as a disconnect: the TCP connection
resumes once the link heals. Whatever was asked during the cut and given up on (here a
flush that timed out; in the cluster, a subscription drained while the coordinator
stopped its service) gets its answer late. nats-py 2.16 let that late PONG end the
connection's read loop: after the heal it read nothing, silently, for good.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import nats.errors
import pytest

from eventsrc.store.connection import NatsOptions, connect_nats
from eventsrc.store.server import die_with_parent_fn, find_nats_server
from tests.partition.netns import Member, Network
from tests.processes import is_gone
from tests.waiting import until_blocking


@pytest.fixture
def lone_server(network: Network) -> Iterator[Member]:
    """One plain nats-server in a namespace of its own, listening on its 4222."""
    member = network.add("n1")
    args = [*member.exec_prefix(), find_nats_server(), "-a", member.address, "-p", "4222"]
    proc = subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=die_with_parent_fn(),
    )
    try:
        yield member
    finally:
        proc.kill()
        proc.wait(timeout=10)
        until_blocking(lambda: is_gone(proc.pid), "the nats-server to exit")


async def test_a_connection_reads_again_after_a_flush_timed_out_in_a_short_cut(
    network: Network, lone_server: Member
) -> None:
    url = f"nats://{lone_server.address}:4222"
    options = NatsOptions(servers=(url,), name="short-cut")
    # Long-running: it keeps trying until the server (just started) answers.
    nc = await connect_nats(options, long_running=True)
    try:
        network.cut(lone_server.role)
        with pytest.raises(nats.errors.FlushTimeoutError):
            await nc.flush(timeout=1)
        network.heal(lone_server.role)
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

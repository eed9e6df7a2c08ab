"""The compose topology with every program in a network namespace of its own.

Three nats-servers (``n1``-``n3``, a JetStream cluster with R3 streams, started from the
shipped configs), two coordinators (``c1``, ``c2``: leader and standby on a 2 s lease),
three nodes (``w1``-``w3``) and a namespace for a client (``cl``). Inside a namespace
each server listens on the standard ports (4222 clients, 6222 routes, 8222 monitoring):
the namespace is its own host. The tests run in the root namespace, on the bridge.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eventsrc.errors import EventsrcError
from tests.deploy.topology import Topology
from tests.e2e.conftest import poll
from tests.nats_cluster import ClusterServer, NatsCluster, localized_config
from tests.partition.netns import Member, Network
from tests.processes import Program

LEASE_S = 2.0
LEASE = ["--lease-s", f"{LEASE_S:g}"]
COORDINATORS = ("coordinator-1", "coordinator-2")
NODES = ("node-1", "node-2", "node-3")
SERVERS = 3
CLIENT = "cl"
ROLES = {
    **{name: f"c{i}" for i, name in enumerate(COORDINATORS, 1)},
    **{name: f"w{i}" for i, name in enumerate(NODES, 1)},
}
"""Which namespace each program runs in (servers are ``n<index>``)."""
NODE_EXTRA = ["--skill", "python"]
"""Besides the example skills: ``python``, for tasks that run as long as a test needs."""


@dataclass
class Partitioned:
    """One test's namespaced cluster: the network, the servers and the programs."""

    network: Network
    nats: NatsCluster
    topology: Topology

    @property
    def urls(self) -> str:
        return self.nats.urls

    def member(self, name: str) -> Member:
        """The namespace of a program (``coordinator-1``, ``node-2``) or server (``nats-3``)."""
        if name.startswith("nats-"):
            return self.network.members[f"n{name.removeprefix('nats-')}"]
        return self.network.members[ROLES.get(name, name)]

    def owner_of(self, address: str) -> str | None:
        """The program or server whose namespace has ``address``."""
        for name in (*ROLES, *(f"nats-{i}" for i in range(1, SERVERS + 1))):
            if self.member(name).address == address:
                return name
        return None

    async def leader(self) -> tuple[str, Program] | None:
        """The live coordinator the cluster names as its leader, or None between leaders."""
        try:
            leader = (await self.topology.api("status"))["leader"]
        except EventsrcError:
            return None
        for name, child in self.topology.coordinators.items():
            if leader and child.proc.poll() is None and f"-{child.proc.pid}-" in leader:
                return name, child
        return None

    async def wait_leader(self, *, other_than: str = "") -> tuple[str, Program]:
        async def probe() -> tuple[str, Program] | None:
            found = await self.leader()
            return found if found is not None and found[0] != other_than else None

        leader: tuple[str, Program] = await poll(probe, f"a leader other than {other_than!r}")
        return leader

    async def status(self) -> dict[str, Any] | None:
        try:
            status: dict[str, Any] = await self.topology.api("status")
        except EventsrcError:
            return None
        return status

    def connections(self, index: int) -> list[str]:
        """Who is connected to ``nats-<index>`` as a client (program names), from its
        ``connz``; raises OSError when it does not answer."""
        connz = self.nats.server(index).monitor("connz?limit=1024")
        addresses = [str(c["ip"]) for c in connz.get("connections", [])]  # type: ignore[attr-defined]
        return sorted(o for a in addresses if (o := self.owner_of(a)) is not None)

    def last_seqs(self, index: int) -> dict[str, int]:
        """Each stream's last sequence in ``nats-<index>``'s own replica (its ``jsz``)."""
        jsz = self.nats.server(index).monitor("jsz?streams=true")
        seqs: dict[str, int] = {}
        for account in jsz.get("account_details", []):  # type: ignore[attr-defined]
            for stream in account.get("stream_detail", []):
                seqs[stream["name"]] = int(stream["state"]["last_seq"])
        return seqs


def namespaced_cluster(network: Network, workdir: Path) -> NatsCluster:
    """Three servers, ``nats-<i>`` in namespace ``n<i>``, not yet started."""
    servers = []
    for index in range(1, SERVERS + 1):
        member = network.add(f"n{index}")
        server = ClusterServer(
            index,
            4222,
            6222,
            8222,
            workdir / f"nats-{index}",
            host=member.address,
            launcher=member.exec_prefix(),
        )
        server.workdir.mkdir(parents=True, exist_ok=True)
        server.config_file.write_text(localized_config(index, server.store_dir))
        servers.append(server)
    return NatsCluster(workdir, servers=servers)


async def start(network: Network, workdir: Path, stack: ExitStack) -> Partitioned:
    """Every namespace, the servers, ``coordinator-1`` leading, ``coordinator-2`` standing
    by and the three nodes alive; ``stack`` ends the programs and the servers."""
    nats = namespaced_cluster(network, workdir)
    stack.callback(nats.stop)
    for role in (*ROLES.values(), CLIENT):
        network.add(role)
    nats.start()

    def launcher(name: str) -> Sequence[str]:
        return network.members[ROLES[name]].exec_prefix()

    topology = Topology(nats, workdir, stack, launcher=launcher)
    partitioned = Partitioned(network, nats, topology)
    topology.start_coordinator(COORDINATORS[0], extra=LEASE)
    topology.start_coordinator(COORDINATORS[1], extra=LEASE)
    await topology.start_nodes(NODES, extra=NODE_EXTRA, skills=("word-count", "python"))
    return partitioned


LOST_LEAD = re.compile(r"stopped leading: (.*); back to standby")

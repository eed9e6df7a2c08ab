"""Network namespaces joined by a bridge: a test network whose links can be cut.

Each member (a nats-server, a coordinator, a node, a client) gets its own namespace
with one address on a /24; a veth pair joins it to a bridge in the root namespace,
where the tests themselves run. ``cut`` takes the bridge-side end of a member's veth
down: its packets are dropped silently, in both directions, with no reset and no
error, as when a cable or a switch port dies. ``heal`` takes it up again.

Names carry a random suffix (``esp<suffix>...``), so parallel sessions do not collide,
and ``sweep`` removes leftovers of sessions that died without cleaning up: only
namespaces with no process left in them, and only links whose namespaces are gone.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field

PREFIX = "esp"
"""Every namespace, veth and bridge these tests make starts with it."""
INSIDE = "eth0"
"""The member's end of its veth pair, inside its namespace."""


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``ip ARGS``; raises with its stderr when it fails and ``check`` is set."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {done.stderr.strip()}")
    return done


def why_unavailable() -> str | None:
    """Why namespaces cannot be made on this machine, or None when they can."""
    if os.name != "posix" or not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "network namespaces need root (ip netns add); run as root to test partitions"
    if shutil.which("ip") is None:
        return "no `ip` command (iproute2) on PATH: cannot make network namespaces"
    probe = f"{PREFIX}probe{secrets.token_hex(2)}"
    made = ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip() or 'no reason given'}"
    ip("netns", "del", probe, check=False)
    return None


def free_subnet() -> ipaddress.IPv4Network:
    """A /24 in 10.200-249.x.0 that no route on this machine uses yet."""
    used = [
        ipaddress.ip_network(word, strict=False)
        for line in ip("-4", "route", "show", "table", "all").stdout.splitlines()
        for word in line.split()[:1]
        if "/" in word or word.count(".") == 3
    ]
    for _ in range(200):
        second, third = random.randint(200, 249), random.randint(0, 255)
        subnet = ipaddress.IPv4Network(f"10.{second}.{third}.0/24")
        if not any(subnet.overlaps(other) for other in used):
            return subnet
    raise RuntimeError("no free 10.200-249.x.0/24 subnet for the test network")


@dataclass
class Member:
    """One namespace on the network: its name, its address and its two veth ends."""

    role: str
    netns: str
    address: str
    veth: str
    """The bridge-side end, in the root namespace: what ``cut`` takes down."""

    def exec_prefix(self) -> list[str]:
        """Prepend to a command line to run it inside this namespace."""
        return ["ip", "netns", "exec", self.netns]


@dataclass
class Network:
    """A bridge and the members joined to it; ``close`` removes every one of them."""

    suffix: str = field(default_factory=lambda: secrets.token_hex(2))
    subnet: ipaddress.IPv4Network = field(default_factory=free_subnet)
    members: dict[str, Member] = field(default_factory=dict)

    @property
    def bridge(self) -> str:
        return f"{PREFIX}{self.suffix}br"

    @property
    def gateway(self) -> str:
        """The bridge's own address: the root namespace (the tests) on this network."""
        return str(self.subnet.network_address + 1)

    def open(self) -> None:
        ip("link", "add", self.bridge, "type", "bridge")
        ip("addr", "add", f"{self.gateway}/{self.subnet.prefixlen}", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")

    def add(self, role: str) -> Member:
        """A new namespace for ``role`` (short: ``n1``, ``c2``, ``w3``, ``cl``), joined
        to the bridge and up."""
        index = len(self.members) + 2
        member = Member(
            role=role,
            netns=f"{PREFIX}{self.suffix}{role}",
            address=str(self.subnet.network_address + index),
            veth=f"{PREFIX}{self.suffix}{role}",
        )
        peer = f"{member.veth}p"
        ip("netns", "add", member.netns)
        self.members[role] = member
        ip("link", "add", member.veth, "type", "veth", "peer", "name", peer)
        ip("link", "set", peer, "netns", member.netns)
        ip("link", "set", member.veth, "master", self.bridge)
        ip("link", "set", member.veth, "up")
        inside = ["-n", member.netns]
        ip(*inside, "link", "set", peer, "name", INSIDE)
        ip(*inside, "addr", "add", f"{member.address}/{self.subnet.prefixlen}", "dev", INSIDE)
        ip(*inside, "link", "set", INSIDE, "up")
        ip(*inside, "link", "set", "lo", "up")
        return member

    def cut(self, role: str) -> None:
        """Drop everything to and from ``role``'s namespace until ``heal``."""
        ip("link", "set", self.members[role].veth, "down")

    def heal(self, role: str) -> None:
        ip("link", "set", self.members[role].veth, "up")

    def close(self) -> None:
        """Remove every namespace, veth and the bridge; idempotent, never raises.

        Deleting a namespace removes the veth pair whose end is inside it.
        """
        for member in self.members.values():
            ip("netns", "del", member.netns, check=False)
            ip("link", "del", member.veth, check=False)
        self.members.clear()
        ip("link", "del", self.bridge, check=False)


def namespaces() -> list[str]:
    """Every namespace on the machine whose name has our prefix."""
    out = ip("netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(PREFIX)]


def links() -> list[str]:
    """Every link in the root namespace whose name has our prefix."""
    out = ip("-o", "link", "show", check=False).stdout
    names = [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]
    return [name for name in names if name.startswith(PREFIX)]


def sweep() -> list[str]:
    """Remove leftovers of earlier runs; returns what was removed.

    A namespace goes only when no process is left inside it (a live run's members always
    have one); a link goes only when no namespace of its suffix is left.
    """
    removed: list[str] = []
    for netns in namespaces():
        if not ip("netns", "pids", netns, check=False).stdout.strip():
            ip("netns", "del", netns, check=False)
            removed.append(netns)
    alive = {netns[len(PREFIX) : len(PREFIX) + 4] for netns in namespaces()}
    for link in links():
        if link[len(PREFIX) : len(PREFIX) + 4] not in alive:
            with contextlib.suppress(RuntimeError):
                ip("link", "del", link)
                removed.append(link)
    return removed

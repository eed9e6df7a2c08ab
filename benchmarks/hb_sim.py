"""Child processes of the heartbeat figure (a fleet of simulated nodes, a raw consumer),
and the parent's handle on them.

``python -m benchmarks.hb_sim publish --nats-url URL --nodes N --interval S --prefix P``
joins N nodes (one ``NodeJoined`` each, so the coordinator counts them as members), then
appends one ``Heartbeat`` per node every S seconds through ``JetStreamEventStore``,
spread evenly over the interval. ``--raw`` publishes the same encoded heartbeats with
plain ``js.publish_async`` and joins nobody (there is no coordinator to tell).

``python -m benchmarks.hb_sim consume --nats-url URL`` is raw nats-py's side: an ordered
consumer over ``hb.>`` (last per subject, as the coordinator's) that only counts.

Both talk to the parent by lines. ``publish`` prints ``ready`` once the joins are stored
and heartbeats flow; on ``stop K`` it stops K nodes spread over the fleet and prints
``stopped <id> ...`` (their last heartbeats are acknowledged by then); on end of input it
prints ``published <count>`` and exits. ``consume`` prints ``ready`` once subscribed and
``received <count>`` at end of input.

``child()`` is the benchmark's side: it runs such a program (or the coordinator) with
its stderr in a log file, reads and writes those lines, and always ends it; a child
also dies with the benchmark (Linux parent-death signal).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import logging
import math
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Final

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy

from eventsrc.events import Heartbeat, NodeJoined, encode, new_event_id
from eventsrc.events.subjects import HEARTBEATS_FILTER
from eventsrc.ports import HEARTBEATS_STREAM
from eventsrc.runtime import run_async
from eventsrc.store import JetStreamEventStore
from eventsrc.store.jetstream import HDR_MSG_ID

log = logging.getLogger(__name__)

START_TIMEOUT_S: Final = 60.0
STOP_TIMEOUT_S: Final = 20.0
MIN_SLEEP_S: Final = 0.01
"""Beats due within this much of each other go out as one pipelined batch."""
JOIN_CHUNK: Final = 2_000
_SKILLS: Final = ("python",)
_PR_SET_PDEATHSIG: Final = 1  # from <linux/prctl.h>


def node_ids(prefix: str, nodes: int) -> list[str]:
    """The simulated fleet's node ids."""
    return [f"{prefix}-{i:05d}" for i in range(nodes)]


def spread(ids: Sequence[str], count: int) -> list[str]:
    """``count`` ids evenly spread over ``ids`` (so their heartbeat phases are spread too)."""
    count = min(count, len(ids))
    return [ids[i * len(ids) // count] for i in range(count)]


def beat(node_id: str, incarnation: str, now: datetime) -> Heartbeat:
    """One heartbeat, shaped like a real node's (load figures, a skill)."""
    return Heartbeat(
        event_id=new_event_id(),
        time=now,
        producer=f"node:{node_id}",
        node_id=node_id,
        incarnation=incarnation,
        cpu_percent=12.5,
        memory_percent=41.0,
        cpu_count=8,
        memory_total_mb=16_000,
        memory_free_mb=9_000,
        running_tasks=0,
        capacity=4,
        skills=_SKILLS,
    )


def joined(node_id: str, incarnation: str, now: datetime) -> NodeJoined:
    """The membership event a node appends once, before its heartbeats."""
    return NodeJoined(
        event_id=new_event_id(),
        time=now,
        producer=f"node:{node_id}",
        node_id=node_id,
        incarnation=incarnation,
        capacity=4,
        hostname=node_id,
        platform="linux",
        cpu_count=8,
        memory_total_mb=16_000,
    )


class Fleet:
    """Heartbeats of many nodes from one process, beat k of node k % N due at k * S / N."""

    def __init__(self, nc: Client, ids: Sequence[str], *, interval: float, raw: bool) -> None:
        self._nc = nc
        self._store = JetStreamEventStore(nc)
        self._ids = list(ids)
        self._interval = interval
        self._raw = raw
        self._incarnation = new_event_id()[:12]
        self._stopped: set[str] = set()
        self.published = 0

    async def join(self) -> None:
        """Append every node's ``NodeJoined`` (pipelined, in chunks)."""
        now = datetime.now(UTC)
        for start in range(0, len(self._ids), JOIN_CHUNK):
            chunk = self._ids[start : start + JOIN_CHUNK]
            await self._store.append_many([joined(i, self._incarnation, now) for i in chunk])

    def stop(self, count: int) -> list[str]:
        """Stop heartbeating ``count`` nodes spread over the fleet; returns their ids."""
        chosen = spread(self._ids, count)
        self._stopped.update(chosen)
        return chosen

    async def run(self, commands: asyncio.Queue[str | None]) -> None:
        """Beat until end of input, handling ``stop K`` between batches."""
        loop = asyncio.get_running_loop()
        per_beat = self._interval / len(self._ids)
        start = loop.time()
        sent = 0
        print("ready", flush=True)
        while True:
            while not commands.empty():
                command = commands.get_nowait()
                if command is None:
                    return
                # Between batches no beat is in flight, so the stopped nodes' last
                # heartbeats are all acknowledged when the parent reads this line.
                stopped = self.stop(int(command.split()[1]))
                print("stopped", *stopped, flush=True)
            due = math.floor((loop.time() - start) / per_beat) + 1
            if due > sent:
                await self._publish(sent, due)
                sent = due
            await asyncio.sleep(max(start + sent * per_beat - loop.time(), MIN_SLEEP_S))

    async def _publish(self, first: int, end: int) -> None:
        now = datetime.now(UTC)
        count = len(self._ids)
        beats = [
            beat(node_id, self._incarnation, now)
            for node_id in (self._ids[k % count] for k in range(first, end))
            if node_id not in self._stopped
        ]
        if self._raw:
            js = self._store.js
            futures = [
                await js.publish_async(b.subject, encode(b), headers={HDR_MSG_ID: b.event_id})
                for b in beats
            ]
            for future in futures:
                await future
        else:
            await self._store.append_many(beats)
        self.published += len(beats)


async def _read_commands(commands: asyncio.Queue[str | None]) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        if text := line.decode().strip():
            await commands.put(text)
    await commands.put(None)


async def publish(args: argparse.Namespace) -> None:
    """The ``publish`` command."""
    nc = await nats.connect(args.nats_url, name="eventsrc-bench-fleet")
    try:
        fleet = Fleet(nc, node_ids(args.prefix, args.nodes), interval=args.interval, raw=args.raw)
        if not args.raw:
            await fleet.join()
        commands: asyncio.Queue[str | None] = asyncio.Queue()
        reader = asyncio.create_task(_read_commands(commands))
        try:
            await fleet.run(commands)
        finally:
            reader.cancel()
        print("published", fleet.published, flush=True)
    finally:
        await nc.close()


async def consume(args: argparse.Namespace) -> None:
    """The ``consume`` command: raw nats-py's ordered consumer, counting and nothing else."""
    nc = await nats.connect(args.nats_url, name="eventsrc-bench-raw-consumer")
    received = 0

    async def on_message(msg: Msg) -> None:
        nonlocal received
        received += 1

    try:
        js = nc.jetstream()
        sub = await js.subscribe(
            HEARTBEATS_FILTER,
            stream=HEARTBEATS_STREAM,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
            cb=on_message,
        )
        print("ready", flush=True)
        commands: asyncio.Queue[str | None] = asyncio.Queue()
        await _read_commands(commands)
        await sub.unsubscribe()
        print("received", received, flush=True)
    finally:
        await nc.close()


class Child:
    """The parent's handle on a ``python`` child that talks in lines (``ready``, ``stopped``)."""

    def __init__(
        self, name: str, process: asyncio.subprocess.Process, log_path: Path, *, eof_stops: bool
    ) -> None:
        self.name = name
        self.process = process
        self.log_path = log_path
        self.eof_stops = eof_stops

    @property
    def pid(self) -> int:
        return self.process.pid

    async def expect(self, prefix: str, *, timeout: float = START_TIMEOUT_S) -> str:
        """The next stdout line starting with ``prefix``; raises with the stderr tail."""
        assert self.process.stdout is not None
        try:
            async with asyncio.timeout(timeout):
                while line := (await self.process.stdout.readline()).decode():
                    if line.startswith(prefix):
                        return line.strip()
        except TimeoutError:
            pass
        raise RuntimeError(
            f"heartbeats: {self.name} printed no {prefix!r} line within {timeout:g} s "
            f"(exit {self.process.returncode}); stderr:\n{self._tail()}"
        )

    async def command(self, line: str, *, expect: str) -> str:
        """Send one line on stdin and return the answer starting with ``expect``."""
        assert self.process.stdin is not None
        self.process.stdin.write(f"{line}\n".encode())
        await self.process.stdin.drain()
        return await self.expect(expect)

    async def finish(self, *, expect: str | None = None) -> str:
        """End the child (end of input, or SIGTERM), returning its ``expect`` line."""
        answer = ""
        if self.process.returncode is None:
            if self.eof_stops and self.process.stdin is not None:
                self.process.stdin.close()
            else:
                self.process.terminate()
            if expect is not None:
                answer = await self.expect(expect, timeout=STOP_TIMEOUT_S)
        try:
            await asyncio.wait_for(self.process.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            log.warning("%s (pid %d) did not stop; killing it", self.name, self.pid)
            self.process.kill()
            await self.process.wait()
        return answer

    def _tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"


@asynccontextmanager
async def child(
    name: str, args: Sequence[str], tmp: Path, *, eof_stops: bool = True
) -> AsyncIterator[Child]:
    """Run ``python <args>``, stderr to ``<tmp>/<name>.log``; ended (then killed) on exit.

    ``eof_stops``: the child ends at the end of its input, else on SIGTERM.
    """
    log_path = tmp / f"{name}.log"
    with log_path.open("wb") as stderr:
        child = Child(name, await _spawn(args, stderr), log_path, eof_stops=eof_stops)
        try:
            yield child
        finally:
            try:
                await child.finish()
            finally:
                if child.process.returncode is None:
                    child.process.kill()


async def _spawn(args: Sequence[str], stderr: IO[bytes]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=stderr,
        preexec_fn=_die_with_parent(),
    )


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn killing the child when this process dies (Linux), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        # Resolved before fork: dlopen in the forked child of a threaded parent can hang.
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(ctypes.c_int(_PR_SET_PDEATHSIG), ctypes.c_ulong(signal.SIGKILL))
        if os.getppid() != parent:
            os._exit(1)

    return preexec


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hb_sim")
    commands = parser.add_subparsers(dest="command", required=True)
    fleet = commands.add_parser("publish", help="join N simulated nodes and heartbeat")
    fleet.add_argument("--nats-url", required=True)
    fleet.add_argument("--nodes", type=int, required=True)
    fleet.add_argument("--interval", type=float, required=True, help="seconds between beats")
    fleet.add_argument("--prefix", required=True, help="node ids are <prefix>-00000...")
    fleet.add_argument("--raw", action="store_true", help="plain js.publish_async, no joins")
    raw = commands.add_parser("consume", help="raw nats-py ordered consumer over hb.>")
    raw.add_argument("--nats-url", required=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the child processes."""
    args = _parser().parse_args(argv)
    run_async(publish(args) if args.command == "publish" else consume(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``python -m benchmarks.worker``: the child processes of the task and memory figures.

``node``: a real ``NodeAgent`` advertising the built-in ``search`` skill whose
``noop`` handler returns at once (``python -m eventsrc.node`` cannot register a
handler). ``responder``: raw nats-py's counterpart, a queue-group subscriber that
answers every request with an empty reply. ``replay``: a plain nats-py replay of the
events stream that then idles (the memory figures' raw side). Each prints ``ready``
once it takes work (or has replayed) and stops cleanly on SIGTERM or SIGINT (the node
drains and leaves).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any, Final

import nats
from nats.aio.msg import Msg

from eventsrc.node.agent import NodeAgent
from eventsrc.node.builtins import builtin_skill
from eventsrc.runtime import run_async, stop_event_on_signals
from eventsrc.store import JetStreamEventStore

READY: Final = "ready"
SKILL: Final = "search"
TASK_TYPE: Final = "noop"
RESPONDER_SUBJECT: Final = "bench.raw.task"
RESPONDER_QUEUE: Final = "bench-raw"


def main(argv: Sequence[str] | None = None) -> int:
    """Run a benchmark worker until SIGTERM/SIGINT; 0 on a clean stop."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(name)s: %(message)s")
    if args.kind == "node":
        run_async(_node(args.nats_url, node_id=args.node_id, capacity=args.capacity))
    elif args.kind == "replay":
        run_async(_replay(args.nats_url))
    else:
        run_async(_responder(args.nats_url))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.worker")
    parser.add_argument("kind", choices=("node", "responder", "replay"))
    parser.add_argument("--nats-url", required=True)
    parser.add_argument("--node-id", default="bench-node")
    parser.add_argument("--capacity", type=int, default=16)
    parser.add_argument("--log-level", default="WARNING")
    return parser


async def _noop(task: dict[str, Any]) -> None:
    return None


async def _node(url: str, *, node_id: str, capacity: int) -> None:
    stop = stop_event_on_signals()
    nc = await nats.connect(url, name=f"eventsrc-bench-{node_id}")
    try:
        agent = NodeAgent(
            nc,
            JetStreamEventStore(nc),
            node_id=node_id,
            skills={SKILL: builtin_skill(SKILL)},
            executors={},
            capacity=capacity,
        )
        agent.handlers[TASK_TYPE] = _noop
        await agent.start()
        print(READY, flush=True)
        await stop.wait()
        await agent.drain()
    finally:
        await nc.close()


async def _responder(url: str) -> None:
    stop = stop_event_on_signals()
    nc = await nats.connect(url, name="eventsrc-bench-responder")

    async def answer(msg: Msg) -> None:
        await msg.respond(b"")

    try:
        await nc.subscribe(RESPONDER_SUBJECT, queue=RESPONDER_QUEUE, cb=answer)
        await nc.flush()
        print(READY, flush=True)
        await stop.wait()
    finally:
        await nc.close()


async def _replay(url: str) -> None:
    """Raw nats-py's counterpart of a coordinator's catch-up: replay ``evt.>`` with an
    ordered consumer, say ready, stay alive (the memory benchmark reads its RSS)."""
    from benchmarks.history import raw_replay  # only this kind needs the history module

    stop = stop_event_on_signals()
    nc = await nats.connect(url, name="eventsrc-bench-replay")
    try:
        count = await raw_replay(nc)
        print(f"{READY} {count}", flush=True)
        await stop.wait()
    finally:
        await nc.close()


if __name__ == "__main__":
    sys.exit(main())

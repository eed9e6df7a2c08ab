"""``python -m benchmarks``: every figure next to raw nats-py, on a private nats-server.

Starts its own nats-server (file store in a temporary dir, a free port), runs the
selected benchmarks and prints one table, or one JSON object with ``--json``. The
server is stopped at the end, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import nats

from benchmarks import durability, heartbeats, history, memory, openclaw, registry, store, tasks
from benchmarks.harness import RATIO_CONVENTION, Benchmark, Context, Figure, keep, select
from eventsrc.openclaw_toolchain import ToolchainError
from eventsrc.runtime import UVLOOP_ENV, loop_name, run_async
from eventsrc.store import EVENTS_STREAM, JetStreamEventStore
from eventsrc.store.server import EmbeddedServer, find_nats_server

log = logging.getLogger("benchmarks")

BENCHMARKS: tuple[Benchmark, ...] = (
    *store.BENCHMARKS,
    *history.BENCHMARKS,
    *registry.BENCHMARKS,
    *tasks.BENCHMARKS,
    *heartbeats.BENCHMARKS,
    *memory.BENCHMARKS,
    *durability.BENCHMARKS,
    *openclaw.BENCHMARKS,
)
FULL_ROUNDS = 5
QUICK_ROUNDS = 3
_RECANCEL_S = 0.2


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; 0 on success, 1 without a usable OpenClaw for its figures, 2 when
    ``--only`` selects nothing, 130 on Ctrl-C."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.json else logging.INFO,
        format="%(message)s",
        stream=sys.stderr,
    )
    chosen = select(BENCHMARKS, args.only)
    if not chosen:
        names = ", ".join(b.name for b in BENCHMARKS)
        print(f"no benchmark matches {args.only!r}; the figures are: {names}", file=sys.stderr)
        return 2
    if args.loop:
        # Here and in every child program (coordinator, node, workers): they inherit it.
        os.environ[UVLOOP_ENV] = "1" if args.loop == "uvloop" else "0"
    loop = loop_name()
    if args.loop and loop != args.loop:
        print(f"--loop {args.loop}: uvloop is not installed here", file=sys.stderr)
        return 2
    rounds = args.rounds or (QUICK_ROUNDS if args.quick else FULL_ROUNDS)
    warmup = 0 if args.quick else 1
    interrupt = _Interrupt()
    with tempfile.TemporaryDirectory(prefix="eventsrc-bench-") as tmp:
        server = EmbeddedServer(tmp, port=0)
        try:
            server.start()
            assert server.url is not None
            figures = run_async(
                _run(
                    server.url,
                    chosen,
                    quick=args.quick,
                    rounds=rounds,
                    warmup=warmup,
                    interrupt=interrupt,
                )
            )
        except ToolchainError as err:
            print(f"cannot run the OpenClaw figures: {err}", file=sys.stderr)
            return 1
        except (KeyboardInterrupt, asyncio.CancelledError, Exception) as err:
            if not (interrupt.seen or isinstance(err, KeyboardInterrupt)):
                raise
            print("interrupted", file=sys.stderr)
            return 130
        finally:
            server.stop()
    mode = {"quick": args.quick, "rounds": rounds, "warmup": warmup, "loop": loop}
    _print_report(keep(figures, args.only), mode, as_json=args.json)
    return 0


def _print_report(figures: Sequence[Figure], mode: dict[str, Any], *, as_json: bool) -> None:
    machine = machine_info()
    if as_json:
        report = {"machine": machine, "mode": mode, "figures": [f.to_json() for f in figures]}
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        print(render(figures, machine, mode))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="eventsrc figures next to raw nats-py doing the same NATS work.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes, a few seconds in all (CI smoke)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--only", metavar="NAME", help="run the figures whose name contains NAME")
    parser.add_argument(
        "--loop",
        choices=("asyncio", "uvloop"),
        help="the event loop of the benchmark and of every program it starts (default: "
        f"what the programs use, uvloop unless {UVLOOP_ENV}=0)",
    )
    parser.add_argument(
        "--rounds",
        type=_positive,
        metavar="N",
        help=f"measured rounds per side (default {FULL_ROUNDS}, {QUICK_ROUNDS} with --quick)",
    )
    return parser


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


@dataclass(slots=True)
class _Interrupt:
    """Whether Ctrl-C was pressed while the benchmarks ran.

    nats-py swallows a cancellation in some places (a publish's flush) and turns it into
    an ordinary error in others (``publish_async``), so one cancel may not end the run
    and the error that does end it may not say why; this flag says why.
    """

    seen: bool = False


async def _run(
    url: str,
    chosen: Sequence[Benchmark],
    *,
    quick: bool,
    rounds: int,
    warmup: int,
    interrupt: _Interrupt,
) -> list[Figure]:
    main_task = asyncio.current_task()
    assert main_task is not None

    loop = asyncio.get_running_loop()

    def cancel_until_done() -> None:
        if not main_task.done():
            main_task.cancel()
            loop.call_later(_RECANCEL_S, cancel_until_done)

    def on_sigint() -> None:
        if interrupt.seen:
            raise KeyboardInterrupt  # a second Ctrl-C leaves the loop at once
        interrupt.seen = True
        cancel_until_done()

    try:
        loop.add_signal_handler(signal.SIGINT, on_sigint)
        installed = True
    except (NotImplementedError, RuntimeError):
        # Not the main thread, or no loop signal support: asyncio.run's own handling stays.
        installed = False
    try:
        return await _run_all(url, chosen, quick=quick, rounds=rounds, warmup=warmup)
    finally:
        if installed:
            loop.remove_signal_handler(signal.SIGINT)


async def _run_all(
    url: str, chosen: Sequence[Benchmark], *, quick: bool, rounds: int, warmup: int
) -> list[Figure]:
    nc = await nats.connect(url, name="eventsrc-bench", allow_reconnect=False)
    ctx = Context(nc, quick=quick, rounds=rounds, warmup=warmup, run_id=uuid.uuid4().hex[:8])
    try:
        events = JetStreamEventStore(nc)
        await events.ensure_streams()
        figures: list[Figure] = []
        for bench in chosen:
            # Each benchmark starts from an empty stream, whatever ran before it.
            await events.js.purge_stream(EVENTS_STREAM)
            log.info("%s: %s", bench.name, bench.summary)
            figures += await bench.run(ctx)
        return figures
    finally:
        try:
            await ctx.shared.aclose()
        finally:
            await nc.close()


def machine_info() -> dict[str, Any]:
    """What the figures were measured on."""
    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "nats_py": metadata.version("nats-py"),
        "pydantic": metadata.version("pydantic"),
        "nats_server": _nats_server_version(),
    }


def _nats_server_version() -> str:
    try:
        done = subprocess.run(
            [find_nats_server(), "--version"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError) as err:
        return f"unknown ({err})"
    return (done.stdout or done.stderr).strip().removeprefix("nats-server: ")


def render(figures: Sequence[Figure], machine: dict[str, Any], mode: dict[str, Any]) -> str:
    """The report as a plain-text table."""
    kind = "quick" if mode["quick"] else "full"
    lines = [
        f"eventsrc benchmark ({kind}: median of {mode['rounds']} rounds per side, "
        f"interleaved, {mode['loop']} loop); {RATIO_CONVENTION}",
        f"machine: {machine['cpu_count']} cpus, {machine['python']}, nats-py "
        f"{machine['nats_py']}, pydantic {machine['pydantic']}, nats-server "
        f"{machine['nats_server']}, {machine['platform']}",
        "",
    ]
    rows = [("figure", "unit", "n", "ours", "raw nats-py", "ratio")]
    rows += [
        (f.figure, f.unit, f"{f.n:,}", _number(f.ours), _number(f.raw), f"{f.ratio:.2f}")
        for f in figures
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for index, row in enumerate(rows):
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1])]
        cells += [cell.rjust(width) for cell, width in zip(row[2:], widths[2:], strict=True)]
        lines.append("  ".join(cells))
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _number(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


if __name__ == "__main__":
    sys.exit(main())

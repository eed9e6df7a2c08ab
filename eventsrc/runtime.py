"""What every entry point shares: logging setup, stop signals, one-line failures."""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from typing import Any, TypeVar

from eventsrc.errors import (
    ConfigError,
    EventsrcError,
    InvalidIdError,
    InvalidRequestError,
    NotPermittedError,
    ServerUnavailableError,
)

T = TypeVar("T")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_NOT_PERMITTED = 4
"""The NATS server refused a subject to these credentials (secure mode roles)."""

# Which exit code an error ends a program with; the first matching class wins.
_EXIT_CODES: tuple[tuple[type[EventsrcError], int], ...] = (
    (ServerUnavailableError, EXIT_UNREACHABLE),
    (NotPermittedError, EXIT_NOT_PERMITTED),
    # An id, flag, config file or environment value given by the user: a usage error.
    (InvalidIdError, EXIT_USAGE),
    (ConfigError, EXIT_USAGE),
    (EventsrcError, EXIT_FAILED),
)


def configure_logging(level: str) -> None:
    """Plain one-line logs on stderr; called by entry points only."""
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def stop_event_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM, so a program can drain and exit 0."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    return stop


UVLOOP_ENV = "EVENTSRC_UVLOOP"
"""``0`` (or ``false``, ``no``, ``off``) runs a program on asyncio's own loop instead of
uvloop's."""


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop every program runs on: uvloop's (libuv: faster socket I/O and
    callbacks) on Linux and macOS, unless ``EVENTSRC_UVLOOP=0``; ``None`` for asyncio's
    own (Windows, uvloop not installed, or turned off)."""
    if os.environ.get(UVLOOP_ENV, "1").strip().lower() in {"0", "false", "no", "off"}:
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def loop_name() -> str:
    """``uvloop`` or ``asyncio``: what ``loop_factory`` gives (for logs and reports)."""
    return "asyncio" if loop_factory() is None else "uvloop"


def run_async(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on the loop ``loop_factory`` picks."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)


def run_program(main: Callable[[], Awaitable[int]]) -> int:
    """Run an async main; a user-facing error becomes one line on stderr and an exit code."""
    try:
        return run_async(_guarded(main))
    except KeyboardInterrupt:
        return EXIT_OK


async def _guarded(main: Callable[[], Awaitable[int]]) -> int:
    try:
        return await main()
    except EventsrcError as err:
        print(f"error: {err}", file=sys.stderr)
        return exit_code(err)


def exit_code(err: EventsrcError) -> int:
    """The exit code a program ends with on ``err``."""
    return next(code for kind, code in _EXIT_CODES if isinstance(err, kind))


def parse_labels(values: list[str] | None, *, flag: str = "--label") -> dict[str, str]:
    """``["zone=a", "gpu=yes"]`` -> ``{"zone": "a", "gpu": "yes"}``; one-line error otherwise."""
    labels: dict[str, str] = {}
    for value in values or []:
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise InvalidRequestError(f"{flag} {value!r} is not KEY=VALUE")
        labels[key] = val
    return labels


def parse_host_port(text: str, *, flag: str) -> tuple[str, int]:
    """``HOST:PORT`` (port 0 picks a free one; ``[::1]:80`` for IPv6); one-line error
    otherwise."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise InvalidRequestError(f"{flag} {text!r} is not HOST:PORT, e.g. 127.0.0.1:8765")
    return host.strip("[]"), int(port)


def format_table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> str:
    """Plain-text columns padded to their widest cell, for people (``--json`` is for
    programs); trailing spaces trimmed."""
    cells = [[str(cell) for cell in row] for row in [header, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    )


AddOption = Callable[..., argparse.Action]
"""``parser.add_argument`` of the parser the global options are being added to."""


def with_global_options(
    parser: argparse.ArgumentParser, define: Callable[[AddOption], None]
) -> argparse.ArgumentParser:
    """Add a program's global options to ``parser`` and to every subcommand below it
    (nested ones too), so ``prog --json nodes`` and ``prog nodes --json`` mean the same.

    ``define(add)`` adds the options with ``add`` (``add_argument``'s signature). On the
    subcommands they have no default (``argparse.SUPPRESS``): a value given before the
    command stays unless the same option is given again after it. Call it once the
    subcommands exist; returns ``parser``.

    No option may be abbreviated then: a command's own option (``secure init --tls``)
    would otherwise be taken for an ambiguous abbreviation of global ones (``--tls-ca``).
    """
    parser.allow_abbrev = False
    define(parser.add_argument)
    for command in _subcommands(parser):
        command.allow_abbrev = False
        define(functools.partial(_add_without_default, command))
    return parser


def _add_without_default(parser: argparse.ArgumentParser, *names: str, **kwargs: Any) -> Any:
    return parser.add_argument(*names, **{**kwargs, "default": argparse.SUPPRESS})


def _subcommands(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """Every subcommand parser below ``parser``, each once (aliases share one)."""
    seen: set[int] = set()
    pending = [parser]
    while pending:
        for action in pending.pop()._actions:
            if isinstance(action, argparse._SubParsersAction):
                for command in action.choices.values():
                    if id(command) not in seen:
                        seen.add(id(command))
                        pending.append(command)
                        yield command

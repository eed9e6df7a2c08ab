"""``replay_tools``: rebuild, audit, verify, what-if, export/import, schema, stats.

Exit codes: 0 ok; 1 a finding or a refused request (verify found problems, an unknown
id, a corrupt file); 2 usage (a malformed id too); 3 NATS cannot be reached; 4 the
credentials do not allow it.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import orjson

from eventsrc import progress
from eventsrc.commands.scenario import scenario_from_options
from eventsrc.commands.simulate import Scenario
from eventsrc.config import add_connection_options, connection_settings
from eventsrc.errors import InvalidRequestError
from eventsrc.events.schema import event_schemas
from eventsrc.runner import CATCH_UP_GC_THRESHOLD
from eventsrc.runtime import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    AddOption,
    run_program,
    with_global_options,
)
from eventsrc.store import JetStreamEventStore, resolve_servers
from eventsrc.store.raw import mapped_nats_errors
from replay_tools import audit, backup, rebuild, simulate_report, stats, tree, verify, whatif_report
from replay_tools.common import Target, UsageError, open_store, parse_time
from replay_tools.render import print_json
from replay_tools.whatif import Options


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line, like every other error of this tool."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


class _InOrder(argparse.Action):
    """Keeps (flag, value) in the order given: ``--skills`` belongs to the ``--add-node``
    before it."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        ordered = list(getattr(namespace, self.dest) or [])
        ordered.append((option_string or "", str(values)))
        setattr(namespace, self.dest, ordered)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0 seconds")
    return value


def _global_options(add: AddOption) -> None:
    """The options every command takes, before or after its name."""
    add(
        "--nats-url",
        help="NATS URL(s); default: EVENTSRC_NATS_URL, ./.eventsrc/url, nats://127.0.0.1:4222",
    )
    add_connection_options(add)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="replay_tools", description="Replay, audit and verify the eventsrc event streams."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=text, description=text)

    cmd = command("rebuild", "the cluster state folded from the events, at any point")
    until = cmd.add_mutually_exclusive_group()
    until.add_argument("--until-seq", type=int, help="last EVENTSRC_EVENTS sequence to apply")
    until.add_argument("--until-time", help="last server time to apply (ISO 8601, UTC default)")
    start = cmd.add_mutually_exclusive_group()
    start.add_argument("--from-scratch", action="store_true", help="replay from seq 1 (default)")
    start.add_argument(
        "--from-snapshot", action="store_true", help="start from the stored snapshot if it fits"
    )
    cmd.add_argument("--json", action="store_true")

    cmd = command("audit", "every event touching a task, node, skill or schedule, in order")
    cmd.add_argument("kind", choices=["task", "node", "skill", "schedule"])
    cmd.add_argument("id", help="task id, node id or skill name")
    cmd.add_argument("--json", action="store_true")

    cmd = command("verify", "check the history and prove snapshot == replay")
    cmd.add_argument("--json", action="store_true")

    cmd = command(
        "what-if",
        "replay the recorded tasks on a changed cluster, or node expiry with another threshold",
    )
    cmd.add_argument("--stale-after", type=_positive, help="expiry threshold, seconds")
    cmd.add_argument("--heartbeat-interval", type=_positive, help="seconds between heartbeats")
    cmd.add_argument("--sweep-interval", type=_positive, help="coordinator sweep (default 5 s)")
    for flag, metavar, text in [
        ("--add-node", "NAME", "a node that was not there"),
        ("--skills", "A,B", "the added node's skills"),
        ("--capacity", "N|NAME=N", "slots: of the added node, or NAME's"),
        ("--labels", "K=V,...", "the added node's labels"),
    ]:
        cmd.add_argument(flag, metavar=metavar, help=text, action=_InOrder, dest="node_options")
    cmd.add_argument("--remove-node", metavar="NAME", action="append", default=[])
    cmd.add_argument("--drain", metavar="NAME@TIME", action="append", default=[])
    cmd.add_argument("--skill-on", metavar="SKILL=NODE,...", action="append", default=[])
    cmd.add_argument("--limit", metavar="KEY=N", action="append", default=[])
    cmd.add_argument("--from", dest="since", metavar="TIME", help="tasks submitted from (ISO)")
    cmd.add_argument("--until", metavar="TIME", help="tasks submitted until (ISO)")
    cmd.add_argument("--json", action="store_true")

    cmd = command("export", "both streams to a JSON Lines file (.gz: compressed)")
    cmd.add_argument("--out", required=True, type=Path, help="file to write")

    cmd = command("import", "an export file into an empty (or the same) deployment")
    cmd.add_argument("--in", dest="in_file", required=True, type=Path, help="file to read")

    cmd = command("schema", "the JSON Schema of every event type")
    cmd.add_argument("--out", type=Path, help="write one TYPE.schema.json per type here")

    cmd = command("stats", "counts by type and subject, stream sizes and time spans")
    cmd.add_argument("--json", action="store_true")
    return with_global_options(parser, _global_options)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:
        return EXIT_USAGE if exit_.code else EXIT_OK
    if args.command == "schema":
        return _schema(args.out)
    # A one-shot program folding whole histories: collect garbage less often (the
    # coordinator's runner does the same while it catches up).
    gc.set_threshold(*CATCH_UP_GC_THRESHOLD)
    connection = connection_settings(vars(args), os.environ)
    target = Target(
        servers=resolve_servers(args.nats_url, os.environ),
        creds=connection["creds"],
        tls_ca=connection["tls_ca"],
        tls_cert=connection["tls_cert"],
        tls_key=connection["tls_key"],
    )

    async def run() -> int:
        try:
            with mapped_nats_errors():
                return await _dispatch(args, target)
        except UsageError as err:
            print(f"error: {err}", file=sys.stderr)
            return EXIT_USAGE

    # JSON is for programs: no progress bar beside it, even on a terminal.
    with progress.hidden(getattr(args, "json", False)):
        return run_program(run)


async def _dispatch(args: argparse.Namespace, target: Target) -> int:
    until_time = None
    if args.command == "rebuild" and args.until_time is not None:
        until_time = parse_time(args.until_time, flag="--until-time")
    scenario = _scenario(args) if args.command == "what-if" else None
    async with open_store(target) as store:
        if args.command == "rebuild":
            rebuilt = await rebuild.rebuild(
                store,
                until_seq=args.until_seq,
                until_time=until_time,
                from_snapshot=args.from_snapshot,
            )
            _show(args.json, rebuild.to_json(rebuilt), rebuild.to_text(rebuilt))
            return EXIT_OK
        if args.command == "audit" and args.kind == "task":
            await _audit_task(store, args.id, args.json)
            return EXIT_OK
        if args.command == "audit":
            entries = await audit.audit(store, args.kind, args.id)
            _show(
                args.json,
                audit.to_json(args.kind, args.id, entries),
                audit.to_text(args.kind, args.id, entries),
            )
            return EXIT_OK
        if args.command == "verify":
            checks = await verify.verify(store)
            _show(args.json, verify.to_json(checks), verify.to_text(checks))
            return EXIT_FAILED if verify.failed(checks) else EXIT_OK
        if args.command == "what-if" and scenario is None:
            options = Options(
                stale_after=args.stale_after,
                sweep_interval=args.sweep_interval or 5.0,
                heartbeat_interval=args.heartbeat_interval,
            )
            report = await whatif_report.load_and_compare(store, options)
            _show(args.json, whatif_report.to_json(report), whatif_report.to_text(report))
            return EXIT_OK
        if args.command == "what-if":
            assert scenario is not None
            try:
                simulation = await simulate_report.load_and_simulate(store, scenario)
            except InvalidRequestError as err:
                raise UsageError(str(err)) from err
            _show(
                args.json, simulate_report.to_json(simulation), simulate_report.to_text(simulation)
            )
            return EXIT_OK
        if args.command == "export":
            counts = await backup.export(store, args.out)
            print("\n".join([f"wrote {args.out}", *backup.describe(counts, verb="exported")]))
            return EXIT_OK
        if args.command == "import":
            counts = await backup.import_file(store, args.in_file)
            print("\n".join(backup.describe(counts, verb="imported")))
            return EXIT_OK
        result = await stats.stats(store)
        _show(args.json, stats.to_json(result), stats.to_text(result))
        return EXIT_OK


def _scenario(args: argparse.Namespace) -> Scenario | None:
    """The placement scenario, or None for the expiry question (``--stale-after``)."""
    placement = bool(
        args.node_options
        or args.remove_node
        or args.drain
        or args.skill_on
        or args.limit
        or args.since
        or args.until
    )
    if args.stale_after is not None:
        if placement:
            raise UsageError(
                "--stale-after asks about node expiry and takes no placement options; "
                "run the two questions separately"
            )
        return None
    if args.heartbeat_interval is not None or args.sweep_interval is not None:
        raise UsageError("--heartbeat-interval and --sweep-interval go with --stale-after S")
    try:
        return scenario_from_options(
            [(flag.removeprefix("--"), value) for flag, value in args.node_options or []],
            remove=args.remove_node,
            drains=args.drain,
            skill_on=args.skill_on,
            limits=args.limit,
            since=args.since,
            until=args.until,
        )
    except InvalidRequestError as err:
        raise UsageError(str(err)) from err


async def _audit_task(store: JetStreamEventStore, task_id: str, as_json: bool) -> None:
    """A task's timeline and the tree of tasks it belongs to."""
    if not as_json:
        print(await tree.task_tree_text(store, task_id))
        return
    entries = await audit.audit(store, "task", task_id)
    document = audit.to_json("task", task_id, entries)
    document["tree"] = tree.to_json(await tree.task_tree(store, task_id))
    print_json(document)


def _show(as_json: bool, document: object, text: str) -> None:
    if as_json:
        print_json(document)
    else:
        print(text)


def _schema(out: Path | None) -> int:
    schemas = event_schemas()
    if out is None:
        print_json(schemas)
        return EXIT_OK
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, schema in schemas.items():
            (out / f"{name}.schema.json").write_bytes(
                orjson.dumps(schema, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
            )
    except OSError as err:
        print(f"error: cannot write schemas to {out}: {err.strerror or err}", file=sys.stderr)
        return EXIT_FAILED
    print(f"wrote {len(schemas)} schemas to {out}")
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())

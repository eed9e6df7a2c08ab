"""``eventsrc``: submit, inspect and steer a cluster from a shell.

The global options (``--nats-url``, ``--creds``, ``--json``) go before or after the
command; the exit codes are in ``EXIT_CODES_HELP`` (shown by ``--help``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator, Coroutine, Sequence
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from eventsrc import cli_batch, cli_text, openclaw_install, secure
from eventsrc.client import Cluster, connect
from eventsrc.commands import api
from eventsrc.commands.limits import SetLimit
from eventsrc.commands.timing import check_timing, parse_duration
from eventsrc.commands.views import TaskInfo
from eventsrc.config import add_connection_options
from eventsrc.dashboard import command as dashboard_command
from eventsrc.errors import InvalidIdError, InvalidRequestError, NotPermittedError, first_problem
from eventsrc.events import ScheduleTiming, TaskOutput, TaskSpec, validate_token
from eventsrc.lineage import inherited_task_id
from eventsrc.mcp import command as mcp_command
from eventsrc.projections.state import UNSUCCESSFUL_STATES, TaskState
from eventsrc.runtime import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    AddOption,
    parse_labels,
    run_program,
    stop_event_on_signals,
    with_global_options,
)
from eventsrc.store.server import EmbeddedServer


def _payload(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as err:
        raise InvalidRequestError(
            f'--payload is not valid JSON ({err}); quote it, e.g. --payload \'{{"code": "..."}}\''
        ) from err


DESCRIPTION = "Submit, inspect and steer an eventsrc cluster from a shell."
EXIT_CODES_HELP = (
    "exit codes: 0 ok (or succeeded with --wait); 1 the task failed, was rejected or timed "
    "out, or the request was refused; 2 usage; 3 cannot reach the cluster; 4 the "
    "credentials do not allow it"
)


def _global_options(add: AddOption) -> None:
    """The options every command takes, before or after its name."""
    add(
        "--nats-url",
        help="NATS URL(s); default: EVENTSRC_NATS_URL, ./.eventsrc/url, nats://127.0.0.1:4222",
    )
    add_connection_options(add)
    add("--json", action="store_true", help="print JSON, for programs")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eventsrc",
        description=DESCRIPTION,
        epilog=EXIT_CODES_HELP,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    submit = sub.add_parser("submit", help="submit a task, or many with --from FILE")
    _task_flags(submit, skill_required=False)
    submit.add_argument(
        "--from",
        dest="from_file",
        metavar="FILE",
        help=f"submit the tasks of FILE in one request: JSON lines, one task a line with "
        f'the fields of these flags, e.g. {{"skill": "python", "payload": {{"n": 1}}}} '
        f"(at most {api.MAX_BATCH}; '-' reads standard input); a bad line: nothing is "
        f"submitted",
    )
    submit.add_argument("--task-id", help="your id for the task (idempotent resubmit)")
    submit.add_argument(
        "--after",
        metavar="TASK_ID",
        help="start once that task succeeded, with its result in the payload's 'after' key "
        "(cancelled if it fails or is cancelled)",
    )
    submit.add_argument(
        "--not-before", metavar="TIME", help="start no earlier (ISO time, e.g. 2026-12-01T09:00Z)"
    )
    submit.add_argument(
        "--delay", type=float, metavar="S", help="start no earlier than S s after submission"
    )
    submit.add_argument(
        "--deadline", metavar="TIME", help="timed out if not started by then (ISO time)"
    )
    submit.add_argument("--wait", action="store_true", help="wait for the result")
    submit.add_argument("--timeout", type=float, default=60.0, help="bound on --wait (s)")

    get = sub.add_parser("get", help="show a task")
    get.add_argument("task_id")
    get.add_argument(
        "--follow",
        action="store_true",
        help="print each state change as it happens, until the task ends",
    )
    cancel = sub.add_parser("cancel", help="cancel a task")
    cancel.add_argument("task_id")
    drain = sub.add_parser("drain", help="stop placing work on a node (holds across its restarts)")
    drain.add_argument("node_id")
    drain.add_argument("--off", action="store_true", help="undo a drain (as undrain)")
    undrain = sub.add_parser("undrain", help="place work on a drained node again")
    undrain.add_argument("node_id")
    limit = sub.add_parser("limit", help="cluster-wide limits of keys: set, list, remove")
    limit_actions = limit.add_subparsers(dest="limit_command", required=True)
    limit_set = limit_actions.add_parser("set", help="set or change the limit of a key")
    limit_set.add_argument("key")
    limit_set.add_argument("--max", type=int, help="at most N of its tasks assigned or running")
    limit_set.add_argument("--rate", help="at most this many started per window, e.g. 30/m")
    limit_actions.add_parser("list", help="every limit in force, keys' and skills'")
    limit_remove = limit_actions.add_parser("remove", help="remove the limit of a key")
    limit_remove.add_argument("key")
    sub.add_parser("nodes", help="list nodes")
    sub.add_parser("skills", help="list skills: the catalog and what nodes found")
    sub.add_parser("status", help="cluster status")
    tasks = sub.add_parser("tasks", help="list tasks")
    tasks.add_argument("--all", action="store_true", help="include finished tasks")
    tasks.add_argument("--limit", type=int, default=1000)
    tasks.add_argument(
        "--watch", action="store_true", help="print each task's changes as they happen (Ctrl-C)"
    )
    _schedule_parser(sub)
    _secure_parser(sub)
    server = sub.add_parser(
        "server",
        help="run a bare nats-server with JetStream on a data dir (no coordinator), e.g. a "
        "scratch server to import a backup into",
    )
    server.add_argument("--data-dir", type=Path, required=True, help="its store folder")
    server.add_argument("--port", type=int, default=0, help="client port (default: any free)")
    mcp_command.add_parser(sub)
    dashboard_command.add_parser(sub)
    openclaw_install.add_parser(sub)
    return with_global_options(parser, _global_options)


def _task_flags(parser: argparse.ArgumentParser, *, skill_required: bool = True) -> None:
    """The flags of a task's request (``submit``, ``schedule add``)."""
    parser.add_argument("--skill", action="append", required=skill_required, help="required skill")
    parser.add_argument("--payload", help="task payload as JSON")
    parser.add_argument("--task-type", help="selects a handler registered on the node")
    parser.add_argument("--priority", type=int, default=0)
    parser.add_argument("--label", action="append", help="K=V a node must carry")
    parser.add_argument("--node", help="pin to this node")
    parser.add_argument("--run-timeout", type=float, help="seconds an attempt may run")
    parser.add_argument(
        "--queue-timeout", type=float, help="seconds it may wait for a node (0: never wait)"
    )
    parser.add_argument("--max-attempts", type=int)
    parser.add_argument("--model", help="provider/model for an OpenClaw agent turn")
    parser.add_argument(
        "--limit-key", metavar="K", help="held by the cluster-wide limit of K (eventsrc limit)"
    )


def _schedule_parser(sub: Any) -> None:
    schedule = sub.add_parser("schedule", help="tasks started on a cron schedule or interval")
    actions = schedule.add_subparsers(dest="schedule_command", required=True)
    add = actions.add_parser("add", help="add a schedule (the same one again changes nothing)")
    add.add_argument("name", help="the schedule's name (its tasks' ids start with it)")
    timing = add.add_mutually_exclusive_group(required=True)
    timing.add_argument("--cron", help='five fields, e.g. "0 9 * * 1-5" (09:00 on weekdays)')
    timing.add_argument("--every", help="an interval: 30s, 5m, 2h, 1d (whole seconds)")
    add.add_argument("--tz", default="UTC", help="time zone of --cron, e.g. Europe/Berlin")
    add.add_argument(
        "--catch-up",
        choices=("skip", "once"),
        default="skip",
        help="occurrences missed while no coordinator ran: record a skip (default), or "
        "fire the latest of them once",
    )
    add.add_argument(
        "--grace",
        default="60s",
        help="how late an occurrence may still fire as itself (default 60s); later ones "
        "count as missed",
    )
    _task_flags(add)
    actions.add_parser("list", help="list schedules with their next occurrence")
    for action, text in (
        ("pause", "stop firing until resumed"),
        ("resume", "fire again from now on (occurrences while paused never fire)"),
        ("remove", "delete a schedule (its tasks stay)"),
    ):
        actions.add_parser(action, help=text).add_argument("name")
    upcoming = actions.add_parser("next", help="the next occurrences of a schedule")
    upcoming.add_argument("name")
    upcoming.add_argument("--count", type=int, default=5, help="how many (default 5)")


def _secure_parser(sub: Any) -> None:
    secure = sub.add_parser("secure", help="secure mode: server config and credentials")
    actions = secure.add_subparsers(dest="secure_command", required=True)
    init = actions.add_parser("init", help="write a nats-server config and credentials")
    init.add_argument("dir", type=Path)
    init.add_argument("--node", action="append", default=[], help="node id (repeatable)")
    init.add_argument("--store-dir", help="JetStream store dir (default DIR/jetstream)")
    init.add_argument("--host", default="0.0.0.0", help="address the server listens on")
    init.add_argument("--port", type=int, default=4222)
    init.add_argument(
        "--tls",
        action="store_true",
        help="make a CA, a server certificate and one client certificate per identity "
        "(DIR/tls/); the server then asks every client for its certificate (mutual TLS)",
    )
    init.add_argument(
        "--tls-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a host name or address clients reach the server by, put in its certificate "
        "(repeatable; localhost, 127.0.0.1 and this host's name are always in)",
    )
    init.add_argument("--server-cert", help="your own server certificate (PEM) instead")
    init.add_argument("--server-key", help="its private key (PEM)")
    init.add_argument(
        "--client-ca", help="with --server-cert: CA that client certificates must be signed by"
    )
    init.add_argument("--force", action="store_true", help="replace an existing setup")
    add = actions.add_parser("add-node", help="add credentials for one more node")
    add.add_argument("dir", type=Path)
    add.add_argument("node_id")


def _run_secure(args: argparse.Namespace) -> int:
    if args.secure_command == "init":
        written = secure.init(
            args.dir,
            nodes=tuple(args.node),
            store_dir=args.store_dir,
            host=args.host,
            port=args.port,
            tls=args.tls,
            tls_hosts=tuple(args.tls_host),
            tls_cert=args.server_cert,
            tls_key=args.server_key,
            tls_ca=args.client_ca,
            force=args.force,
        )
    else:
        written = secure.add_node(args.dir, args.node_id)
    for path in written:
        print(f"wrote {path}")
    config = args.dir / secure.CONFIG_FILE
    print(f"start the server: nats-server -c {config}", file=sys.stderr)
    if secure.load(args.dir).tls_made:
        tls = args.dir / secure.TLS_DIR
        cert, key = secure.client_cert_files("<name>")
        print(
            f"TLS: give each program --tls-ca {tls / secure.CA_CERT} --tls-cert {tls / cert} "
            f"--tls-key {tls / key} (its own <name>, as in {args.dir / secure.CREDS_DIR})",
            file=sys.stderr,
        )
    if args.secure_command == "add-node":
        print("a running server: reload its config with kill -HUP <pid>", file=sys.stderr)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:
        return EXIT_USAGE if exit_.code else EXIT_OK
    try:
        _check_usage(args)
    except (InvalidIdError, InvalidRequestError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE

    if args.command == "secure":
        return run_program(lambda: _sync(_run_secure, args))
    if args.command == "server":
        return run_program(lambda: _serve(args.data_dir, args.port))
    if args.command == "openclaw":
        return run_program(lambda: _sync(lambda a: openclaw_install.run(a, os.environ), args))
    if args.command == "mcp":
        return mcp_command.run(args, inherited_task_id(os.environ))
    if args.command == "dashboard":
        return dashboard_command.run(args)

    async def run() -> int:
        async with connect(
            args.nats_url,
            creds=args.creds,
            tls_ca=args.tls_ca,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            project=False,
        ) as cluster:
            batch = getattr(args, "batch", None)  # submit --from, read by _check_usage
            if batch is not None:
                return await _submit_batch(cluster, batch, args.json)
            try:
                # submit says it itself: a task's own run time is expected waiting; so is
                # the wait of a command that follows live.
                live = getattr(args, "follow", False) or getattr(args, "watch", False)
                notice = args.command != "submit" and not live
                async with _notice_if_slow(args.command, enabled=notice):
                    return await _dispatch(cluster, args)
            except NotPermittedError as err:
                # Name the command the user typed, not the API endpoint behind it.
                raise NotPermittedError(f"eventsrc {args.command}: {err}") from err

    return run_program(run)


SLOW_NOTICE_S = 3.0
"""After this long without an answer a command says that it is still waiting."""


@contextlib.asynccontextmanager
async def _notice_if_slow(command: str, *, enabled: bool) -> AsyncIterator[None]:
    """Say once on stderr when ``command`` has had no answer for SLOW_NOTICE_S: while a
    NATS server is lost, a stream or the leader lease elects a new leader and requests
    wait seconds for it instead of failing."""

    async def notice() -> None:
        await asyncio.sleep(SLOW_NOTICE_S)
        print(
            f"eventsrc: {command}: no answer for {SLOW_NOTICE_S:g} s, still waiting (a NATS "
            f"server may be down and a stream or the coordinator lease electing a new "
            f"leader; see `eventsrc status`); Ctrl-C to stop",
            file=sys.stderr,
            flush=True,
        )

    task = asyncio.create_task(notice()) if enabled else None
    try:
        yield
    finally:
        if task is not None:
            task.cancel()


async def _serve(data_dir: Path, port: int) -> int:
    """Run an embedded nats-server until SIGINT/SIGTERM; its URL goes to stdout."""
    stop = stop_event_on_signals()
    with EmbeddedServer(data_dir, port=port) as server:
        print(f"nats-server with JetStream at {server.url} (data dir {data_dir}); Ctrl-C stops it")
        print(f"use it: export EVENTSRC_NATS_URL={server.url}", flush=True)
        await stop.wait()
    return EXIT_OK


async def _sync(function: Any, args: argparse.Namespace) -> int:
    code: int = function(args)
    return code


def _check_usage(args: argparse.Namespace) -> None:
    """Ids, JSON and options checked before connecting: a bad one never reaches the
    cluster and is a usage error. Raises InvalidIdError or InvalidRequestError."""
    for attr, what in (("task_id", "task id"), ("node", "node id"), ("node_id", "node id")):
        value = getattr(args, attr, None)
        for one in value if isinstance(value, list) else [value]:
            if one is not None:
                validate_token(one, what=what)
    if args.command == "limit" and args.limit_command != "list":
        validate_token(args.key, what="limit key")
        if args.limit_command == "set":
            try:
                SetLimit(key=args.key, max_running=args.max, rate=args.rate)
            except ValidationError as err:
                raise InvalidRequestError(f"limit {args.key}: {first_problem(err)}") from err
    if args.command == "schedule":
        if "name" in args:
            validate_token(args.name, what="schedule name")
        if args.schedule_command != "add":
            return
        _timing(args)
    elif args.command != "submit":
        return
    args.batch = _batch(args) if args.command == "submit" else None
    if args.batch is not None:
        return
    for skill in args.skill:
        validate_token(skill, what="skill name")
    try:
        TaskSpec(skills=tuple(args.skill), payload=_payload(args.payload), **_options(args))
    except ValidationError as err:
        raise InvalidRequestError(str(first_problem(err, root="task"))) from err


def _timing(args: argparse.Namespace) -> ScheduleTiming:
    """The timing of ``schedule add``; raises InvalidRequestError."""
    every_s = None
    if args.every is not None:
        seconds = parse_duration(args.every, what="--every")
        if seconds < 1 or seconds != int(seconds):
            raise InvalidRequestError(f"--every {args.every}: give whole seconds, at least 1s")
        every_s = int(seconds)
    if every_s is not None and args.tz != "UTC":
        raise InvalidRequestError("--tz applies to --cron only; --every counts in UTC")
    try:
        timing = ScheduleTiming(
            cron=args.cron,
            tz=args.tz,
            every_s=every_s,
            catch_up=args.catch_up,
            grace_s=parse_duration(args.grace, what="--grace"),
        )
    except ValidationError as err:
        raise InvalidRequestError(str(first_problem(err, root="schedule"))) from err
    return check_timing(timing)


def _options(args: argparse.Namespace) -> dict[str, Any]:
    """TaskSpec fields from the submit flags."""
    options: dict[str, Any] = {
        "priority": args.priority,
        "labels": parse_labels(args.label),
        "node_id": args.node,
        "task_type": args.task_type,
        "model": args.model,
    }
    for flag, field in (
        ("run_timeout", "run_timeout_s"),
        ("queue_timeout", "queue_timeout_s"),
        ("max_attempts", "max_attempts"),
        ("after", "after"),
        ("not_before", "not_before"),
        ("delay", "delay_s"),
        ("deadline", "deadline"),
        ("limit_key", "limit_key"),
    ):
        if getattr(args, flag, None) is not None:  # the waiting flags are submit's only
            options[field] = getattr(args, flag)
    return options


async def _dispatch(cluster: Cluster, args: argparse.Namespace) -> int:
    if args.command == "submit":
        return await _submit(cluster, args)
    if args.command == "schedule":
        return await _schedule(cluster, args)
    if args.command == "get" and args.follow:
        return await _until_stopped(_follow(cluster, args.task_id, args.json))
    if args.command == "get":
        return cli_text.show_task(await cluster.get(args.task_id), args.json)
    if args.command == "cancel":
        return cli_text.show_task(await cluster.cancel(args.task_id), args.json)
    if args.command in ("drain", "undrain"):
        off = args.command == "undrain" or args.off
        return cli_text.show(
            await cluster.drain(args.node_id, off=off), args.json, cli_text.drained_text
        )
    if args.command == "tasks" and args.watch:
        return await _until_stopped(_watch(cluster, args))
    if args.command == "tasks":
        data = await cluster.api.call("tasks", {"all": args.all, "limit": args.limit})
        await _add_progress(cluster, data["tasks"])
        return cli_text.show(data, args.json, cli_text.tasks_table)
    if args.command == "limit":
        return await _limit(cluster, args)
    if args.command == "nodes":
        return cli_text.show(await cluster.api.call("nodes"), args.json, cli_text.nodes_table)
    if args.command == "skills":
        return cli_text.show(await cluster.api.call("skills"), args.json, cli_text.skills_table)
    return cli_text.show(await cluster.api.call("status"), args.json, cli_text.status_text)


async def _schedule(cluster: Cluster, args: argparse.Namespace) -> int:
    action = args.schedule_command
    if action == "add":
        timing = _timing(args)
        data = await cluster.add_schedule(
            args.name,
            args.skill,
            _payload(args.payload),
            cron=timing.cron,
            tz=timing.tz,
            every_s=timing.every_s,
            catch_up=timing.catch_up,
            grace_s=timing.grace_s,
            **_options(args),
        )
        return cli_text.show(data, args.json, cli_text.schedule_text)
    if action == "list":
        data = {"schedules": await cluster.schedules()}
        return cli_text.show(data, args.json, cli_text.schedules_table)
    if action == "next":
        data = await cluster.next_fires(args.name, args.count)
        return cli_text.show(data, args.json, cli_text.next_fires_text)
    if action == "remove":
        data = await cluster.remove_schedule(args.name, "removed by cli")
        return cli_text.show(data, args.json, lambda d: f"schedule {d['name']} removed")
    if action == "pause":
        data = await cluster.pause_schedule(args.name, "paused by cli")
    else:
        data = await cluster.resume_schedule(args.name)
    return cli_text.show(data, args.json, cli_text.schedule_text)


async def _limit(cluster: Cluster, args: argparse.Namespace) -> int:
    if args.limit_command == "set":
        data = await cluster.set_limit(args.key, max_running=args.max, rate=args.rate)
        return cli_text.show(data["limits"], args.json, cli_text.limits_table)
    if args.limit_command == "remove":
        data = await cluster.remove_limit(args.key)
        return cli_text.show(data["limits"], args.json, cli_text.limits_table)
    return cli_text.show(await cluster.limits(), args.json, cli_text.limits_table)


def _batch(args: argparse.Namespace) -> api.SubmitTasks | None:
    """``submit --from FILE``'s request (None without --from)."""
    if args.from_file is None:
        if not args.skill:
            raise InvalidRequestError("submit: give --skill (or --from FILE for many tasks)")
        return None
    given = [flag for flag in _TASK_FLAGS if getattr(args, flag.lstrip("-").replace("-", "_"))]
    if given:
        raise InvalidRequestError(
            f"submit --from takes every task's fields from the file; drop {', '.join(given)}"
        )
    return cli_batch.read_batch(args.from_file, parent_task_id=inherited_task_id(os.environ))


_TASK_FLAGS = (
    *("--skill", "--payload", "--task-type", "--priority", "--label", "--node"),
    *("--run-timeout", "--queue-timeout", "--max-attempts", "--model", "--limit-key"),
    *("--task-id", "--after", "--not-before", "--delay", "--deadline", "--wait"),
)


async def _submit_batch(cluster: Cluster, batch: api.SubmitTasks, as_json: bool) -> int:
    """Exit 0 once all are accepted; 1 if the coordinator rejected any (unplaceable)."""
    async with _notice_if_slow("submit", enabled=True):
        tasks = await cluster.submit_batch(batch)
    if as_json:
        print(orjson.dumps([task.model_dump(mode="json") for task in tasks]).decode())
    else:
        print(cli_text.submitted_table(tasks))
    return EXIT_FAILED if any(task.state == TaskState.REJECTED for task in tasks) else EXIT_OK


async def _submit(cluster: Cluster, args: argparse.Namespace) -> int:
    options = _options(args)
    payload = _payload(args.payload)
    # Run inside a task on a node (its command or agent turn): a sub-task of that task.
    parent = inherited_task_id(os.environ)
    # Until the task is accepted, a wait is the cluster's (a stream electing a leader):
    # said after a while. Waiting for the task itself after that is what --wait asks.
    async with _notice_if_slow("submit", enabled=True):
        task = await cluster.submit(
            args.skill,
            payload,
            task_id=args.task_id,
            submitted_by="cli",
            parent_task_id=parent,
            **options,
        )
    if args.wait and not task.terminal:
        task = await cluster.wait(task.task_id, timeout=args.timeout)
    if args.wait and not task.terminal:
        cli_text.show_task(task, args.json)
        print(
            f"error: gave up waiting after {args.timeout:g} s; the task is still "
            f"{task.state} (eventsrc get {task.task_id})",
            file=sys.stderr,
        )
        return EXIT_FAILED
    code = cli_text.show_task(task, args.json)
    # Without --wait, exit 0 means "accepted": a quick task may already have ended,
    # even failed, by the time the answer comes; only a refusal (rejected) is a failure.
    unsuccessful = UNSUCCESSFUL_STATES if args.wait else {TaskState.REJECTED}
    if task.state in unsuccessful:
        return EXIT_FAILED
    return code


async def _until_stopped(following: Coroutine[Any, Any, int]) -> int:
    """Run ``following`` until it returns, or until SIGINT/SIGTERM (then exit 0)."""
    stop = stop_event_on_signals()
    job = asyncio.ensure_future(following)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({job, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (job, stopped):
            task.cancel()
        # Let the follow tear its consumers down before the caller closes the connection.
        await asyncio.wait({job, stopped})
    return job.result() if job.done() and not job.cancelled() else EXIT_OK


async def _add_progress(cluster: Cluster, tasks: list[dict[str, Any]]) -> None:
    """Each running task's latest progress (``progress``: fraction and message), read
    here rather than kept by the coordinator: one message get per running task, only
    when asked, where a projection would have to read every output line of every task."""
    running = [t for t in tasks if t["state"] == "running" and t.get("node_id")]
    found = await asyncio.gather(
        *(cluster.latest_output(t["task_id"], t["node_id"]) for t in running),
        return_exceptions=True,
    )
    for task, output in zip(running, found, strict=True):
        if isinstance(output, TaskOutput) and output.attempt == task["attempts"]:
            task["progress"] = {"fraction": output.progress, "message": output.progress_message}


async def _follow(cluster: Cluster, task_id: str, as_json: bool) -> int:
    """``get --follow``: each change as it happens, and the task's progress and output
    lines as they come; the exit code of ``submit --wait``."""
    last: TaskInfo | None = None
    streamed = False  # stdout/stderr lines printed live: the result need not repeat them
    async for item in cluster.follow_output(task_id):
        if isinstance(item, TaskOutput):
            cli_text.show_output(item, as_json)
            streamed = streamed or any(line.kind != "progress" for line in item.lines)
        else:
            cli_text.show_task(item, as_json, output_shown=streamed)
            last = item
        sys.stdout.flush()
    return EXIT_FAILED if last is not None and last.state in UNSUCCESSFUL_STATES else EXIT_OK


async def _watch(cluster: Cluster, args: argparse.Namespace) -> int:
    """``tasks --watch``: the list as ``tasks`` shows it, then each change as it happens."""
    # The position first: a change between it and the list shows twice, none is lost.
    from_seq = await cluster.store.last_seq() + 1
    data = await cluster.api.call("tasks", {"all": args.all, "limit": args.limit})
    await _add_progress(cluster, data["tasks"])
    if args.json:
        for task in data["tasks"]:
            print(json.dumps(task, default=str))
    else:
        print(cli_text.tasks_table(data))
    sys.stdout.flush()
    async for task in cluster.watch_tasks(from_seq=from_seq):
        if args.json:
            print(task.model_dump_json())
        else:
            print("  ".join(cli_text.task_cells(task.model_dump(mode="json"))).rstrip())
        sys.stdout.flush()
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())

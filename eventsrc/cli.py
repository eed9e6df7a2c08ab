"""``eventsrc``: submit, inspect and steer a cluster from a shell.

Exit codes: 0 ok (or succeeded with ``--wait``); 1 the task failed, was rejected or
timed out, or the request was refused; 2 usage; 3 cannot reach the cluster.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from eventsrc import secure
from eventsrc.client import Cluster, connect
from eventsrc.commands.views import TaskInfo
from eventsrc.errors import InvalidIdError, InvalidRequestError
from eventsrc.events import TaskSpec, validate_token
from eventsrc.runtime import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    format_table,
    parse_labels,
    run_program,
)


def _payload(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as err:
        raise InvalidRequestError(
            f'--payload is not valid JSON ({err}); quote it, e.g. --payload \'{{"code": "..."}}\''
        ) from err


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eventsrc", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--nats-url",
        help="NATS URL(s); default: EVENTSRC_NATS_URL, ./.eventsrc/url, nats://127.0.0.1:4222",
    )
    parser.add_argument("--creds", help="NATS credentials file")
    sub = parser.add_subparsers(dest="command", required=True)

    submit = sub.add_parser("submit", help="submit a task")
    submit.add_argument("--skill", action="append", required=True, help="required skill")
    submit.add_argument("--payload", help="task payload as JSON")
    submit.add_argument("--task-id", help="your id for the task (idempotent resubmit)")
    submit.add_argument("--task-type", help="selects a handler registered on the node")
    submit.add_argument("--priority", type=int, default=0)
    submit.add_argument("--label", action="append", help="K=V a node must carry")
    submit.add_argument("--node", help="pin to this node")
    submit.add_argument("--run-timeout", type=float, help="seconds an attempt may run")
    submit.add_argument(
        "--queue-timeout", type=float, help="seconds it may wait for a node (0: never wait)"
    )
    submit.add_argument("--max-attempts", type=int)
    submit.add_argument("--model", help="provider/model for an OpenClaw agent turn")
    submit.add_argument("--wait", action="store_true", help="wait for the result")
    submit.add_argument("--timeout", type=float, default=60.0, help="bound on --wait (s)")
    submit.add_argument("--json", action="store_true")

    for name, what in (("get", "show a task"), ("cancel", "cancel a task")):
        cmd = sub.add_parser(name, help=what)
        cmd.add_argument("task_id")
        cmd.add_argument("--json", action="store_true")
    drain = sub.add_parser("drain", help="stop placing work on a node")
    drain.add_argument("node_id")
    drain.add_argument("--json", action="store_true")
    for name, what in (
        ("nodes", "list nodes"),
        ("skills", "list skills: the catalog and what nodes found"),
        ("status", "cluster status"),
    ):
        cmd = sub.add_parser(name, help=what)
        cmd.add_argument("--json", action="store_true")
    tasks = sub.add_parser("tasks", help="list tasks")
    tasks.add_argument("--all", action="store_true", help="include finished tasks")
    tasks.add_argument("--limit", type=int, default=1000)
    tasks.add_argument("--json", action="store_true")
    _secure_parser(sub)
    return parser


def _secure_parser(sub: Any) -> None:
    secure = sub.add_parser("secure", help="secure mode: server config and credentials")
    actions = secure.add_subparsers(dest="secure_command", required=True)
    init = actions.add_parser("init", help="write a nats-server config and credentials")
    init.add_argument("dir", type=Path)
    init.add_argument("--node", action="append", default=[], help="node id (repeatable)")
    init.add_argument("--store-dir", help="JetStream store dir (default DIR/jetstream)")
    init.add_argument("--host", default="0.0.0.0", help="address the server listens on")
    init.add_argument("--port", type=int, default=4222)
    init.add_argument("--tls-cert", help="server certificate (PEM) to enable TLS")
    init.add_argument("--tls-key", help="its private key (PEM)")
    init.add_argument("--tls-ca", help="CA to verify client certificates (optional)")
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
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            tls_ca=args.tls_ca,
            force=args.force,
        )
    else:
        written = secure.add_node(args.dir, args.node_id)
    for path in written:
        print(f"wrote {path}")
    config = args.dir / secure.CONFIG_FILE
    print(f"start the server: nats-server -c {config}", file=sys.stderr)
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

    async def run() -> int:
        async with connect(args.nats_url, creds=args.creds, project=False) as cluster:
            return await _dispatch(cluster, args)

    return run_program(run)


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
    if args.command != "submit":
        return
    for skill in args.skill:
        validate_token(skill, what="skill name")
    try:
        TaskSpec(skills=tuple(args.skill), payload=_payload(args.payload), **_options(args))
    except ValidationError as err:
        first = err.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        raise InvalidRequestError(f"{where}: {first['msg']}") from err


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
    ):
        if getattr(args, flag) is not None:
            options[field] = getattr(args, flag)
    return options


async def _dispatch(cluster: Cluster, args: argparse.Namespace) -> int:
    if args.command == "submit":
        return await _submit(cluster, args)
    if args.command == "get":
        return _show_task(await cluster.get(args.task_id), args.json)
    if args.command == "cancel":
        return _show_task(await cluster.cancel(args.task_id), args.json)
    if args.command == "drain":
        return _show(await cluster.drain(args.node_id), args.json, _node_table)
    if args.command == "tasks":
        data = await cluster.api.call("tasks", {"all": args.all, "limit": args.limit})
        return _show(data, args.json, _tasks_table)
    if args.command == "nodes":
        return _show(await cluster.api.call("nodes"), args.json, _nodes_table)
    if args.command == "skills":
        return _show(await cluster.api.call("skills"), args.json, _skills_table)
    return _show(await cluster.api.call("status"), args.json, _status_text)


async def _submit(cluster: Cluster, args: argparse.Namespace) -> int:
    options = _options(args)
    payload = _payload(args.payload)
    if args.wait:
        task = await cluster.run(
            args.skill,
            payload,
            timeout=args.timeout,
            task_id=args.task_id,
            submitted_by="cli",
            **options,
        )
    else:
        task = await cluster.submit(
            args.skill, payload, task_id=args.task_id, submitted_by="cli", **options
        )
    if args.wait and not task.terminal:
        _show_task(task, args.json)
        print(
            f"error: gave up waiting after {args.timeout:g} s; the task is still "
            f"{task.state} (eventsrc get {task.task_id})",
            file=sys.stderr,
        )
        return EXIT_FAILED
    code = _show_task(task, args.json)
    # Without --wait, exit 0 means "accepted": a quick task may already have ended,
    # even failed, by the time the answer comes; only a refusal (rejected) is a failure.
    unsuccessful = {"failed", "rejected", "timed_out", "cancelled"} if args.wait else {"rejected"}
    if task.state in unsuccessful:
        return EXIT_FAILED
    return code


def _show_task(task: TaskInfo, as_json: bool) -> int:
    if as_json:
        print(task.model_dump_json())
        return EXIT_OK
    print(
        f"task {task.task_id}: {task.state} (attempt {task.attempts}"
        f"{', node ' + task.node_id if task.node_id else ''})"
    )
    if task.reason:
        print(f"  reason: {task.reason}")
    for hint in task.would_qualify:
        print(f"  would qualify: {hint}")
    if task.error:
        print(f"  error: {task.error}")
    if task.agent is not None:
        print(f"  agent: {task.agent.summary()}")
    if task.result is not None:
        result = task.result
        if isinstance(result, dict) and "stdout" in result:
            sys.stdout.write(str(result["stdout"]))
            if result.get("stderr"):
                sys.stderr.write(str(result["stderr"]))
        else:
            print(json.dumps(result, indent=2, default=str))
    return EXIT_OK


def _show(data: Any, as_json: bool, text: Any) -> int:
    if as_json:
        print(json.dumps(data, default=str))
    else:
        print(text(data))
    return EXIT_OK


def _tasks_table(data: dict[str, Any]) -> str:
    rows = [
        [
            t["task_id"],
            t["state"],
            t["node_id"] or "-",
            str(t["attempts"]),
            ",".join(t["skills"]),
            t["reason"] or "",
        ]
        for t in data["tasks"]
    ]
    return (
        format_table(rows, ["TASK", "STATE", "NODE", "ATTEMPTS", "SKILLS", "REASON"])
        if rows
        else "no tasks (use --all for finished ones)"
    )


def _nodes_table(data: dict[str, Any]) -> str:
    rows = [
        [
            n["node_id"],
            n["state"],
            f"{n['running']}/{n['capacity']}",
            ",".join(n["skills"]),
            f"{n['cpu_percent']:.0f}%" if n["cpu_percent"] is not None else "-",
            str(n["last_heartbeat_at"] or "-"),
        ]
        for n in data["nodes"]
    ]
    return (
        format_table(rows, ["NODE", "STATE", "RUNNING", "SKILLS", "CPU", "LAST HEARTBEAT"])
        if rows
        else "no nodes have joined"
    )


def _node_table(node: dict[str, Any]) -> str:
    return _nodes_table({"nodes": [node]})


def _skills_table(data: dict[str, Any]) -> str:
    rows = []
    for skill in data["skills"]:
        would = "; ".join(
            f"{h['node_id']} lacks {', '.join(h['lacks'])}"
            + (f" (install: {h['install']})" if h.get("install") else "")
            for h in skill["would_be_holders"]
        )
        rows.append(
            [
                skill["name"],
                skill["category"],
                ",".join(skill["holders"]) or "-",
                ",".join(skill["dependencies"]) or "-",
                would or "-",
            ]
        )
    return (
        format_table(rows, ["SKILL", "CATEGORY", "HOLDERS", "DEPENDS ON", "WOULD RUN WITH"])
        if rows
        else "the catalog is empty"
    )


def _status_text(data: dict[str, Any]) -> str:
    lines = [
        f"leader: {data['leader'] or '-'} (epoch {data['epoch']}), events: {data['last_seq']}",
        f"nodes: {data['nodes'] or 'none'}",
        f"tasks in memory: {data['tasks'] or 'none'}",
        f"skills: {data['skills']}",
        f"problems: {data['problems']}",
    ]
    lines += [f"  {line}" for line in data["recent_problems"]]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())

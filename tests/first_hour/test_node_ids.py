"""A new user's second step: a node started with no ``--node-id`` in the folder where the
coordinator (with its local node) runs. No id is shared, both nodes keep their skills,
and a second process under a live node's id is refused with one line."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from tests.e2e.conftest import CLEAN_ENV, DEADLINE_S, poll, run_cli
from tests.first_hour.conftest import coordinator_on
from tests.processes import Program, program
from tests.waiting import until_blocking

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "skills"


async def test_a_default_node_beside_the_coordinator_gets_its_own_id(tmp_path: Path) -> None:
    coordinator_args = ["-m", "eventsrc.coordinator", "--embedded-port", "0"]
    with program(coordinator_args, cwd=tmp_path, env=CLEAN_ENV) as coordinator:
        coordinator.wait_for_line("local node", timeout=DEADLINE_S)
        node_args = ["-m", "eventsrc.node", "--skills-dir", str(EXAMPLES)]
        with program(node_args, cwd=tmp_path, env=CLEAN_ENV) as node:
            node.wait_for_line("ready", timeout=DEADLINE_S)

            async def both_joined() -> dict[str, dict[str, object]] | None:
                nodes = await _nodes_at(tmp_path, None)
                return nodes if len(nodes) == 2 else None

            nodes = await poll(both_joined, "the local node and the new node")
            local = next(n for n in nodes if n.endswith("-local"))
            other = next(n for n in nodes if n != local)
            assert "python" in nodes[local]["skills"]
            assert "word-count" in nodes[other]["skills"]
            assert all(n["state"] == "alive" for n in nodes.values())
            # What a node found but cannot run shows in the table, with what it lacks.
            table = await run_cli(["nodes"], cwd=tmp_path, url=None)
            assert "speech-to-text (bin:whisper-cli)" in table.out, table
            assert nodes[other]["cannot_run"] == {"speech-to-text": ["bin:whisper-cli"]}

            # Each process pulls its own work: 20 of 20 for each, never "no executor".
            for i in range(20):
                python = await run_cli(
                    [
                        "submit",
                        "--skill",
                        "python",
                        "--payload",
                        json.dumps({"code": f"print({i} * 2)"}),
                        "--wait",
                        "--json",
                    ],
                    cwd=tmp_path,
                    url=None,
                )
                assert python.code == 0, python
                assert python.json["node_id"] == local
                assert python.json["result"]["stdout"] == f"{i * 2}\n"
                words = await run_cli(
                    [
                        "submit",
                        "--skill",
                        "word-count",
                        "--payload",
                        json.dumps({"text": "one two " * (i + 1)}),
                        "--wait",
                        "--json",
                    ],
                    cwd=tmp_path,
                    url=None,
                )
                assert words.code == 0, words
                assert words.json["node_id"] == other
                assert words.json["result"]["words"] == 2 * (i + 1)


async def test_a_second_process_under_a_live_node_id_is_refused(
    tmp_path: Path, nats_url: str
) -> None:
    with coordinator_on(nats_url, tmp_path) as (env, _):
        node_args = ["-m", "eventsrc.node", "--node-id", "alpha", "--skill", "python"]
        with program(node_args, cwd=tmp_path, env=env) as first:
            first.wait_for_line("ready", timeout=DEADLINE_S)
            with program(node_args, cwd=tmp_path, env=env) as second:
                code = await asyncio.to_thread(second.proc.wait, DEADLINE_S)
                errors = [line for line in second.stderr_lines if line.startswith("error:")]
            assert code == 1, second.stderr_lines
            assert len(errors) == 1, second.stderr_lines
            assert "node id alpha is in use by a live process on host" in errors[0]
            assert f"pid {first.proc.pid}" in errors[0] and "--node-id" in errors[0]
            # The first one keeps its membership and its work.
            done = await run_cli(
                [
                    "submit",
                    "--skill",
                    "python",
                    "--payload",
                    '{"code": "print(5)"}',
                    "--wait",
                    "--json",
                ],
                cwd=tmp_path,
                url=nats_url,
            )
            assert done.code == 0 and done.json["node_id"] == "alpha", done


async def test_a_node_restarted_after_a_crash_replaces_its_dead_predecessor(
    tmp_path: Path, nats_url: str
) -> None:
    with coordinator_on(nats_url, tmp_path, "--stale-after", "30") as (env, _):
        node_args = ["-m", "eventsrc.node", "--node-id", "beta", "--skill", "python"]
        with program(node_args, cwd=tmp_path, env=env) as crashed:
            crashed.wait_for_line("ready", timeout=DEADLINE_S)
            crashed.kill()  # SIGKILL: no NodeLeft; the member looks alive for 30 s
        with program(node_args, cwd=tmp_path, env=env) as restarted:
            restarted.wait_for_line("ready", timeout=DEADLINE_S)
            assert any("which is gone; replacing it" in line for line in restarted.stderr_lines)
            done = await run_cli(
                [
                    "submit",
                    "--skill",
                    "python",
                    "--payload",
                    '{"code": "print(7)"}',
                    "--wait",
                    "--json",
                ],
                cwd=tmp_path,
                url=nats_url,
            )
            assert done.code == 0 and done.json["result"]["stdout"] == "7\n", done


def test_a_skills_dir_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-folder"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "eventsrc.node",
            "--nats-url",
            "nats://127.0.0.1:9",
            "--skills-dir",
            str(missing),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result
    assert result.stderr.count("\n") == 1, result.stderr
    assert f"--skills-dir {missing} does not exist" in result.stderr


async def test_a_drain_says_what_it_did_and_holds_across_a_restart(
    tmp_path: Path, nats_url: str
) -> None:
    node_args = ["-m", "eventsrc.node", "--node-id", "gamma", "--skill", "python"]

    async def cli(*args: str) -> str:
        done = await run_cli(list(args), cwd=tmp_path, url=nats_url)
        assert done.code == 0, done
        return done.out.strip()

    async def state() -> object:
        return (await _nodes_at(tmp_path, nats_url))["gamma"]["state"]

    with coordinator_on(nats_url, tmp_path) as (env, _):
        with program(node_args, cwd=tmp_path, env=env) as node:
            node.wait_for_line("ready", timeout=DEADLINE_S)
            said = await cli("drain", "gamma")
            assert said.startswith("node gamma draining: no new work is placed on it"), said
            assert "eventsrc undrain gamma" in said
            assert "was already draining" in await cli("drain", "gamma")
            assert node.signal() == 0
        with program(node_args, cwd=tmp_path, env=env) as node:
            node.wait_for_line("ready", timeout=DEADLINE_S)
            assert await state() == "draining", "a restart undid the drain"
            assert await cli("undrain", "gamma") == "node gamma takes work again (state: alive)"
            assert (
                await cli("drain", "--off", "gamma") == "node gamma was not drained (state: alive)"
            )
            assert await state() == "alive"


async def _nodes_at(cwd: Path, url: str | None) -> dict[str, dict[str, object]]:
    listed = await run_cli(["nodes", "--json"], cwd=cwd, url=url)
    assert listed.code == 0, listed
    return {n["node_id"]: n for n in listed.json["nodes"]}


async def test_two_processes_starting_at_once_under_one_id_end_with_one_member(
    tmp_path: Path, nats_url: str
) -> None:
    node_args = ["-m", "eventsrc.node", "--node-id", "delta", "--skill", "python"]
    env = {**CLEAN_ENV, "EVENTSRC_NATS_URL": nats_url}
    with (
        coordinator_on(nats_url, tmp_path),
        program(node_args, cwd=tmp_path, env=env) as one,
        program(node_args, cwd=tmp_path, env=env) as two,
    ):

        def outcome(node: Program) -> str:
            def seen() -> str:
                if node.proc.poll() is not None:
                    return "refused"
                return "ready" if any("ready" in line for line in list(node.lines.queue)) else ""

            return until_blocking(
                seen, lambda: f"ready or refused: {node.stderr_lines}", DEADLINE_S, 0.05
            )

        outcomes = sorted([outcome(one), outcome(two)])
        assert outcomes == ["ready", "refused"], (one.stderr_lines, two.stderr_lines)
        refused = one if one.proc.poll() is not None else two
        assert refused.proc.returncode == 1
        assert any("node id delta" in line for line in refused.stderr_lines)

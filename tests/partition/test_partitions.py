"""Issue 19: the network splits, under a steady load of submissions.

Every program and server runs in a network namespace of its own (``tests.partition.
cluster``); a cut drops all of one namespace's packets silently until it is healed.
After each cut and heal every accepted task has ended exactly once, no (task, attempt)
was placed twice, and the counts and timings go to the run's summary.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import time
from pathlib import Path

import eventsrc
from eventsrc.client import Cluster
from eventsrc.errors import NotFoundError
from eventsrc.ports import EVENTS_STREAM
from tests.deploy.topology import TaskResult, check_one_end
from tests.e2e.conftest import CLEAN_ENV, TERMINAL, poll, task_events, wait_state
from tests.partition.cluster import (
    CLIENT,
    COORDINATORS,
    LEASE_S,
    LOST_LEAD,
    NODES,
    SERVERS,
    Partitioned,
)
from tests.partition.conftest import Report
from tests.partition.load import Load, events_of, since, tally
from tests.processes import Program, program
from tests.waiting import until, until_blocking

CUT_AFTER = 8
"""Accepted submissions before the cut: the load is flowing."""
MORE_WHILE_CUT = 5
"""Accepted after the cut, before the heal: the cluster kept serving."""
OBSERVED_LATE_S = 0.5
"""How much later than the event a poll of a child's stderr may see its log line."""
SLOW_TASK_S = 4
"""A task long enough to be cut off in the middle of."""
CLIENT_CUT_S = 9.0
"""Longer than a cut-off peer takes to be noticed (two missed 2 s pings), on both sides."""
LEADS = re.compile(r"(coordinator-\S+) leads from epoch")


async def test_a_cut_off_leader_stops_and_the_standby_leads(
    partitioned: Partitioned, report: Report
) -> None:
    load = Load(partitioned.urls, "lead")
    load.start()
    await load.until_accepted(CUT_AFTER)
    old_name, old = await partitioned.wait_leader()
    new_name = next(name for name in COORDINATORS if name != old_name)
    new = partitioned.topology.coordinators[new_name]
    old_lines, new_lines = len(old.stderr_lines), len(new.stderr_lines)

    partitioned.network.cut(partitioned.member(old_name).role)
    cut_at = time.monotonic()
    before_cut = len(load.accepted)
    why = await until(lambda: logged(old, LOST_LEAD, old_lines), f"{old_name} to stop", 20, 0.05)
    stopped_in = since(cut_at)
    await until(lambda: logged(new, LEADS, new_lines), f"{new_name} to lead", 20, 0.05)
    led_in = since(cut_at)
    # The load goes on through the new leader while the old one is still cut off.
    await load.until_accepted(before_cut + MORE_WHILE_CUT)
    flowing_in = since(cut_at)
    assert (await partitioned.wait_leader())[0] == new_name

    partitioned.network.heal(partitioned.member(old_name).role)
    healed_at = time.monotonic()

    async def standing_by() -> bool:
        status = await partitioned.status()
        standbys = (status or {}).get("standbys") or ()
        return any(f"-{old.proc.pid}-" in one for one in standbys)

    await poll(standing_by, f"{old_name} standing by after the heal")
    back_in = since(healed_at)
    assert (await partitioned.wait_leader())[0] == new_name
    await load.stop()

    counts = await tally(partitioned.urls, ["lead"], load.accepted)
    problems = (await partitioned.status() or {}).get("problems")
    report(
        f"{old_name} (leader) cut: stopped deciding {stopped_in:.1f} s after the cut ({why}); "
        f"{new_name} led at {led_in:.1f} s; {MORE_WHILE_CUT} more accepted by {flowing_in:.1f} s; "
        f"{old_name} standing by {back_in:.1f} s after the heal; {counts.line()}; "
        f"problems counted {problems}; {load.retried()}"
    )
    # Observed through its stderr, polled: a little later than the moment itself.
    assert stopped_in < LEASE_S + OBSERVED_LATE_S, f"{old_name} still led {stopped_in:.1f} s on"
    assert led_in < 2 * LEASE_S + OBSERVED_LATE_S, f"{new_name} led only {led_in:.1f} s on"
    assert counts.duplicates == 0, counts.problems
    assert counts.ended == counts.stored >= counts.accepted, counts.line()
    assert counts.states == {"succeeded": counts.stored}, counts.line()


def logged(child: Program, pattern: re.Pattern[str], after: int) -> str | None:
    """The first group of the first stderr line past ``after`` matching ``pattern``."""
    for line in child.stderr_lines[after:]:
        if match := pattern.search(line):
            return match.group(1)
    return None


async def test_a_cut_off_server_is_left_and_catches_up_after_the_heal(
    partitioned: Partitioned, report: Report
) -> None:
    load = Load(partitioned.urls, "srv")
    load.start()
    await load.until_accepted(CUT_AFTER)
    # The server most of the programs are on: the most clients that must move.
    on = {i: await asyncio.to_thread(partitioned.connections, i) for i in range(1, SERVERS + 1)}
    victim = max(on, key=lambda i: len(on[i]))
    others = [i for i in on if i != victim]
    moving = set(on[victim])
    assert moving, f"no program on nats-{victim}: {on}"

    epoch_before = (await partitioned.status() or {}).get("epoch")
    partitioned.network.cut(f"n{victim}")
    cut_at = time.monotonic()
    before_cut = len(load.accepted)

    def moved() -> bool:
        return moving <= {name for i in others for name in partitioned.connections(i)}

    await asyncio.to_thread(until_blocking, moved, f"{sorted(moving)} to move", 30, 0.1)
    moved_in = since(cut_at)
    await load.until_accepted(before_cut + MORE_WHILE_CUT)
    serving_in = since(cut_at)

    partitioned.network.heal(f"n{victim}")
    healed_at = time.monotonic()
    await load.stop()

    def caught_up() -> dict[int, int]:
        """Each server's last seq of the events stream once they agree, else empty."""
        seqs = {i: partitioned.last_seqs(i).get(EVENTS_STREAM, 0) for i in on}
        return seqs if len(set(seqs.values())) == 1 else {}

    seqs = await asyncio.to_thread(until_blocking, caught_up, f"nats-{victim} to catch up", 30, 0.1)
    caught_up_in = since(healed_at)
    counts = await tally(partitioned.urls, ["srv"], load.accepted)
    leader = await partitioned.wait_leader()
    epoch_after = (await partitioned.status() or {}).get("epoch")
    report(
        f"nats-{victim} cut (clients on it: {', '.join(sorted(moving))}): all of them on the "
        f"other two by {moved_in:.1f} s; {MORE_WHILE_CUT} more accepted by {serving_in:.1f} s; "
        f"after the heal (and the load stopped) its {EVENTS_STREAM} replica at the others' last "
        f"seq {seqs[victim]} by {caught_up_in:.1f} s; leader epoch {epoch_before} -> "
        f"{epoch_after} ({leader[0]}); {counts.line()}; {load.retried()}"
    )
    for name, child in {**partitioned.topology.coordinators, **partitioned.topology.nodes}.items():
        assert child.proc.poll() is None, (name, child.stderr_lines[-10:])
    assert counts.duplicates == 0, counts.problems
    assert counts.ended == counts.stored >= counts.accepted, counts.line()
    assert counts.states == {"succeeded": counts.stored}, counts.line()


def sleeping(seconds: float) -> dict[str, str]:
    """A ``python`` task payload that runs ``seconds`` and prints ``finished``."""
    return {"code": f"import time\ntime.sleep({seconds})\nprint('finished')\n"}


async def test_a_cut_off_node_s_task_ends_elsewhere_and_its_late_result_is_kept_as_late(
    partitioned: Partitioned, report: Report
) -> None:
    load = Load(partitioned.urls, "node")
    load.start()
    await load.until_accepted(CUT_AFTER)
    async with eventsrc.connect(partitioned.urls, project=False) as client:
        await client.submit("python", sleeping(SLOW_TASK_S), task_id="slow-node")
        running = await wait_state(client, "slow-node", {"running"})
        victim = running.node_id
        assert victim in NODES, running

        partitioned.network.cut(partitioned.member(victim).role)
        cut_at = time.monotonic()
        task = await wait_state(client, "slow-node", TERMINAL, timeout=60)
        ended_in = since(cut_at)
        assert task.state == "succeeded" and task.attempts == 2, task
        assert task.node_id != victim, task

        partitioned.network.heal(partitioned.member(victim).role)
        healed_at = time.monotonic()

        async def late_result() -> list[object] | None:
            events = await events_of(client, "slow-node")
            results = [e for e in events or () if isinstance(e, TaskResult)]
            return events if any(e.attempt == 1 for e in results) else None

        events = await poll(late_result, f"{victim}'s late result of attempt 1", timeout=60)
        late_in = since(healed_at)
        late = check_one_end("slow-node", task.attempts, events)
        after = await client.get("slow-node")
        status = await partitioned.status()
    await partitioned.topology.wait_node(victim, "alive")
    alive_in = since(healed_at)
    await load.stop()
    counts = await tally(partitioned.urls, ["node"], load.accepted)
    report(
        f"{victim} cut mid-task: the task requeued and succeeded on {task.node_id} "
        f"{ended_in:.1f} s after the cut; {victim}'s late result stored {late_in:.1f} s after "
        f"the heal, kept as late (problems counted: {(status or {}).get('problems')}); "
        f"{victim} alive again {alive_in:.1f} s after the heal; "
        f"{counts.line()}; {load.retried()}"
    )
    assert late == 1, events
    assert (after.state, after.attempts, after.node_id) == ("succeeded", 2, task.node_id), after
    assert status is not None and status["problems"]["late"] >= 1, status
    assert counts.duplicates == 0, counts.problems
    assert counts.ended == counts.stored >= counts.accepted, counts.line()
    assert counts.states == {"succeeded": counts.stored}, counts.line()


async def running(client: Cluster, task_id: str) -> bool:
    """Whether the task runs (it may not be submitted yet)."""
    try:
        return (await client.get(task_id)).state == "running"
    except NotFoundError:
        return False


RUN_SCRIPT = """
import asyncio, json, sys
import eventsrc

async def main():
    urls, task_id, code = sys.argv[1:]
    async with eventsrc.connect(urls, project=False) as cluster:
        task = await cluster.run("python", {"code": code}, task_id=task_id, timeout=90)
        print(json.dumps({"run": task.state, "attempts": task.attempts}), flush=True)
        task = await cluster.wait(task_id, timeout=30)
        print(json.dumps({"wait": task.state, "result": task.result}), flush=True)

asyncio.run(main())
"""


async def test_a_client_cut_off_during_run_gets_its_result_after_the_heal(
    partitioned: Partitioned, report: Report, tmp_path: Path
) -> None:
    load = Load(partitioned.urls, "run")
    load.start()
    await load.until_accepted(CUT_AFTER)
    member = partitioned.network.members[CLIENT]
    code = sleeping(SLOW_TASK_S)["code"]
    args = ["-c", RUN_SCRIPT, partitioned.urls, "slow-run", code]
    with program(args, cwd=tmp_path, env=CLEAN_ENV, launcher=member.exec_prefix()) as runner:
        async with eventsrc.connect(partitioned.urls, project=False) as client:
            await poll(functools.partial(running, client, "slow-run"), "slow-run running")
            partitioned.network.cut(CLIENT)
            cut_at = time.monotonic()
            # The task ends while its client is cut off: the answer to `run` is lost.
            await wait_state(client, "slow-run", TERMINAL, timeout=60)
            ended_in = since(cut_at)
            await asyncio.sleep(max(0.0, CLIENT_CUT_S - since(cut_at)))
            partitioned.network.heal(CLIENT)
            healed_at = time.monotonic()
            ran = json.loads(await asyncio.to_thread(runner.wait_for_line, '"run"', 60))
            ran_in = since(healed_at)
            waited = json.loads(await asyncio.to_thread(runner.wait_for_line, '"wait"', 40))
            events = [r.event for r in await task_events(client, "slow-run")]
        assert runner.proc.wait(timeout=20) == 0, runner.stderr_lines[-20:]
    await load.stop()
    counts = await tally(partitioned.urls, ["run", "slow-run"], load.accepted | {"slow-run"})
    report(
        f"client cut during run for {CLIENT_CUT_S:g} s (its task ended {ended_in:.1f} s into "
        f"the cut): run returned {ran['run']} {ran_in:.1f} s after the heal, then wait "
        f"{waited['wait']}; {counts.line()}; {load.retried()}"
    )
    assert ran == {"run": "succeeded", "attempts": 1}, ran
    assert waited["wait"] == "succeeded", waited
    assert waited["result"]["stdout"].strip() == "finished", waited
    assert check_one_end("slow-run", 1, events) == 0, events
    assert counts.duplicates == 0, counts.problems
    assert counts.ended == counts.stored >= counts.accepted, counts.line()
    assert counts.states == {"succeeded": counts.stored}, counts.line()

"""Issue 8 on the compose topology: ``kill -9`` one of three nats-servers under load.

docs/design.md, Guarantees: every accepted task reaches exactly one terminal state;
the coordinators and nodes were given all three URLs and reconnect by themselves; R3
streams keep a quorum.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

import eventsrc
from eventsrc.commands.views import TaskInfo
from eventsrc.errors import (
    NotCaughtUpError,
    NotLeaderError,
    ServerUnavailableError,
    StoreError,
)
from eventsrc.events import submission_of
from eventsrc.ports import EVENTS_STREAM
from tests.deploy.topology import REPLICAS, Topology, check_one_end
from tests.e2e.conftest import TERMINAL, poll, stored_task_ids, task_events, wait_state
from tests.nats_cluster import NatsCluster
from tests.waiting import until_awaited

BURST = 60
KILL_AFTER = 20
PACE_S = 0.1
SUBMIT_DEADLINE_S = 40.0
"""JetStream elects a new stream leader 4-9 s after losing one (raft election timeout)."""
# StoreError: the coordinator's append timed out while the stream had no leader; it may
# or may not be stored, which the resubmission with the same id sorts out.
RETRYABLE = (ServerUnavailableError, NotLeaderError, NotCaughtUpError, StoreError)
NODES = ("node-1", "node-2", "node-3")


# ~15-30 s: the election takes 4-9 s; nodes keep retrying a result for 20 s before
# leaving it to redelivery after the consumer's 30 s ack wait.
async def test_every_accepted_task_ends_once_when_a_nats_server_dies(
    nats_cluster: NatsCluster, tmp_path: Path
) -> None:
    with ExitStack() as stack:
        topology = Topology(nats_cluster, tmp_path, stack)
        topology.start_coordinator("coordinator-1")
        await topology.start_nodes(NODES)
        # The most disruptive server to lose: the one leading the events stream.
        leader = (await topology.stream_infos())[EVENTS_STREAM].cluster
        assert leader is not None and leader.leader is not None
        victim = int(leader.leader.removeprefix("nats-"))

        accepted: dict[str, TaskInfo] = {}
        retries: Counter[str] = Counter()
        started = time.monotonic()
        killed_at = 0.0

        async def submit(i: int) -> None:
            nonlocal killed_at
            task_id = f"load-{i:02d}"
            errors: list[Exception] = []

            async def taken() -> bool:
                try:
                    # A connection per try, as the CLI makes: a one-shot client does not
                    # reconnect; its next connect picks a live server from the list.
                    async with eventsrc.connect(topology.urls, project=False) as client:
                        accepted[task_id] = await client.submit(
                            "word-count", {"text": "x " * i}, task_id=task_id
                        )
                except RETRYABLE as err:
                    # Same id, same request: a resubmission returns the stored task, so a
                    # try whose reply was lost is not accepted twice.
                    retries[type(err).__name__] += 1
                    errors.append(err)
                    return False
                return True

            # No pause between tries: each one's connect already takes its time.
            await until_awaited(
                taken,
                lambda: f"{task_id} to be accepted (last error: {errors[-1]!r})",
                SUBMIT_DEADLINE_S,
                0,
            )
            if len(accepted) == KILL_AFTER:
                nats_cluster.kill(victim)
                killed_at = time.monotonic() - started

        # A steady load, not a burst: submissions keep coming through the outage.
        async with asyncio.TaskGroup() as group:
            for i in range(BURST):
                group.create_task(submit(i))
                await asyncio.sleep(PACE_S)
        assert not nats_cluster.server(victim).running
        submitted_in = time.monotonic() - started

        async with eventsrc.connect(topology.urls, project=False) as client:
            stored = await stored_task_ids(client)
            assert set(accepted) <= stored
            late = 0
            for task_id in sorted(stored):
                task = await wait_state(client, task_id, TERMINAL, timeout=60)
                assert task.state == "succeeded", task
                assert task.result["words"] == int(task_id.removeprefix("load-")), task
                events = [r.event for r in await task_events(client, task_id)]
                late += check_one_end(task_id, task.attempts, events)
        ended_in = time.monotonic() - started
        print(
            f"\nkilled nats-{victim} (events stream leader) at {killed_at:.1f} s, after "
            f"{KILL_AFTER} accepted: {len(accepted)} accepted after {dict(retries)} retries, "
            f"{len(stored)} stored, all ended exactly once ({late} late results of requeued "
            f"attempts kept for audit); submitted in {submitted_in:.1f} s, all ended at "
            f"{ended_in:.1f} s"
        )
        assert len(accepted) == BURST

        # The programs rode through on the other two servers: nothing restarted them.
        for child in (*topology.coordinators.values(), *topology.nodes.values()):
            assert child.proc.poll() is None, child.stderr_lines[-10:]
        assert (await topology.cli("tasks", "--json")).json["tasks"] == []

        # The server comes back on its store and catches up: three current replicas again.
        nats_cluster.start(victim)

        async def replicas_current() -> bool:
            for info in (await topology.stream_infos()).values():
                peers = info.cluster.replicas if info.cluster else None
                if not peers or len(peers) != REPLICAS - 1:
                    return False
                if not all(peer.current for peer in peers):
                    return False
            return True

        await poll(replicas_current, "three current replicas after the restart")


CALLS = 8
TASKS_PER_CALL = 20
"""20 events a call (a task placed at once is one event, one that waits its submission):
each call stored as one atomic batch."""


async def test_every_task_of_atomic_batches_ends_once_when_the_stream_leader_dies(
    nats_cluster: NatsCluster, tmp_path: Path
) -> None:
    with ExitStack() as stack:
        topology = Topology(nats_cluster, tmp_path, stack)
        topology.start_coordinator("coordinator-1")
        await topology.start_nodes(NODES)
        leader = (await topology.stream_infos())[EVENTS_STREAM].cluster
        assert leader is not None and leader.leader is not None
        victim = int(leader.leader.removeprefix("nats-"))
        accepted: set[str] = set()
        retries: Counter[str] = Counter()
        calls_done = 0

        async def submit_call(call: int) -> None:
            nonlocal calls_done
            specs = [
                {"skills": "word-count", "payload": {"text": "x " * n}, "task_id": f"b{call}-{n}"}
                for n in range(TASKS_PER_CALL)
            ]
            errors: list[Exception] = []

            async def taken() -> bool:
                try:
                    async with eventsrc.connect(topology.urls, project=False) as client:
                        got = await client.submit_many(specs)
                except RETRYABLE as err:
                    retries[type(err).__name__] += 1
                    errors.append(err)  # the same call again: stored tasks are kept once
                    return False
                accepted.update(t.task_id for t in got)
                return True

            await until_awaited(
                taken, lambda: f"call {call} to be accepted ({errors[-1:]!r})", SUBMIT_DEADLINE_S, 0
            )
            calls_done += 1
            if calls_done == 2:
                nats_cluster.kill(victim)

        async with asyncio.TaskGroup() as group:
            for call in range(CALLS):
                group.create_task(submit_call(call))
                await asyncio.sleep(PACE_S * 3)
        assert not nats_cluster.server(victim).running
        assert len(accepted) == CALLS * TASKS_PER_CALL

        async with eventsrc.connect(topology.urls, project=False) as client:
            stored = await stored_task_ids(client)
            assert stored == accepted
            for task_id in sorted(stored):
                task = await wait_state(client, task_id, TERMINAL, timeout=60)
                assert task.state == "succeeded", task
                events = [r.event for r in await task_events(client, task_id)]
                check_one_end(task_id, task.attempts, events)
                submissions = [e for e in events if submission_of(e) is not None]
                assert len(submissions) == 1, (task_id, events)
        print(f"\nkilled nats-{victim} after 2 of {CALLS} calls: retries {dict(retries)}")
        nats_cluster.start(victim)

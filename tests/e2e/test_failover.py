"""Coordinator fail-over on real processes: two coordinators, one lease, the leader
killed with SIGKILL.

docs/design.md, Leaders: several coordinators, one leader (lease in JetStream KV, epoch fencing);
standbys keep warm projections and serve the command API only while leading. Issue 8:
the standby leads within the lease time, no attempt is assigned twice to different
nodes, and every task submitted before and after the kill finishes.
"""

from __future__ import annotations

import asyncio
import re
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import nats
import pytest
from nats.aio.msg import Msg

import eventsrc
from eventsrc.client import Cluster
from eventsrc.errors import EventsrcError
from eventsrc.events import LeaderElected, TaskAssigned
from eventsrc.projections.apply import apply_record
from eventsrc.projections.state import ClusterState, Retention
from eventsrc.store.server import EmbeddedServer
from tests.conftest import MakeServer
from tests.e2e.conftest import DEADLINE_S, E2E, poll
from tests.processes import Program
from tests.waiting import until

LEASE_S = 2.0
KILLS = 3
SUBMITTERS = 4
LEADS = re.compile(r"(coordinator-\S+) leads from epoch (\d+)")


@pytest.fixture
def bare(make_server: MakeServer, tmp_path: Path) -> Iterator[E2E]:
    """A fresh server and no coordinator yet; teardown kills whatever the test started."""
    server: EmbeddedServer = make_server()
    with ExitStack() as stack:
        yield E2E(server, tmp_path, stack)


def start_coordinator(cluster: E2E) -> Program:
    return cluster.start_coordinator(extra=["--lease-s", str(LEASE_S)])


async def leader_of(program: Program) -> tuple[str, int]:
    """The coordinator id and epoch a process logged when it took the lead."""

    async def probe() -> tuple[str, int] | None:
        for line in program.stderr_lines:
            match = LEADS.search(line)
            if match:
                return match.group(1), int(match.group(2))
        return None

    found: tuple[str, int] = await poll(probe, "a 'leads from epoch' log line")
    return found


async def api_responders(url: str) -> int:
    """How many processes answer NATS service discovery for the eventsrc API."""
    nc = await nats.connect(url)
    try:
        inbox = nc.new_inbox()
        replies: list[bytes] = []

        async def collect(msg: Msg) -> None:
            replies.append(msg.data)

        sub = await nc.subscribe(inbox, cb=collect)
        await nc.publish("$SRV.PING.eventsrc", b"", reply=inbox)
        await until(lambda: replies, "an answer to service discovery", DEADLINE_S)
        # Time passing is the point here: a second responder, were one on, would answer
        # within this quiet window (no condition can say "nobody else will answer").
        await asyncio.sleep(0.5)
        await sub.unsubscribe()
        return len(replies)
    finally:
        await nc.close()


async def submit_retrying(client: Cluster, task_id: str, code: str) -> None:
    """Submit until a leader accepts (during a fail-over nobody answers for a moment)."""

    async def attempt() -> bool:
        try:
            await client.submit("python", {"code": code}, task_id=task_id)
        except EventsrcError:
            return False
        return True

    await poll(attempt, f"a leader accepting {task_id}")


async def test_the_standby_takes_over_when_the_leader_is_killed(bare: E2E) -> None:
    first = start_coordinator(bare)
    first_id, first_epoch = await leader_of(first)
    second = start_coordinator(bare)

    async def standby_lines() -> list[str]:
        # stderr is read by a thread of its own: the line may trail the ready line.
        return [line for line in second.stderr_lines if "standby:" in line]

    lines = await poll(standby_lines, "the standby's log line")
    assert len(lines) == 1 and first_id in lines[0], second.stderr_lines
    assert await api_responders(bare.url) == 1, "a standby answers the API"

    await bare.start_nodes({"node_a": ["python"], "node_b": ["python"]})
    async with eventsrc.connect(bare.url, project=False) as client:
        slow = "import time\ntime.sleep(0.7)\nprint('{}')\n"
        before = [f"before-{i:02d}" for i in range(12)]
        for task_id in before:
            await client.submit("python", {"code": slow.format(task_id)}, task_id=task_id)
        # Some are running, some waiting for a slot (capacity 4 each) when it dies.
        first.proc.kill()
        killed = time.monotonic()
        first.proc.wait(timeout=10)

        second_id, second_epoch = await leader_of(second)
        took = time.monotonic() - killed
        assert second_id != first_id and second_epoch == first_epoch + 1
        # Behaviour, not speed: within the lease time and a generous margin.
        assert took < LEASE_S + 10, f"the standby took {took:.1f} s to lead"
        status = await bare.api("status")
        assert status["leader"] == second_id and status["epoch"] == second_epoch
        assert await api_responders(bare.url) == 1

        after = [f"after-{i:02d}" for i in range(6)]
        for task_id in after:
            await submit_retrying(client, task_id, slow.format(task_id))
        for task_id in before + after:
            task = await client.wait(task_id, timeout=DEADLINE_S)
            assert task.state == "succeeded", task
            assert task.result["stdout"].strip() == task_id

        assigned, epochs = await accepted_assignments(client)
    assert epochs == [first_epoch, second_epoch]
    twice = {key: nodes for key, nodes in assigned.items() if len(nodes) != 1}
    assert not twice, f"attempts assigned to more than one node: {twice}"
    assert {task_id for task_id, _ in assigned} == set(before + after)
    unfinished = (await bare.cli("tasks", "--json")).json["tasks"]
    assert unfinished == [], unfinished


async def accepted_assignments(
    client: Cluster,
) -> tuple[dict[tuple[str, int], set[str]], list[int]]:
    """Replay the whole history as the projections do: for each (task, attempt) the
    nodes of the ``TaskAssigned`` events they accepted (not fenced, not illegal), and the
    leader epochs in order."""
    state = ClusterState(retention=Retention(max_finished=1_000_000))
    assigned: dict[tuple[str, int], set[str]] = {}
    epochs: list[int] = []
    async for record in client.store.read():
        problems = state.problems
        before = problems.undecodable + problems.illegal + problems.late + problems.fenced
        apply_record(state, record)
        after = problems.undecodable + problems.illegal + problems.late + problems.fenced
        event = getattr(record, "event", None)
        if isinstance(event, LeaderElected) and after == before:
            epochs.append(event.epoch or 0)
        if isinstance(event, TaskAssigned) and after == before:
            assigned.setdefault((event.task_id, event.attempt), set()).add(event.node_id)
    return assigned, epochs


def epochs_led(program: Program) -> list[int]:
    return [int(m.group(2)) for line in program.stderr_lines if (m := LEADS.search(line))]


async def test_repeated_leader_kills_under_load_lose_nothing(bare: E2E) -> None:
    coordinators = [start_coordinator(bare)]
    await leader_of(coordinators[0])
    coordinators.append(start_coordinator(bare))
    await bare.start_nodes({"node_a": ["python"], "node_b": ["python"]})
    submitted: list[str] = []
    numbers = iter(range(1_000_000))
    stop = asyncio.Event()

    async with eventsrc.connect(bare.url, project=False) as client:

        async def load() -> None:
            # Submissions in flight when the kills land; each retried until a leader
            # accepts it (resubmitting an id with the same request is idempotent).
            while not stop.is_set():
                task_id = f"load-{next(numbers):03d}"
                await submit_retrying(client, task_id, f"print('{task_id}')")
                submitted.append(task_id)

        loaders = [asyncio.create_task(load()) for _ in range(SUBMITTERS)]
        for _ in range(KILLS):
            await poll(_more_than(submitted, len(submitted) + 10), "submissions under this leader")
            leader = max(coordinators, key=lambda c: max(epochs_led(c), default=0))
            epoch = max(epochs_led(leader))
            leader.proc.kill()
            leader.proc.wait(timeout=10)
            coordinators.remove(leader)
            # A fresh standby for the next round (started off the loop: load goes on).
            coordinators.append(await asyncio.to_thread(start_coordinator, bare))

            async def led_after(epoch: int = epoch) -> bool:
                return any(max(epochs_led(c), default=0) > epoch for c in coordinators)

            await poll(led_after, f"a leader after epoch {epoch}")
        stop.set()
        await asyncio.gather(*loaders)

        for task_id in submitted:
            task = await client.wait(task_id, timeout=DEADLINE_S)
            assert task.state == "succeeded", task
        assigned, epochs = await accepted_assignments(client)

    print(f"{len(submitted)} tasks submitted across {KILLS} leader kills; leader epochs {epochs}")
    assert len(epochs) == KILLS + 1
    twice = {key: nodes for key, nodes in assigned.items() if len(nodes) != 1}
    assert not twice, f"attempts assigned to more than one node: {twice}"
    assert {task_id for task_id, _ in assigned} == set(submitted)


def _more_than(items: list[str], count: int) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        return len(items) >= count

    return probe


async def test_a_frozen_leader_that_wakes_up_after_losing_its_lease_cannot_double_assign(
    bare: E2E,
) -> None:
    # SIGSTOP: a leader that hangs (a VM pause, a stuck event loop) past its lease and
    # then carries on, its timers all overdue at once and its projection stale.
    old = start_coordinator(bare)
    _, old_epoch = await leader_of(old)
    new = start_coordinator(bare)
    await bare.start_nodes({"node_a": ["python"], "node_b": ["python"]})
    slow = "import time\ntime.sleep(0.3)\nprint('{}')\n"

    async with eventsrc.connect(bare.url, project=False) as client:
        # More than the nodes' 8 slots: the frozen leader's last view has a queue.
        burst = [f"burst-{i:02d}" for i in range(16)]
        for task_id in burst:
            await client.submit("python", {"code": slow.format(task_id)}, task_id=task_id)
        old.proc.send_signal(signal.SIGSTOP)
        try:
            new_id, new_epoch = await leader_of(new)
            assert new_epoch == old_epoch + 1
            for task_id in burst:  # the new leader works the queue off
                assert (await client.wait(task_id, timeout=DEADLINE_S)).state == "succeeded"
        finally:
            old.proc.send_signal(signal.SIGCONT)

        async def stepped_down() -> bool:
            return any("stopped leading" in line for line in old.stderr_lines)

        await poll(stepped_down, "the woken leader to step down")
        after = [f"after-{i:02d}" for i in range(10)]
        for task_id in after:
            await submit_retrying(client, task_id, slow.format(task_id))
        for task_id in after:
            assert (await client.wait(task_id, timeout=DEADLINE_S)).state == "succeeded"
        assigned, epochs = await accepted_assignments(client)
        status = await bare.api("status")

    assert status["leader"] == new_id and epochs == [old_epoch, new_epoch]
    assert await api_responders(bare.url) == 1, "the woken leader still serves"
    twice = {key: nodes for key, nodes in assigned.items() if len(nodes) != 1}
    assert not twice, f"attempts assigned to more than one node: {twice}"
    assert {task_id for task_id, _ in assigned} == set(burst + after)


async def test_a_stopped_leader_hands_over_without_waiting_for_its_lease(bare: E2E) -> None:
    long_lease = ["--lease-s", "30"]
    first = bare.start_coordinator(extra=long_lease)
    first_id, epoch = await leader_of(first)
    second = bare.start_coordinator(extra=long_lease)

    async def says_standby() -> bool:  # its stderr is read by a thread: may lag a little
        return any("standby:" in line for line in second.stderr_lines)

    await poll(says_standby, "the second coordinator to say it stands by")

    stopped = time.monotonic()
    assert first.signal(signal.SIGTERM) == 0  # releases the lease on the way out
    second_id, second_epoch = await leader_of(second)
    took = time.monotonic() - stopped
    assert second_id != first_id and second_epoch == epoch + 1
    assert took < 5, f"the hand-over took {took:.1f} s of a 30 s lease"

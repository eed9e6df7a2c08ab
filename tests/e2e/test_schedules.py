"""Schedules on real processes: a real nats-server, coordinator processes killed with
SIGKILL, a real node, the CLI.

Every occurrence in the window fires exactly once across leader kills (counted from
the stored events, fenced ones included); a schedule whose coordinators were all down
fires its missed occurrences once (catch-up ``once``) or records a skip (``skip``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import eventsrc
from eventsrc.client import Cluster
from eventsrc.events import ScheduleAdded, ScheduleFired, ScheduleSkipped, TaskSubmitted
from eventsrc.store.server import EmbeddedServer
from tests.conftest import MakeServer
from tests.e2e.conftest import DEADLINE_S, E2E, poll
from tests.e2e.test_failover import epochs_led, leader_of, start_coordinator
from tests.processes import Program

PRINT = json.dumps({"code": "print('tick')"})


@pytest.fixture
def bare(make_server: MakeServer, tmp_path: Path) -> Iterator[E2E]:
    """A fresh server and no coordinator yet; teardown kills whatever the test started."""
    server: EmbeddedServer = make_server()
    with ExitStack() as stack:
        yield E2E(server, tmp_path, stack)


async def schedule_events(client: Cluster, name: str) -> list[Any]:
    """Every stored event of the schedule ``name`` and every submission it made, in order
    (whatever the projection makes of them: fenced or late ones count too)."""
    found: list[Any] = []
    async for record in client.store.read():
        event = getattr(record, "event", None)
        if isinstance(event, ScheduleAdded | ScheduleFired | ScheduleSkipped):
            if event.name == name:
                found.append(event)
        elif isinstance(event, TaskSubmitted) and event.schedule == name:
            found.append(event)
    return found


def fired(events: list[Any]) -> list[datetime]:
    return [e.occurrence for e in events if isinstance(e, ScheduleFired)]


async def until_fired(client: Cluster, name: str, count: int) -> list[Any]:
    async def probe() -> list[Any] | None:
        events = await schedule_events(client, name)
        return events if len(fired(events)) >= count else None

    found: list[Any] = await poll(probe, f"{count} occurrences of {name} fired")
    return found


async def led_after(coordinators: list[Program], epoch: int) -> None:
    async def probe() -> bool:
        return any(max(epochs_led(c), default=0) > epoch for c in coordinators)

    await poll(probe, f"a leader after epoch {epoch}")


async def test_each_occurrence_fires_exactly_once_across_two_leader_kills(bare: E2E) -> None:
    coordinators = [start_coordinator(bare)]
    await leader_of(coordinators[0])
    coordinators.append(start_coordinator(bare))
    await bare.start_nodes({"node_a": ["python"]})
    added = await bare.cli(
        "schedule", "add", "tick", "--every", "1s", "--skill", "python", "--payload", PRINT,
        "--json",
    )  # fmt: skip
    assert added.code == 0, added
    assert added.json["every_s"] == 1 and added.json["state"] == "active"

    async with eventsrc.connect(bare.url, project=False) as client:
        kills = 0
        failovers: list[tuple[datetime, datetime, int]] = []
        for _ in range(2):
            await until_fired(client, "tick", 3 + 4 * kills)
            leader = max(coordinators, key=lambda c: max(epochs_led(c), default=0))
            epoch = max(epochs_led(leader))
            leader.proc.kill()  # kill -9: no goodbye, the lease runs out on its own
            leader.proc.wait(timeout=10)
            killed_at = datetime.now(UTC)
            kills += 1
            coordinators.remove(leader)
            coordinators.append(await asyncio.to_thread(start_coordinator, bare))
            await led_after(coordinators, epoch)
            failovers.append((killed_at, datetime.now(UTC), epoch))
        events = await until_fired(client, "tick", 3 + 4 * kills + 3)
        paused = await bare.cli("schedule", "pause", "tick", "--json")
        assert paused.code == 0 and paused.json["state"] == "paused", paused
        events = await schedule_events(client, "tick")

        occurrences = fired(events)
        twice = {at: n for at, n in Counter(occurrences).items() if n > 1}
        assert not twice, f"occurrences fired more than once: {twice}"
        # Every occurrence of the window, none left out: consecutive seconds from the
        # first after the schedule was added to the last before the pause.
        (add,) = [e for e in events if isinstance(e, ScheduleAdded)]
        first = add.anchor.replace(microsecond=0) + timedelta(seconds=1)
        window = [first + timedelta(seconds=i) for i in range(len(occurrences))]
        assert occurrences == window
        assert not [e for e in events if isinstance(e, ScheduleSkipped)]
        # Each occurrence started one task that names it.
        submitted = [e for e in events if isinstance(e, TaskSubmitted)]
        assert [e.occurrence for e in submitted] == occurrences
        assert len({e.task_id for e in submitted}) == len(occurrences)
        # Both fail-overs were inside the window: occurrences that came while no leader
        # led were fired (late) by the next leader.
        by_epoch = {e.occurrence: e.epoch or 0 for e in events if isinstance(e, ScheduleFired)}
        for killed_at, led_at, old_epoch in failovers:
            gap = [at for at in occurrences if killed_at < at < led_at]
            assert gap, f"no occurrence between the kill at {killed_at} and {led_at}"
            assert all(by_epoch[at] > old_epoch for at in gap), (gap, by_epoch)
        late = sum(len([at for at in occurrences if k < at < led]) for k, led, _ in failovers)
        epochs = sorted(set(by_epoch.values()))
        assert len(epochs) == 3, epochs

        one = submitted[-1].task_id
        shown = await bare.cli("get", one, "--json")
        assert shown.code == 0, shown
        assert shown.json["schedule"] == "tick"
        assert datetime.fromisoformat(shown.json["occurrence"]) == occurrences[-1]
        listed = (await bare.cli("tasks", "--all", "--json")).json["tasks"]
        ours = [t for t in listed if t["schedule"] == "tick"]
        assert {t["task_id"] for t in ours} == {e.task_id for e in submitted}
        for task in submitted:
            done = await client.wait(task.task_id, timeout=DEADLINE_S)
            assert done.state == "succeeded", done

    print(
        f"{len(occurrences)} occurrences fired once each across 2 leader kills; "
        f"{late} of them came while no leader led and were fired by the next; epochs {epochs}"
    )
    await replay_is_clean(bare, "tick")


async def test_missed_occurrences_fire_once_or_are_skipped_after_all_coordinators_were_down(
    bare: E2E,
) -> None:
    coordinator = start_coordinator(bare)
    await leader_of(coordinator)
    await bare.start_nodes({"node_a": ["python"]})
    for name, mode in (("miss-once", "once"), ("miss-skip", "skip")):
        added = await bare.cli(
            "schedule", "add", name, "--every", "2s", "--grace", "1500ms", "--catch-up",
            mode, "--skill", "python", "--payload", PRINT,
        )  # fmt: skip
        assert added.code == 0, added
    async with eventsrc.connect(bare.url, project=False) as client:
        await until_fired(client, "miss-once", 1)
        await until_fired(client, "miss-skip", 1)
        coordinator.proc.kill()
        coordinator.proc.wait(timeout=10)
        down_at = datetime.now(UTC)
        await asyncio.sleep(7)  # no coordinator at all: 3 or 4 occurrences pass unfired
        await leader_of(start_coordinator(bare))
        up_at = datetime.now(UTC)
        await until_fired(client, "miss-once", 3)  # and after the catch-up, on time again

        once = await schedule_events(client, "miss-once")
        catch_ups = [e for e in once if isinstance(e, ScheduleFired) and e.missed]
        assert len(catch_ups) == 1, catch_ups
        (catch_up,) = catch_ups
        assert catch_up.missed >= 3
        assert down_at - timedelta(seconds=2) < catch_up.occurrence < up_at
        assert not [e for e in once if isinstance(e, ScheduleSkipped)]
        task = await client.wait(catch_up.task_id, timeout=DEADLINE_S)
        assert task.state == "succeeded" and task.schedule == "miss-once"

        await until_fired(client, "miss-skip", 3)
        skip = await schedule_events(client, "miss-skip")
        skips = [e for e in skip if isinstance(e, ScheduleSkipped)]
        assert len(skips) == 1, skips
        (skipped,) = skips
        assert skipped.count >= 3 and "missed by more than 1.5 s" in skipped.reason
        assert down_at - timedelta(seconds=2) < skipped.first <= skipped.last < up_at
        assert not [at for at in fired(skip) if skipped.first <= at <= skipped.last]
        for events in (once, skip):
            occurrences = fired(events)
            assert len(set(occurrences)) == len(occurrences)

        listed = await bare.cli("schedule", "list", "--json")
        rows = {s["name"]: s for s in listed.json["schedules"]}
        assert rows["miss-skip"]["skipped"] == skipped.count
        assert rows["miss-once"]["skipped"] == 0
        upcoming = await bare.cli("schedule", "next", "miss-skip", "--count", "3", "--json")
        times = [datetime.fromisoformat(t) for t in upcoming.json["next"]]
        assert [b - a for a, b in itertools.pairwise(times)] == [timedelta(seconds=2)] * 2
        removed = await bare.cli("schedule", "remove", "miss-skip")
        assert removed.code == 0 and "removed" in removed.out, removed
        gone = await bare.cli("schedule", "next", "miss-skip")
        assert gone.code == 1 and "no schedule miss-skip" in gone.err, gone
    await replay_is_clean(bare, "miss-once")


async def replay_tool(cluster: E2E, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "replay_tools", "--nats-url", cluster.url, *args]
    return await asyncio.to_thread(
        subprocess.run, argv, capture_output=True, text=True, timeout=120, check=False
    )


async def replay_is_clean(cluster: E2E, name: str) -> None:
    """``replay_tools verify`` passes on the stream; rebuild and audit show the schedule."""
    verified = await replay_tool(cluster, "verify")
    assert verified.returncode == 0, verified
    rebuilt = await replay_tool(cluster, "rebuild", "--json")
    assert rebuilt.returncode == 0, rebuilt
    assert name in {s["name"] for s in json.loads(rebuilt.stdout)["schedules"]}, rebuilt
    audited = await replay_tool(cluster, "audit", "schedule", name)
    assert audited.returncode == 0 and "ScheduleFired" in audited.stdout, audited

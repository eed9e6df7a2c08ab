"""``what-if``: the pure simulation on synthetic times, then the command on a real server."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import nats
import pytest

from eventsrc.events import Event
from eventsrc.ports import Record, StoredEvent
from eventsrc.store import JetStreamEventStore
from replay_tools.whatif import Options, Report, what_if
from tests.factories import T0
from tests.projections.builders import assigned, joined, leader, lifecycle, started, submitted
from tests.replay_tools.conftest import Run
from tests.replay_tools.history import expired, heartbeat


class Recorder:
    """Records with server times in seconds after T0, numbered per stream."""

    def __init__(self) -> None:
        self.events: list[Record] = []
        self.beats: list[Record] = []

    def at(self, seconds: float, *events: Event) -> None:
        for event in events:
            stream = self.beats if event.type == "Heartbeat" else self.events
            time = T0 + timedelta(seconds=seconds)
            stream.append(StoredEvent(len(stream) + 1, event.subject, time, event))

    def beat(self, node_id: str, *seconds: float, incarnation: str = "i1") -> None:
        for second in seconds:
            self.at(second, heartbeat(node_id, incarnation))
        self.beats.sort(key=lambda record: record.time if isinstance(record, StoredEvent) else T0)
        self.beats = [
            StoredEvent(n, r.subject, r.time, r.event)
            for n, r in enumerate(self.beats, 1)
            if isinstance(r, StoredEvent)
        ]

    def run(
        self,
        stale_after: float,
        *,
        sweep_interval: float = 5.0,
        heartbeat_interval: float | None = None,
        heartbeats_truncated: bool = False,
    ) -> Report:
        options = Options(stale_after, sweep_interval, heartbeat_interval, heartbeats_truncated)
        return what_if(self.events, self.beats, options)


def steps(start: float, stop: float, step: float = 1.0) -> list[float]:
    count = round((stop - start) / step)
    return [start + i * step for i in range(count + 1)]


@pytest.fixture
def slow_node() -> Recorder:
    """'slow' goes silent from 5 s to 9.5 s while running t1; 'fast' beats every second."""
    rec = Recorder()
    rec.at(0, leader(1), joined("fast"), joined("slow"))
    rec.at(1, submitted("t1"), assigned("t1", "slow"))
    rec.at(1.1, started("t1", "slow"))
    rec.at(2, *lifecycle("t0", "fast"))  # a finished task: retention must cope
    rec.beat("fast", *steps(0, 20))
    rec.beat("slow", *steps(0, 5), *steps(9.5, 19.5))
    return rec


def test_a_shorter_threshold_expires_the_slow_node(slow_node: Recorder) -> None:
    report = slow_node.run(3.0, sweep_interval=1.0)

    assert [(c.node_id, c.change) for c in report.changes] == [("slow", "newly_expired")]
    change = report.changes[0]
    assert change.would_be_at == T0 + timedelta(seconds=9)
    assert change.recorded_at is None
    assert change.last_heartbeat_at == T0 + timedelta(seconds=5)
    assert change.silent_s == pytest.approx(4.5)
    assert change.tasks == ("t1",)
    assert report.recorded_stale_after is None
    assert report.sweeps == 21


def test_a_threshold_above_the_gap_changes_nothing(slow_node: Recorder) -> None:
    assert slow_node.run(5.0, sweep_interval=1.0).changes == []


def test_a_longer_heartbeat_interval_expires_everyone(slow_node: Recorder) -> None:
    report = slow_node.run(2.0, sweep_interval=0.5, heartbeat_interval=3.0)

    assert {c.node_id for c in report.changes} == {"fast", "slow"}
    assert any("not longer than the heartbeat interval" in note for note in report.notes)


def test_a_shorter_heartbeat_interval_cannot_be_simulated(slow_node: Recorder) -> None:
    report = slow_node.run(30.0, heartbeat_interval=0.2)

    assert report.changes == []
    assert any("cannot be simulated" in note for note in report.notes)


@pytest.fixture
def recorded_expiry() -> Recorder:
    """n1 silent from 3 s; expired at the 6 s sweep with 2.5 s; back at 8 s, rejoins at 8.5."""
    rec = Recorder()
    rec.at(0, leader(1), joined("n1"), joined("n2"))
    rec.at(1, submitted("t1"), assigned("t1", "n1"))
    rec.beat("n1", *steps(0, 3), 8.0)
    rec.beat("n1", *steps(9, 12), incarnation="i2")
    rec.beat("n2", *steps(0, 12))
    last = T0 + timedelta(seconds=3)
    rec.at(
        6.01,
        expired("n1", swept_at=T0 + timedelta(seconds=6), stale_after=2.5, last_heartbeat_at=last),
    )
    rec.at(8.5, joined("n1", incarnation="i2"))
    return rec


@pytest.mark.parametrize(
    ("stale_after", "change", "would_be_at"),
    [
        (2.5, None, 6.0),
        (1.0, "expired_earlier", 4.5),
        (4.0, "expired_later", 7.5),
        (10.0, "not_expired", None),
    ],
)
def test_recorded_expiries_re_decided(
    recorded_expiry: Recorder, stale_after: float, change: str | None, would_be_at: float | None
) -> None:
    report = recorded_expiry.run(stale_after, sweep_interval=0.5)

    assert report.recorded_stale_after == 2.5
    if change is None:
        assert report.changes == []
        assert report.unchanged == [("n1", "i1")]
        return
    assert [(c.node_id, c.incarnation, c.change) for c in report.changes] == [("n1", "i1", change)]
    found = report.changes[0]
    assert found.recorded_at == T0 + timedelta(seconds=6)
    expected = T0 + timedelta(seconds=would_be_at) if would_be_at is not None else None
    assert found.would_be_at == expected
    assert found.tasks == ("t1",)
    if change == "not_expired":
        assert found.silent_s == pytest.approx(5.0)  # 3 s -> 8 s: under 10 s


def test_outside_the_retained_heartbeats_the_record_stands(recorded_expiry: Recorder) -> None:
    # Only heartbeats from 7 s on are still retained: nothing before can be re-decided.
    recorded_expiry.beats = [
        r
        for r in recorded_expiry.beats
        if isinstance(r, StoredEvent) and r.time >= T0 + timedelta(seconds=7)
    ]

    report = recorded_expiry.run(1.0, sweep_interval=0.5, heartbeats_truncated=True)

    assert report.changes == []
    assert any("1 recorded expiries kept as they were" in note for note in report.notes)


def test_no_events_no_changes() -> None:
    report = what_if([], [], Options(stale_after=1.0))

    assert report.changes == [] and report.window is None


async def _record_slow_node(url: str) -> None:
    # Real gaps in real server time: the heartbeats are paced, not synchronised.
    nc = await nats.connect(url)
    try:
        store = JetStreamEventStore(nc)
        await store.ensure_streams()
        for event in (
            leader(1),
            joined("fast"),
            joined("slow"),
            submitted("t1"),
            assigned("t1", "slow"),
            started("t1", "slow"),
        ):
            await store.append(event)
        for tick in range(17):
            await store.append(heartbeat("fast"))
            if tick < 2 or tick > 11:  # slow is silent for about 1 s
                await store.append(heartbeat("slow"))
            await asyncio.sleep(0.1)
    finally:
        await nc.close()


def test_what_if_on_a_recorded_history_names_the_slow_node(url: str, cli: Run) -> None:
    asyncio.run(_record_slow_node(url))

    shorter = cli("what-if", "--stale-after", "0.5", "--sweep-interval", "0.1", "--json", url=url)
    longer = cli("what-if", "--stale-after", "2", "--sweep-interval", "0.1", "--json", url=url)
    text = cli("what-if", "--stale-after", "0.5", "--sweep-interval", "0.1", url=url)

    assert shorter.code == 0, shorter.err
    changes = json.loads(shorter.out)["changes"]
    assert [(c["node_id"], c["change"], c["tasks"]) for c in changes] == [
        ("slow", "newly_expired", ["t1"])
    ]
    assert 0.5 < changes[0]["silent_s"] < 2
    assert json.loads(longer.out)["changes"] == []
    assert "slow" in text.out and "would expire (did not)" in text.out and "t1" in text.out


def test_what_if_refuses_a_non_positive_threshold(url: str, cli: Run) -> None:
    result = cli("what-if", "--stale-after", "0", url=url)

    assert result.code == 2
    assert len(result.err.splitlines()) == 1

"""Schedules, pure: ``next_fire`` on cron and intervals (time zones, DST changes), and
the leader's ``decide_fire``: each occurrence once, missed ones fired once or skipped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from eventsrc import cli
from eventsrc.commands.base import Origin
from eventsrc.commands.schedules import (
    AddSchedule,
    FireDue,
    ScheduleCommand,
    ShowSchedule,
    decide_add,
    decide_fire,
    decide_pause,
    decide_resume,
    upcoming,
)
from eventsrc.commands.tasks import Limits, SubmitTask, decide_submit
from eventsrc.commands.timing import next_fire, parse_duration, task_id_for
from eventsrc.errors import DomainError, InvalidRequestError, NotFoundError
from eventsrc.events import (
    CatchUp,
    Event,
    ScheduleFired,
    ScheduleSkipped,
    ScheduleTiming,
    TaskAssigned,
    TaskSpec,
    TaskSubmitted,
)
from eventsrc.projections.state import ClusterState
from eventsrc.writer import expected_seqs
from tests.projections.builders import Fold
from tests.unit.cluster import python_on

BERLIN = ZoneInfo("Europe/Berlin")
ORIGIN = Origin(producer="c1", epoch=1)
T = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)


def berlin(year: int, month: int, day: int, hour: int = 0, minute: int = 0, s: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, s, tzinfo=BERLIN)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, s: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, s, tzinfo=UTC)


def cron(expr: str, tz: str = "Europe/Berlin") -> ScheduleTiming:
    return ScheduleTiming(cron=expr, tz=tz)


def chain(timing: ScheduleTiming, after: datetime, count: int) -> list[datetime]:
    times = []
    for _ in range(count):
        after = next_fire(timing, after)
        times.append(after)
    return times


def test_an_interval_fires_on_multiples_of_itself_since_the_epoch() -> None:
    every = ScheduleTiming(every_s=30)
    assert next_fire(every, utc(2026, 6, 1, 12, 0, 7)) == utc(2026, 6, 1, 12, 0, 30)
    # Strictly after: an occurrence time itself gives the next one.
    assert next_fire(every, utc(2026, 6, 1, 12, 0, 30)) == utc(2026, 6, 1, 12, 1, 0)
    assert next_fire(every, berlin(2026, 6, 1, 14, 0, 29)) == utc(2026, 6, 1, 12, 0, 30)


def test_weekday_mornings_follow_berlin_local_time_across_the_spring_change() -> None:
    # Summer time starts on Sunday 2026-03-29: 09:00 local is 08:00 UTC before, 07:00 after.
    times = chain(cron("0 9 * * 1-5"), utc(2026, 3, 26, 12), 3)
    assert times == [utc(2026, 3, 27, 8), utc(2026, 3, 30, 7), utc(2026, 3, 31, 7)]


def test_a_time_skipped_by_spring_forward_fires_right_after_the_gap() -> None:
    # 02:30 does not exist on 2026-03-29 in Berlin (02:00 -> 03:00): cronsim fires at 03:00.
    times = chain(cron("30 2 * * *"), utc(2026, 3, 28, 12), 3)
    assert [t.astimezone(BERLIN).strftime("%m-%d %H:%M") for t in times] == [
        "03-29 03:00",
        "03-30 02:30",
        "03-31 02:30",
    ]
    assert times[0] == utc(2026, 3, 29, 1)


def test_a_time_repeated_by_fall_back_fires_once() -> None:
    # 02:30 happens twice on 2026-10-25 (03:00 CEST -> 02:00 CET): a daily job runs once.
    times = chain(cron("30 2 * * *"), utc(2026, 10, 24, 12), 2)
    assert times == [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]


def test_an_every_half_hour_cron_fires_in_both_repeated_hours() -> None:
    times = chain(cron("*/30 * * * *"), berlin(2026, 10, 25, 1, 50), 6)
    assert times == [
        utc(2026, 10, 25, 0, 0),  # 02:00 CEST
        utc(2026, 10, 25, 0, 30),
        utc(2026, 10, 25, 1, 0),  # 02:00 CET, the repeated hour
        utc(2026, 10, 25, 1, 30),
        utc(2026, 10, 25, 2, 0),  # 03:00 CET
        utc(2026, 10, 25, 2, 30),
    ]


def test_timing_errors_are_one_line_each() -> None:
    with pytest.raises(ValueError, match="either cron or every_s"):
        ScheduleTiming()
    with pytest.raises(ValueError, match="tz applies to cron"):
        ScheduleTiming(every_s=5, tz="Europe/Berlin")
    assert parse_duration("30s") == 30 and parse_duration("2m") == 120 and parse_duration("5") == 5
    with pytest.raises(InvalidRequestError, match="not a duration"):
        parse_duration("soon")
    state = ClusterState()
    bad = AddSchedule(name="x", timing=cron("61 * * * *"), task=TaskSpec(skills=("python",)))
    with pytest.raises(InvalidRequestError, match="cron '61 \\* \\* \\* \\*' is not valid"):
        decide_add(state, bad, stamp=ORIGIN.stamp(T))
    zone = bad.model_copy(update={"timing": cron("0 9 * * *", tz="Mars/Base")})
    with pytest.raises(InvalidRequestError, match="unknown time zone 'Mars/Base'"):
        decide_add(state, zone, stamp=ORIGIN.stamp(T))


def add(
    name: str = "tick", *, every_s: int = 10, catch_up: CatchUp = "skip", grace_s: float = 60.0
) -> tuple[ClusterState, Fold]:
    """A cluster with a python node and a schedule added at T, and its fold."""
    cluster = python_on("n1", capacity=100)
    timing = ScheduleTiming(every_s=every_s, catch_up=catch_up, grace_s=grace_s)
    command = AddSchedule(name=name, timing=timing, task=TaskSpec(skills=("python",)))
    cluster.run.fold(*decide_add(cluster.state, command, stamp=ORIGIN.stamp(T)))
    return cluster.state, cluster.run


def fire(state: ClusterState, now: datetime) -> tuple[Event, ...]:
    return decide_fire(state, FireDue(), stamp=ORIGIN.stamp(now))


def fired(events: tuple[Event, ...]) -> list[datetime]:
    return [e.occurrence for e in events if isinstance(e, ScheduleFired)]


def test_each_due_occurrence_fires_once_with_a_task_naming_it() -> None:
    state, run = add()
    assert fire(state, T + timedelta(seconds=9)) == ()
    events = fire(state, T + timedelta(seconds=25))
    assert fired(events) == [T + timedelta(seconds=10), T + timedelta(seconds=20)]
    submitted = [e for e in events if isinstance(e, TaskSubmitted)]
    assert [(e.task_id, e.schedule, e.occurrence) for e in submitted] == [
        ("tick-20260601T120010Z", "tick", T + timedelta(seconds=10)),
        ("tick-20260601T120020Z", "tick", T + timedelta(seconds=20)),
    ]
    # Each submission is caused by its fire decision and placed at once.
    fires = [e for e in events if isinstance(e, ScheduleFired)]
    assert [e.causation_id for e in submitted] == [e.event_id for e in fires]
    assert sum(isinstance(e, TaskAssigned) for e in events) == 2
    # Appends guard the schedule's aggregate with its last sequence (the add's).
    assert expected_seqs(state, events)["evt.schedule.tick"] == state.expected_seq(
        "evt.schedule.tick"
    )
    run.fold(*events)
    # Applied: nothing more is due at the same time, and a later pass fires only the next.
    assert fire(state, T + timedelta(seconds=25)) == ()
    assert fired(fire(state, T + timedelta(seconds=31))) == [T + timedelta(seconds=30)]
    schedule = state.schedules["tick"]
    assert (schedule.fired, schedule.pending_task, schedule.last_task_id) == (
        2,
        None,
        "tick-20260601T120020Z",
    )
    assert state.tasks["tick-20260601T120020Z"].schedule == "tick"


def test_a_second_decision_on_the_same_occurrence_is_late_and_changes_nothing() -> None:
    # Two coordinators deciding from the same state: the store refuses the second by its
    # expected sequence; were it stored anyway, the projection counts it late.
    state, run = add()
    first = fire(state, T + timedelta(seconds=11))
    second = fire(state, T + timedelta(seconds=11))
    run.fold(*first)
    run.fold(*[e for e in second if isinstance(e, ScheduleFired)])
    assert state.schedules["tick"].fired == 1
    assert state.problems.late == 1


def test_missed_occurrences_are_skipped_with_one_event() -> None:
    state, run = add(catch_up="skip", grace_s=5)
    # Down from T to T+62: occurrences 10..50 are more than 5 s late, 60 is on time.
    events = fire(state, T + timedelta(seconds=62))
    skips = [e for e in events if isinstance(e, ScheduleSkipped)]
    assert [(s.first, s.last, s.count) for s in skips] == [
        (T + timedelta(seconds=10), T + timedelta(seconds=50), 5)
    ]
    assert "missed by more than 5 s" in skips[0].reason
    assert fired(events) == [T + timedelta(seconds=60)]
    run.fold(*events)
    assert (state.schedules["tick"].skipped, state.schedules["tick"].fired) == (5, 1)


def test_missed_occurrences_fire_once_with_catch_up_once() -> None:
    state, run = add(catch_up="once", grace_s=5)
    events = fire(state, T + timedelta(seconds=57))
    fires = [e for e in events if isinstance(e, ScheduleFired)]
    # 10..50 missed: the latest of them fires once, standing for all five.
    assert [(f.occurrence, f.missed) for f in fires] == [(T + timedelta(seconds=50), 5)]
    run.fold(*events)
    assert fire(state, T + timedelta(seconds=58)) == ()


def test_a_long_outage_on_a_cron_schedule_is_one_skip() -> None:
    cluster = python_on("n1")
    timing = ScheduleTiming(cron="*/5 * * * *", tz="Europe/Berlin", grace_s=60)
    command = AddSchedule(name="five", timing=timing, task=TaskSpec(skills=("python",)))
    cluster.run.fold(*decide_add(cluster.state, command, stamp=ORIGIN.stamp(T)))
    now = T + timedelta(days=2, minutes=1)
    events = decide_fire(cluster.state, FireDue(), stamp=ORIGIN.stamp(now))
    skip = events[0]
    assert isinstance(skip, ScheduleSkipped)
    # Every 5 minutes for two days, but the last (a minute ago, within the grace): fired.
    assert (skip.first, skip.last, skip.count) == (
        T + timedelta(minutes=5),
        T + timedelta(days=2, minutes=-5),
        2 * 24 * 12 - 1,
    )
    assert fired(events) == [T + timedelta(days=2)]


def test_a_fire_whose_submission_was_cut_off_is_submitted_by_the_next_pass() -> None:
    state, run = add()
    events = fire(state, T + timedelta(seconds=11))
    # The leader died between its two appends: only the decision was stored.
    run.fold(*[e for e in events if isinstance(e, ScheduleFired)])
    assert state.schedules["tick"].pending_task == "tick-20260601T120010Z"
    repair = fire(state, T + timedelta(seconds=12))
    assert not fired(repair)
    (submitted,) = [e for e in repair if isinstance(e, TaskSubmitted)]
    assert (submitted.task_id, submitted.occurrence) == (
        "tick-20260601T120010Z",
        T + timedelta(seconds=10),
    )
    run.fold(*repair)
    assert state.schedules["tick"].pending_task is None
    assert fire(state, T + timedelta(seconds=12)) == ()


def test_a_paused_schedule_does_not_fire_and_resumes_from_now() -> None:
    state, run = add()
    pause = ScheduleCommand(name="tick")
    run.fold(*decide_pause(state, pause, stamp=ORIGIN.stamp(T + timedelta(seconds=1))))
    assert decide_pause(state, pause, stamp=ORIGIN.stamp(T)) == ()
    assert fire(state, T + timedelta(seconds=45)) == ()
    assert upcoming(state, ShowSchedule(name="tick"), now=T)["next"] == []
    run.fold(*decide_resume(state, pause, stamp=ORIGIN.stamp(T + timedelta(seconds=45))))
    # Occurrences while paused (10..40) never fire; 50 is the next.
    assert fire(state, T + timedelta(seconds=49)) == ()
    assert fired(fire(state, T + timedelta(seconds=51))) == [T + timedelta(seconds=50)]
    shown = upcoming(state, ShowSchedule(name="tick", count=2), now=T + timedelta(seconds=51))
    assert shown["next"] == [T + timedelta(seconds=60), T + timedelta(seconds=70)]


def test_adding_again_is_idempotent_and_a_different_one_conflicts() -> None:
    state, _ = add()
    timing = ScheduleTiming(every_s=10)
    same = AddSchedule(name="tick", timing=timing, task=TaskSpec(skills=("python",)))
    assert decide_add(state, same, stamp=ORIGIN.stamp(T)) == ()
    other = same.model_copy(update={"timing": ScheduleTiming(every_s=20)})
    with pytest.raises(DomainError, match="schedule tick exists with other settings"):
        decide_add(state, other, stamp=ORIGIN.stamp(T))
    with pytest.raises(NotFoundError, match="no schedule nope"):
        decide_pause(state, ScheduleCommand(name="nope"), stamp=ORIGIN.stamp(T))


def test_task_ids_name_the_schedule_and_the_utc_occurrence() -> None:
    assert task_id_for("tick", berlin(2026, 6, 1, 14, 0, 10)) == "tick-20260601T120010Z"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--every", "1.5s"], "error: --every 1.5s: give whole seconds, at least 1s"),
        (["--every", "soon"], "error: --every 'soon' is not a duration; give e.g. 30s"),
        (["--cron", "61 * * * *"], "error: cron '61 * * * *' is not valid (Bad minute)"),
        (["--cron", "0 9 * * *", "--tz", "Mars/Base"], "error: unknown time zone 'Mars/Base'"),
        (["--every", "5s", "--tz", "Europe/Berlin"], "error: --tz applies to --cron only"),
        (["--every", "5s", "--grace", "-1"], "error: --grace '-1' is not a duration"),
    ],
)
def test_bad_schedule_options_are_one_line_usage_errors(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Checked before connecting: no cluster is needed to refuse them.
    code = cli.main(["schedule", "add", "s1", "--skill", "python", *args])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(message) and len(err.splitlines()) == 1, err


def test_an_occurrence_the_cluster_refuses_is_recorded_as_skipped() -> None:
    cluster = python_on("n1", capacity=1).occupy("n1")
    timing = ScheduleTiming(every_s=10)
    add = AddSchedule(name="tick", timing=timing, task=TaskSpec(skills=("python",)))
    cluster.run.fold(*decide_add(cluster.state, add, stamp=ORIGIN.stamp(T)))
    waiting = SubmitTask(task_id="w1", spec=TaskSpec(skills=("python",)))
    cluster.run.fold(*decide_submit(cluster.state, waiting, stamp=ORIGIN.stamp(T)))
    assert cluster.state.waiting == {"w1"}

    full = FireDue(limits=Limits(max_queued=1))
    events = decide_fire(cluster.state, full, stamp=ORIGIN.stamp(T + timedelta(seconds=11)))
    (skip,) = events
    assert isinstance(skip, ScheduleSkipped)
    assert (skip.first, skip.count) == (T + timedelta(seconds=10), 1)
    assert skip.reason.startswith("task refused: 1 tasks are waiting (limit 1)")
    cluster.run.fold(*events)
    assert cluster.state.schedules["tick"].skipped == 1

"""The room rule of a bounded events stream, as pure code: what is kept for the tasks
already accepted, and when a new one is refused."""

from __future__ import annotations

import pytest

from eventsrc.commands.room import (
    DEFAULT_EVENT_BYTES,
    MARGIN,
    TAIL_EVENTS,
    check_room,
    reserve_bytes,
    should_look_again,
)
from eventsrc.errors import StoreFullError
from eventsrc.ports import StreamFill

LIMIT = 1_000_000


def fill(
    used: int, messages: int, *, limit: int = LIMIT, last_seq: int | None = None
) -> StreamFill:
    return StreamFill(
        used_bytes=used,
        messages=messages,
        max_bytes=limit,
        last_seq=messages if last_seq is None else last_seq,
    )


def test_the_reserve_is_the_margin_plus_the_unfinished_tasks_tails() -> None:
    assert reserve_bytes(fill(500_000, 1_000), unfinished=10) == (
        int(LIMIT * MARGIN) + 10 * TAIL_EVENTS * 500
    )
    assert reserve_bytes(fill(0, 0), unfinished=1) == int(LIMIT * MARGIN) + (
        TAIL_EVENTS * DEFAULT_EVENT_BYTES
    )


@pytest.mark.parametrize(
    ("used", "messages", "unfinished", "last_seq", "adding", "refused"),
    [
        (100_000, 200, 0, 200, 1, False),  # plenty of room
        (940_000, 1_880, 0, 1_880, 1, False),  # 940k + 500 + margin 50k + 1,500 < 1M
        (948_000, 1_896, 0, 1_896, 1, True),  # the margin is reached
        (500_000, 1_000, 300, 1_000, 1, True),  # room, but not for 300 unfinished tails
        (500_000, 1_000, 0, 1_900, 1, True),  # 900 events stored since the last look
        (500_000, 1_000, 0, 1_000, 300, True),  # a batch of 300 does not fit
        (500_000, 1_000, 0, 1_000, 200, False),  # one of 200 does
    ],
)
def test_a_new_task_is_refused_when_it_would_eat_into_the_reserve(
    used: int, messages: int, unfinished: int, last_seq: int, adding: int, refused: bool
) -> None:
    seen = fill(used, messages)
    if refused:
        with pytest.raises(StoreFullError, match="no room") as err:
            check_room(seen, unfinished=unfinished, last_seq=last_seq, adding=adding)
        assert "events_max_bytes" in str(err.value) and "\n" not in str(err.value)
    else:
        check_room(seen, unfinished=unfinished, last_seq=last_seq, adding=adding)


def test_a_stream_that_refused_takes_tasks_again_only_well_below_its_limit() -> None:
    # 940k + 500 + margin 50k + 1,500 = 992k: room, but within 2% of the 1M limit.
    seen = fill(940_000, 1_880)
    check_room(seen, unfinished=0, last_seq=1_880)
    with pytest.raises(StoreFullError, match="no room"):
        check_room(seen, unfinished=0, last_seq=1_880, refusing=True)
    check_room(fill(920_000, 1_840), unfinished=0, last_seq=1_840, refusing=True)  # 972k


def test_a_stream_without_a_limit_always_has_room() -> None:
    unbounded = fill(10**12, 10**9, limit=-1)
    check_room(unbounded, unfinished=10**6, last_seq=2 * 10**9)
    assert not should_look_again(unbounded, unfinished=10**6, last_seq=2 * 10**9)


def test_close_to_the_limit_every_submission_looks_again() -> None:
    assert not should_look_again(fill(100_000, 200), unfinished=0, last_seq=200)
    assert should_look_again(fill(460_000, 920), unfinished=0, last_seq=920)
    assert should_look_again(fill(100_000, 200), unfinished=0, last_seq=1_000)

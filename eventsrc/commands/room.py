"""Room for new tasks in a bounded events stream: the one rule that refuses submissions
before the stream is full, so that the tasks already accepted can still end.

The events stream discards *new* events when it reaches ``events_max_bytes``: nothing
stored is ever dropped, but then no assignment or result can be stored either, and
accepted tasks would wait until someone frees space. So submissions stop earlier,
while the stream still has room for what every unfinished task has yet to store
(about ``TAIL_EVENTS`` events each, at the stream's average event size) plus a margin
of ``MARGIN`` of the limit for everything else (elections, node events).

The coordinator looks at the stream now and then and estimates what was stored since
by the sequence (at the average event size). Once that estimate comes within
``LOOK_AGAIN_AT`` of the limit, it looks again before each submission (submissions at
the same time share a look), so the refusal rests on the stream's own figures, not on an
estimate.
"""

from __future__ import annotations

from typing import Final

from eventsrc.errors import StoreFullError
from eventsrc.ports import StreamFill

TAIL_EVENTS: Final = 3
"""Events an unfinished task still stores, at most as a rule: assigned, started, result."""
MARGIN: Final = 0.05
"""Share of the limit kept besides the unfinished tasks' events."""
LOOK_AGAIN_AT: Final = 0.5
"""Share of the limit (used plus reserve) from which every submission looks again."""
RESUME_BELOW: Final = 0.02
"""Share of the limit that must be free beyond what new tasks need before a stream that
refused them takes them again. Each task that ends frees the room kept for it; without
this, every end would let one submission in and refuse the next (flapping)."""
DEFAULT_EVENT_BYTES: Final = 1024
"""The event size assumed while the stream holds nothing to average over."""


def average_event_bytes(fill: StreamFill) -> int:
    """The stream's average stored event size (``DEFAULT_EVENT_BYTES`` while empty)."""
    return fill.used_bytes // fill.messages if fill.messages else DEFAULT_EVENT_BYTES


def reserve_bytes(fill: StreamFill, *, unfinished: int) -> int:
    """Bytes kept free for the tasks already accepted and the margin."""
    return int(fill.max_bytes * MARGIN) + unfinished * TAIL_EVENTS * average_event_bytes(fill)


def _needed(fill: StreamFill, unfinished: int, last_seq: int, adding: int) -> tuple[int, int]:
    """What is used now (estimated, with the new tasks' submissions) and what is kept."""
    average = average_event_bytes(fill)
    used = fill.used_bytes + (max(0, last_seq - fill.last_seq) + adding) * average
    return used, reserve_bytes(fill, unfinished=unfinished + adding)


def should_look_again(fill: StreamFill, *, unfinished: int, last_seq: int, adding: int = 1) -> bool:
    """Whether ``fill`` (as last looked at; ``last_seq`` the stream's last sequence
    known now) is too close to the limit to decide on without a fresh look."""
    if fill.max_bytes <= 0:
        return False
    used, reserve = _needed(fill, unfinished, last_seq, adding)
    return used + reserve >= fill.max_bytes * LOOK_AGAIN_AT


def check_room(
    fill: StreamFill, *, unfinished: int, last_seq: int, adding: int = 1, refusing: bool = False
) -> None:
    """Raise StoreFullError (one line: what is full, what to do) when ``adding`` new
    tasks would eat into the reserve of the events stream, ``fill`` as last looked at
    and ``last_seq`` the stream's last sequence known now; a stream without a limit
    always has room. ``refusing``: new tasks were refused last time, so they are taken
    again only ``RESUME_BELOW`` of the limit below it."""
    if fill.max_bytes <= 0:
        return
    used, reserve = _needed(fill, unfinished, last_seq, adding)
    if used + reserve < fill.max_bytes * (1 - RESUME_BELOW if refusing else 1):
        return
    what = "a new task" if adding == 1 else f"{adding:,} new tasks"
    raise StoreFullError(
        f"the events stream has no room for {what}: about {used:,} of its "
        f"{fill.max_bytes:,} bytes (events_max_bytes) would be used and {reserve:,} are "
        f"kept for {unfinished:,} unfinished and {adding:,} new tasks to end; nothing was "
        f"submitted — raise "
        f"events_max_bytes, or set events_max_age so old history ages out (export it "
        f"first), then submit again"
    )

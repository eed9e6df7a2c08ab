"""Event-decoder fuzzing (pure, no server).

``decode`` of random bytes, random JSON and mutated valid events raises nothing but
``UndecodableEventError`` (``UnknownEventTypeError`` included). Whatever it does decode,
``apply`` folds into a plausible state without raising, and the state stays consistent:
its invariants hold, it hashes, and a snapshot of it restores to the same hash.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from eventsrc.errors import UndecodableEventError
from eventsrc.events import EVENT_CLASSES, Event, decode, encode
from eventsrc.projections.apply import apply, apply_undecodable
from eventsrc.projections.canonical import state_hash
from eventsrc.projections.snapshot import encode_snapshot, restore_snapshot, snapshot_document
from eventsrc.projections.state import ClusterState, Retention
from tests.factories import T0, one_of_each
from tests.hostile.conftest import EXAMPLES, FUZZ
from tests.hostile.strategies import (
    OPERATIONS,
    big_numbers,
    depth_bombs,
    dump,
    hostile_values,
    mutated,
    paths,
)
from tests.projections.test_replay_properties import Record, check_invariants, histories, replay

PURE = settings(FUZZ, max_examples=EXAMPLES * 5)
"""Pure tests are cheap: five times the examples of the server tests."""

TEMPLATES: list[dict[str, Any]] = [orjson.loads(encode(event)) for event in one_of_each()]
"""One valid event of every type, as JSON, to mutate."""

SUBJECTS = ["", "evt.task.t1.lifecycle", "evt.task.t1.from.n1", "evt.node.n1", "hb.n1"]

plausible: st.SearchStrategy[Any] = st.sampled_from(
    ["t1", "n1", "n2", "python", "i1", "", "2026-01-01T00:00:00Z", "coordinator", *EVENT_CLASSES]
) | st.sampled_from([0, 1, 2, 3, -1, 10**18, 1e308, 0.5, None, True, False, [], {}])
"""Values that often still validate, so that mutated events reach ``apply``."""


@dataclass(frozen=True)
class Mutation:
    """A valid event's JSON with its type maybe swapped and one value changed."""

    template: int
    new_type: str | None
    path: tuple[Any, ...]
    operation: str
    value: Any

    def raw(self) -> bytes:
        document = dict(TEMPLATES[self.template])
        if self.new_type is not None:
            document["type"] = self.new_type
        return dump(mutated(document, self.path, self.operation, self.value)).encode()


@st.composite
def mutations(draw: st.DrawFn) -> Mutation:
    index = draw(st.integers(0, len(TEMPLATES) - 1))
    return Mutation(
        template=index,
        new_type=draw(st.none() | st.sampled_from(sorted(EVENT_CLASSES))),
        path=draw(st.sampled_from(paths(TEMPLATES[index])[1:])),
        operation=draw(OPERATIONS),
        value=draw(st.one_of(plausible, big_numbers, depth_bombs, hostile_values)),
    )


def decode_or_refuse(raw: bytes, subject: str = "") -> Event | None:
    """The decoded event, or None when the codec refused it the documented way."""
    try:
        event = decode(raw, seq=7, subject=subject)
    except UndecodableEventError as err:
        assert err.seq == 7 and err.raw == raw
        assert "\n" not in str(err)
        return None
    return event


def fold_and_check(records: list[Record], events: list[Event | None], raws: list[bytes]) -> None:
    """Apply the decoded events (undecodable ones as the runner would) on top of a
    plausible history; the state must stay consistent and snapshot-able."""
    state = replay(records, ClusterState(retention=Retention(max_finished=3)))
    seq = state.last_seq
    time = max((at for _, _, at in records), default=T0)
    for event, raw in zip(events, raws, strict=True):
        seq += 1
        time += timedelta(seconds=1)
        if event is None:
            apply_undecodable(state, UndecodableEventError("fuzz", seq=seq, raw=raw))
        else:
            apply(state, event, seq=seq, time=time)
        check_invariants(state)
    assert state.last_seq == seq
    digest = state_hash(state)
    restored, why = restore_snapshot(encode_snapshot(snapshot_document(state)))
    assert restored is not None, why
    assert state_hash(restored) == digest


@PURE
@given(raw=st.binary(max_size=2000), subject=st.sampled_from(SUBJECTS))
def test_random_bytes_are_refused_or_decoded_never_a_crash(raw: bytes, subject: str) -> None:
    decode_or_refuse(raw, subject)


@PURE
@given(value=hostile_values, subject=st.sampled_from(SUBJECTS))
def test_random_json_is_refused_or_decoded_never_a_crash(value: Any, subject: str) -> None:
    decode_or_refuse(dump(value).encode(), subject)


@PURE
@given(mutation=mutations())
def test_mutated_events_are_refused_or_applied_never_a_crash(mutation: Mutation) -> None:
    raw = mutation.raw()
    fold_and_check([], [decode_or_refuse(raw)], [raw])


@FUZZ
@given(records=histories(noise_size=3), batch=st.lists(mutations(), min_size=1, max_size=6))
def test_whatever_decodes_applies_without_breaking_the_state(
    records: list[Record], batch: list[Mutation]
) -> None:
    raws = [mutation.raw() for mutation in batch]
    fold_and_check(records, [decode_or_refuse(raw) for raw in raws], raws)


def test_mutated_events_often_decode_so_the_fuzz_reaches_apply() -> None:
    decoded: list[bool] = []  # this test's own tally: no state outlives a test

    @PURE
    @given(mutation=mutations())
    def fuzz(mutation: Mutation) -> None:
        decoded.append(decode_or_refuse(mutation.raw()) is not None)

    fuzz()
    assert len(decoded) >= EXAMPLES and any(decoded), (len(decoded), sum(decoded))

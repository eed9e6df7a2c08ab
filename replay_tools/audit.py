"""``audit task|node|skill|schedule ID``: every event touching one thing, in stream order.

Each entry carries the server time, the producer, a one-line summary, the causation
link (which earlier event led to it) and, where the projection would not apply it, why
(late, illegal, fenced). ``evt.cluster`` is read along so that fencing is judged as the
projections judge it, but it is not shown.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal

from eventsrc.errors import NotFoundError, UndecodableEventError
from eventsrc.events import (
    Event,
    NodeCapabilitiesReported,
    SkillInstanceExpired,
    SkillInstanceRegistered,
    SkillInstanceUnregistered,
    validate_token,
)
from eventsrc.events.subjects import (
    ALL_NODES_FILTER,
    CLUSTER_SUBJECT,
    assignments_filter,
    node_subject,
    reports_filter,
    schedule_subject,
    skill_subject,
    task_filter,
    task_id_of,
)
from eventsrc.ports import Record
from eventsrc.projections.apply import apply_record
from eventsrc.projections.state import ClusterState, Retention
from eventsrc.runtime import format_table as table
from eventsrc.store import JetStreamEventStore
from replay_tools.common import iso, require_stream, short_time
from replay_tools.render import summary

Kind = Literal["task", "node", "skill", "schedule"]

_WHAT = {"task": "task id", "node": "node id", "skill": "skill name", "schedule": "schedule name"}


@dataclass(frozen=True, slots=True)
class Entry:
    """One event of a timeline."""

    seq: int
    time: datetime | None
    subject: str
    type: str
    producer: str
    summary: str
    event_id: str | None = None
    causation_id: str | None = None
    caused_by_seq: int | None = None
    caused_by_type: str | None = None
    correlation_id: str | None = None
    epoch: int | None = None
    problem: str | None = None


def subjects_for(kind: Kind, ident: str) -> list[str]:
    """The subject filters to read (``evt.cluster`` included for fencing)."""
    if kind == "task":
        return [CLUSTER_SUBJECT, task_filter(ident)]
    if kind == "node":
        return [
            CLUSTER_SUBJECT,
            node_subject(ident),
            assignments_filter(ident),
            reports_filter(ident),
        ]
    if kind == "schedule":
        return [CLUSTER_SUBJECT, schedule_subject(ident)]
    return [CLUSTER_SUBJECT, skill_subject(ident), ALL_NODES_FILTER]


def _shown(kind: Kind, ident: str) -> Callable[[Record], bool]:
    """Which records belong on the timeline."""

    def for_skill(record: Record) -> bool:
        if record.subject == skill_subject(ident):
            return True
        if isinstance(record, UndecodableEventError):
            return False
        event = record.event
        if isinstance(
            event, SkillInstanceRegistered | SkillInstanceUnregistered | SkillInstanceExpired
        ):
            return event.skill == ident
        if isinstance(event, NodeCapabilitiesReported):
            return any(skill.name == ident for skill in event.unavailable)
        return False

    if kind == "skill":
        return for_skill
    return lambda record: record.subject != CLUSTER_SUBJECT


def _judged(kind: Kind, subject: str) -> bool:
    # A node's timeline holds task events without their tasks' other events, so the
    # projection's verdict on those would be meaningless.
    return kind != "node" or task_id_of(subject) is None


async def audit(store: JetStreamEventStore, kind: Kind, ident: str) -> list[Entry]:
    """The timeline of a task, node or skill; NotFoundError when nothing mentions it."""
    validate_token(ident, what=_WHAT[kind])
    await require_stream(store)
    shown = _shown(kind, ident)
    state = ClusterState(retention=Retention(max_finished=1_000_000))
    entries: list[Entry] = []
    by_id: dict[str, Entry] = {}
    async for record in store.read(subjects=subjects_for(kind, ident)):
        before = _problem_count(state)
        apply_record(state, record)
        if not shown(record):
            continue
        problem = None
        if _problem_count(state) != before and _judged(kind, record.subject):
            problem = state.problems.recent[-1].split(": ", 1)[-1]
        entry = _entry(record, problem, by_id)
        entries.append(entry)
        if entry.event_id:
            by_id[entry.event_id] = entry
    if not entries:
        raise NotFoundError(
            f"no events for {kind} {ident}; check the {_WHAT[kind]} "
            f"(`replay_tools rebuild` lists what the stream knows)"
        )
    return entries


def _problem_count(state: ClusterState) -> int:
    problems = state.problems
    return problems.undecodable + problems.illegal + problems.late + problems.fenced


def _entry(record: Record, problem: str | None, by_id: dict[str, Entry]) -> Entry:
    if isinstance(record, UndecodableEventError):
        return Entry(
            seq=record.seq,
            time=None,
            subject=record.subject,
            type="(undecodable)",
            producer="?",
            summary=record.reason,
            problem="undecodable: skipped by every reader",
        )
    event: Event = record.event
    cause = by_id.get(event.causation_id or "")
    return Entry(
        seq=record.seq,
        time=record.time,
        subject=record.subject,
        type=event.type,
        producer=event.producer,
        summary=summary(event),
        event_id=event.event_id,
        causation_id=event.causation_id,
        caused_by_seq=cause.seq if cause else None,
        caused_by_type=cause.type if cause else None,
        correlation_id=event.correlation_id,
        epoch=event.epoch,
        problem=problem,
    )


def to_json(kind: Kind, ident: str, entries: list[Entry]) -> dict[str, Any]:
    """The ``--json`` document."""
    return {
        "kind": kind,
        "id": ident,
        "events": [{**asdict(entry), "time": iso(entry.time)} for entry in entries],
    }


def _causation(entry: Entry) -> str:
    if entry.caused_by_seq is not None:
        return f"seq {entry.caused_by_seq} {entry.caused_by_type}"
    return entry.causation_id[:12] if entry.causation_id else "-"


def to_text(kind: Kind, ident: str, entries: list[Entry]) -> str:
    """A table per event, then the projection's verdict on events it would not apply."""
    rows = [
        [
            entry.seq,
            short_time(entry.time),
            entry.type,
            entry.producer,
            (entry.event_id or "-")[:12],
            _causation(entry),
            entry.summary + (f"  [{entry.problem}]" if entry.problem else ""),
        ]
        for entry in entries
    ]
    header = ["SEQ", "TIME", "TYPE", "PRODUCER", "EVENT", "CAUSED BY", "SUMMARY"]
    return f"{kind} {ident}: {len(entries)} events\n" + table(rows, header)

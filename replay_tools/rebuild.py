"""``rebuild``: the cluster state as the events say, at any point of the stream.

The events stream is folded with the projections' own ``apply`` into a fresh
``ClusterState`` (or, when asked, the stored snapshot plus the events after it), up to
a sequence or a server time. Liveness comes from the heartbeats retained in
``EVENTSRC_HEARTBEATS`` up to the same point: soft state, outside the hashed state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from eventsrc.commands.schedules import list_schedules
from eventsrc.commands.views import list_nodes, list_skill_infos, task_info
from eventsrc.errors import InvalidRequestError
from eventsrc.history import fold_heartbeats, fold_until
from eventsrc.ports import EVENTS_STREAM, HEARTBEATS_STREAM, Record, StoredEvent
from eventsrc.projections.snapshot import restore_snapshot
from eventsrc.projections.state import ClusterState
from eventsrc.runtime import format_table as table
from eventsrc.store import JetStreamEventStore
from eventsrc.store.raw import stream_state
from replay_tools.common import (
    UsageError,
    first_record,
    iso,
    load_snapshot_bytes,
    read_records,
    record_time,
    require_stream,
    short_time,
)
from replay_tools.render import Progress


@dataclass(slots=True)
class Liveness:
    """What the heartbeat stream contributed."""

    until: datetime | None = None
    retained_from: datetime | None = None
    applied: int = 0
    undecodable: int = 0
    note: str = ""


@dataclass(slots=True)
class Rebuilt:
    """A rebuilt state and how it was reached."""

    state: ClusterState
    start: str
    snapshot_seq: int | None
    stream_last_seq: int
    until_seq: int | None = None
    until_time: datetime | None = None
    last_time: datetime | None = None
    liveness: Liveness = field(default_factory=Liveness)

    @property
    def note(self) -> str:
        """What a person must know about the point shown (one asked past the end)."""
        if self.until_seq is not None and self.until_seq > self.stream_last_seq:
            return (
                f"--until-seq {self.until_seq} is past the end of {EVENTS_STREAM} (its last "
                f"sequence is {self.stream_last_seq}): showing the end"
            )
        return ""


async def rebuild(
    store: JetStreamEventStore,
    *,
    until_seq: int | None = None,
    until_time: datetime | None = None,
    from_snapshot: bool = False,
) -> Rebuilt:
    """Fold the events stream up to ``until_seq``/``until_time`` (default: its end).

    Raises UsageError for a sequence below 1, InvalidRequestError for a point the stream
    does not reach (an empty stream, a time before the first event, a sequence no
    longer retained), StoreError when there is no events stream.
    """
    info = await require_stream(store, EVENTS_STREAM)
    if until_seq is not None and until_seq < 1:
        raise UsageError(f"--until-seq {until_seq}: sequences start at 1")
    if info.messages == 0:
        raise InvalidRequestError(f"{EVENTS_STREAM} holds no events yet: nothing to rebuild")
    if until_seq is not None and until_seq < info.first_seq:
        raise InvalidRequestError(
            f"sequence {until_seq} is no longer in {EVENTS_STREAM} (it now starts at "
            f"{info.first_seq}, older events were removed by the stream's limits)"
        )
    if until_time is not None:
        await _check_time(store, until_time)
    state, start, snapshot_seq = ClusterState(), "replayed from sequence 1", None
    if from_snapshot:
        state, start, snapshot_seq = await _from_snapshot(store, until_seq, until_time)
    result = Rebuilt(state, start, snapshot_seq, info.last_seq, until_seq, until_time)
    first = state.last_seq + 1
    stop = min(info.last_seq, until_seq or info.last_seq)
    progress = Progress("replaying events", max(stop - first + 1, 0))

    def seen(record: Record) -> None:
        result.last_time = record_time(record) or result.last_time
        progress.update(record.seq - first + 1)

    await fold_until(store, state, until_seq=until_seq, until_time=until_time, on_record=seen)
    progress.done()
    if result.last_time is None and state.last_seq:
        at = await first_record(store, from_seq=state.last_seq)
        result.last_time = record_time(at) if at is not None else None
    point = until_time if until_time is not None else None
    if point is None and until_seq is not None and until_seq < info.last_seq:
        point = result.last_time
    result.liveness = await _liveness(store, state, point)
    return result


async def _check_time(store: JetStreamEventStore, until_time: datetime) -> None:
    async with read_records(store) as records:
        async for record in records:
            if isinstance(record, StoredEvent):
                if until_time < record.time:
                    raise InvalidRequestError(
                        f"--until-time {iso(until_time)} is before the first event (seq "
                        f"{record.seq} at {iso(record.time)}); nothing happened by then"
                    )
                return


async def _from_snapshot(
    store: JetStreamEventStore, until_seq: int | None, until_time: datetime | None
) -> tuple[ClusterState, str, int | None]:
    raw = await load_snapshot_bytes(store)
    if raw is None:
        return ClusterState(), "no stored snapshot; replayed from sequence 1", None
    restored, why = restore_snapshot(raw)
    if restored is None:
        return ClusterState(), f"snapshot refused ({why}); replayed from sequence 1", None
    seq = restored.last_seq
    past = until_seq is not None and seq > until_seq
    if not past and until_time is not None:
        at = await first_record(store, from_seq=seq)
        at_time = record_time(at) if at is not None and at.seq == seq else None
        past = at_time is None or at_time > until_time
    if past:
        return ClusterState(), f"snapshot at seq {seq} is past the target; replayed from 1", None
    return restored, f"started from the stored snapshot at seq {seq}, then replayed", seq


async def _liveness(
    store: JetStreamEventStore, state: ClusterState, until: datetime | None
) -> Liveness:
    result = Liveness(until=until)
    info = await stream_state(store, HEARTBEATS_STREAM)
    first = await first_record(store, HEARTBEATS_STREAM) if info and info.messages else None
    if first is None:
        result.note = "no heartbeats retained: liveness unknown"
        return result
    result.retained_from = record_time(first)
    if until is not None and result.retained_from is not None and until < result.retained_from:
        result.note = (
            f"heartbeats before {iso(result.retained_from)} are no longer retained: "
            f"liveness at this point is unknown"
        )
        return result
    result.applied, result.undecodable = await fold_heartbeats(store, state, until=until)
    return result


def to_json(rebuilt: Rebuilt) -> dict[str, Any]:
    """The ``--json`` document: skills, nodes, tasks (with ids and states) and context."""
    state = rebuilt.state
    skills = [
        {"id": skill.name, "state": "registered", **skill.model_dump(mode="json")}
        for skill in list_skill_infos(state)
    ]
    nodes = [{"id": node.node_id, **node.model_dump(mode="json")} for node in list_nodes(state)]
    tasks = [
        {"id": task.task_id, **task_info(task).model_dump(mode="json")}
        for task in state.tasks.values()
    ]
    at = rebuilt.last_time or datetime.now(UTC)
    schedules = [
        {"id": info.name, **info.model_dump(mode="json")} for info in list_schedules(state, now=at)
    ]
    problems = state.problems
    live = rebuilt.liveness
    return {
        "last_seq": state.last_seq,
        "stream_last_seq": rebuilt.stream_last_seq,
        "until_seq": rebuilt.until_seq,
        "until_time": iso(rebuilt.until_time),
        "last_event_time": iso(rebuilt.last_time),
        "start": rebuilt.start,
        "note": rebuilt.note,
        "snapshot_seq": rebuilt.snapshot_seq,
        "leader": state.leader,
        "epoch": state.epoch,
        "evicted_tasks": state.evicted,
        "skills": skills,
        "nodes": nodes,
        "tasks": tasks,
        "schedules": schedules,
        "problems": {
            "undecodable": problems.undecodable,
            "illegal": problems.illegal,
            "late": problems.late,
            "fenced": problems.fenced,
            "recent": list(problems.recent),
        },
        "heartbeats": {
            "until": iso(live.until),
            "retained_from": iso(live.retained_from),
            "applied": live.applied,
            "undecodable": live.undecodable,
            "note": live.note,
        },
    }


def short_time_text(value: str | None) -> str:
    """An ISO time of the JSON document as ``short_time`` shows times."""
    return short_time(datetime.fromisoformat(value)) if value else "-"


def to_text(rebuilt: Rebuilt) -> str:
    """Tables for people."""
    doc = to_json(rebuilt)
    state = rebuilt.state
    lines = [
        f"state at seq {state.last_seq} of {rebuilt.stream_last_seq} "
        f"(last event {short_time(rebuilt.last_time)}); {rebuilt.start}",
        f"leader: {state.leader or '-'} (epoch {state.epoch})",
    ]
    if rebuilt.note:
        lines.insert(0, f"note: {rebuilt.note}")
    if rebuilt.liveness.note:
        lines.append(f"heartbeats: {rebuilt.liveness.note}")
    lines += ["", "SKILLS"]
    lines.append(
        table(
            [
                [
                    s["name"],
                    s["category"],
                    ",".join(s["holders"]) or "-",
                    ",".join(s["dependencies"]) or "-",
                ]
                for s in doc["skills"]
            ],
            ["NAME", "CATEGORY", "HOLDERS", "DEPENDS ON"],
        )
        if doc["skills"]
        else "  (none)"
    )
    lines += ["", "NODES"]
    lines.append(
        table(
            [
                [
                    n.node_id,
                    n.state,
                    f"{n.running}/{n.capacity}",
                    ",".join(n.skills) or "-",
                    short_time(n.last_heartbeat_at),
                ]
                for n in list_nodes(state)
            ],
            ["NODE", "STATE", "RUNNING", "SKILLS", "LAST HEARTBEAT"],
        )
        if doc["nodes"]
        else "  (none)"
    )
    lines += ["", "TASKS"]
    lines.append(
        table(
            [
                [
                    t["task_id"],
                    t["state"],
                    t["node_id"] or "-",
                    t["attempts"],
                    ",".join(t["skills"]),
                    t["reason"] or t["error"] or "",
                ]
                for t in doc["tasks"]
            ],
            ["TASK", "STATE", "NODE", "ATTEMPTS", "SKILLS", "REASON"],
        )
        if doc["tasks"]
        else "  (none)"
    )
    if state.evicted:
        lines.append(f"  ({state.evicted} older finished tasks left memory; `audit task ID`)")
    if doc["schedules"]:
        lines += ["", "SCHEDULES (next as of the last event)"]
        lines.append(
            table(
                [
                    [
                        s["name"],
                        s["state"],
                        f"cron {s['cron']} ({s['tz']})" if s["cron"] else f"every {s['every_s']}s",
                        s["fired"],
                        s["skipped"],
                        short_time_text(s["last_occurrence"]),
                        short_time_text(s["next_fire"]),
                    ]
                    for s in doc["schedules"]
                ],
                ["SCHEDULE", "STATE", "TIMING", "FIRED", "SKIPPED", "LAST", "NEXT"],
            )
        )
    problems = doc["problems"]
    lines += [
        "",
        f"problems: undecodable {problems['undecodable']}, illegal {problems['illegal']}, "
        f"late {problems['late']}, fenced {problems['fenced']}",
    ]
    lines += [f"  {text}" for text in problems["recent"][-10:]]
    return "\n".join(lines)

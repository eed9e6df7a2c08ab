"""Task commands and the lifecycle decisions: submit, cancel, drain, and reconcile.

``reconcile`` is the coordinator's control loop as a pure function: given the state and
the time, it returns the events that move every unfinished task along (place, retry,
requeue, time out). Each decision carries its evidence, so a replay never needs a clock.

Tasks that wait by design (``after`` another task, ``not_before`` a time, a ``delay_s``)
or under a cluster-wide limit are placed by ``reconcile`` only, never by their submit:
its passes run one at a time on the applied state, so two decisions in flight never
share a limit's last slot. Time only comes from the stamp.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Hashable, Mapping
from datetime import timedelta
from typing import Any

from pydantic import Field, field_validator

from eventsrc.commands.base import Command, Stamp
from eventsrc.commands.scheduler import (
    Assign,
    LimitCounts,
    LimitReached,
    Placement,
    Reject,
    Wait,
    check_limits,
    place,
    unknown_skills,
)
from eventsrc.errors import DomainError, InvalidRequestError, NotFoundError, PayloadTooLargeError
from eventsrc.events import (
    AFTER_KEY,
    ONE_EVENT_SUBMISSIONS,
    Event,
    LimitUse,
    NodeDrainCancelled,
    NodeDrainRequested,
    TaskAssigned,
    TaskCancelled,
    TaskCancelRequested,
    TaskQueued,
    TaskRejected,
    TaskRequeued,
    TaskRetried,
    TaskSpec,
    TaskSubmission,
    TaskSubmitted,
    TaskTimedOut,
    Token,
    canonical_json,
)
from eventsrc.projections.limits import limits_of
from eventsrc.projections.state import (
    ACTIVE_TASK_STATES,
    MEMBER_STATES,
    ClusterState,
    TaskState,
    TaskView,
)
from eventsrc.projections.tasks import AWAITING_PLACEMENT, not_before

MAX_REASON = 1000
"""Characters of a free-text field (reason, task type) a command may carry into events."""

MAX_SKILLS = 64
"""Skills one task may require."""

DEFAULT_MAX_PAYLOAD = 512 * 1024
"""Bytes of task payload (as JSON); the submit and the assignment each carry it, and
both must fit in one NATS message (1 MiB by default)."""

MAX_ONE_EVENT_PAYLOAD = 64 * 1024
"""Bytes of payload (as JSON) up to which a task placed at its submission is stored in
one event (a ``TaskAssigned`` carrying the submission, so the payload twice), and at
most half the payload limit; a larger one keeps ``TaskSubmitted`` and ``TaskAssigned``,
so that no message nears the server's ``max_payload``."""

MAX_CHAINED_PAYLOAD = DEFAULT_MAX_PAYLOAD
"""Bytes (as JSON) of a chained task's payload with its predecessor's result: what one
assignment can carry whatever the payload and result limits are."""


class QueueFullError(DomainError):
    """The queue of waiting tasks is at its limit; submit later."""


class SubmitTask(Command):
    """Ask for a task; resubmitting the same id with the same spec is idempotent."""

    task_id: Token
    spec: TaskSpec
    submitted_by: str = Field(default="", max_length=MAX_REASON)
    parent_task_id: Token | None = None
    broadcast_id: str | None = Field(default=None, max_length=MAX_REASON)

    @field_validator("spec")
    @classmethod
    def _fits_an_assignment(cls, spec: TaskSpec) -> TaskSpec:
        # The assignment repeats these beside the payload; bounded, so whatever is
        # accepted can be assigned (the payload has its own limit, see Limits).
        if len(spec.skills) > MAX_SKILLS:
            raise ValueError(f"at most {MAX_SKILLS} skills per task")
        if spec.task_type is not None and len(spec.task_type) > MAX_REASON:
            raise ValueError(f"task_type has more than {MAX_REASON} characters")
        return spec


class CancelTask(Command):
    task_id: Token
    reason: str = Field(default="cancelled by user", max_length=MAX_REASON)


class DrainNode(Command):
    """Drain a node (no new work placed on it) or, with ``off``, undo a drain."""

    node_id: Token
    reason: str = Field(default="drain requested", max_length=MAX_REASON)
    off: bool = False


class Limits(Command):
    """Coordinator-wide limits that decisions respect."""

    max_queued: int = Field(default=100_000, ge=1)
    max_payload_bytes: int = Field(default=DEFAULT_MAX_PAYLOAD, ge=1)


Decision = tuple[str, tuple[Event, ...]]
"""(task id, events for that task's aggregate, in order)."""


def decide_submit(
    state: ClusterState,
    command: SubmitTask,
    *,
    stamp: Stamp,
    limits: Limits | None = None,
    planned: Mapping[str, int] | None = None,
    one_event: bool = False,
) -> tuple[Event, ...]:
    """TaskSubmitted plus its first placement (assigned, queued or rejected);
    ``planned`` counts per node the assignments decided but not yet applied.

    ``one_event``: a task placed at once, small enough (``_fits_one_event``) and on a node
    that reads it (``_reads_one_event``), is one ``TaskAssigned`` that carries its
    submission."""
    limits = limits or Limits()
    try:
        size = len(canonical_json(command.spec.payload))
    except TypeError as err:
        # pydantic accepts what orjson cannot store or hash (e.g. ints beyond 64 bits).
        raise InvalidRequestError(
            f"the payload cannot be stored as JSON ({err}); send numbers as strings"
        ) from err
    if size > limits.max_payload_bytes:
        raise PayloadTooLargeError(
            f"the payload is {size} bytes as JSON; the limit is {limits.max_payload_bytes} "
            f"(max_payload_bytes): store large data elsewhere and pass a reference"
        )
    existing = state.tasks.get(command.task_id)
    if existing is not None:
        if existing.spec == command.spec:
            return ()
        raise DomainError(
            f"task {command.task_id} exists with a different request; use another task id"
        )
    deferred = _deferred(state, command.spec)
    if deferred and command.spec.queue_timeout_s == 0:
        raise InvalidRequestError(
            f"the task must wait ({deferred}) but its queue timeout is 0 (never wait); "
            f"give a queue timeout above 0"
        )
    if command.spec.after is not None and command.spec.after not in state.tasks:
        raise NotFoundError(
            f"no task {command.spec.after} to run after; check the id (eventsrc tasks --all)"
        )
    waiting = len(state.waiting)
    limit = limits.max_queued
    if waiting >= limit:
        raise QueueFullError(
            f"{waiting} tasks are waiting (limit {limit}); submit later or add nodes"
        )
    # Built without validating again (here and for the assignment): every field comes
    # from the validated command, the state or the stamp; tests check that what these
    # build validates and decodes to itself.
    submitted = TaskSubmitted.model_construct(
        **stamp.envelope(**_lineage(state, command.parent_task_id)),
        task_id=command.task_id,
        spec=command.spec,
        submitted_by=command.submitted_by,
        parent_task_id=command.parent_task_id,
        broadcast_id=command.broadcast_id,
        queue_deadline=stamp.now + timedelta(seconds=command.spec.queue_timeout_s),
    )
    if deferred:
        # Placed by reconcile (see the module's doc); only refused here if it never can.
        missing = unknown_skills(state, command.spec.skills)
        if not missing:
            return (submitted,)
        placement: Placement = Reject(
            f"unknown skills: {', '.join(missing)} (not in the catalog)", missing
        )
    else:
        placement = place(state, command.spec, planned=planned)
    if isinstance(placement, Wait) and command.spec.queue_timeout_s == 0:
        placement = Reject(f"{placement.reason} (queue timeout 0: not waiting)", ())
    followup = _placement_event(
        command.task_id,
        command.spec,
        attempt=1,
        placement=placement,
        previous_reason=AWAITING_PLACEMENT,
        stamp=stamp,
        causation_id=submitted.event_id,
    )
    if followup is None:
        return (submitted,)
    if (
        one_event
        and isinstance(followup, TaskAssigned)
        and _fits_one_event(command.spec, size, limits)
        and _reads_one_event(state, followup.node_id)
    ):
        return (_with_submission(followup, submitted),)
    return (submitted, followup)


def _fits_one_event(spec: TaskSpec, payload_bytes: int, limits: Limits) -> bool:
    """Whether a submission and its assignment fit one message with room to spare: the
    payload (carried twice) at most ``MAX_ONE_EVENT_PAYLOAD`` and half the payload limit
    (what one copy may take of a message), and the labels, the one other field of no
    fixed bound, as small."""
    one_copy = min(MAX_ONE_EVENT_PAYLOAD, limits.max_payload_bytes // 2)
    labels = sum(len(key) + len(value) for key, value in spec.labels.items())
    return payload_bytes <= one_copy and labels <= one_copy


def _reads_one_event(state: ClusterState, node_id: str) -> bool:
    """Whether the node runs code that reads a submission carried by its assignment (a
    node not yet upgraded would take it for an assignment of an unknown task)."""
    node = state.nodes.get(node_id)
    return node is not None and node.event_schema >= ONE_EVENT_SUBMISSIONS


def _with_submission(assigned: TaskAssigned, submitted: TaskSubmitted) -> TaskAssigned:
    """The assignment carrying the submission: one event standing for both, caused by
    what caused the submission (a parent's submission, a schedule's firing)."""
    return assigned.model_copy(
        update={"submitted": TaskSubmission.of(submitted), "causation_id": submitted.causation_id}
    )


def _deferred(state: ClusterState, spec: TaskSpec) -> str:
    """Why a submit leaves the task to reconcile ("" if it places it itself)."""
    if spec.after is not None:
        return f"after task {spec.after}"
    if spec.waits_by_design():
        return "not before a time"
    if spec.limit_key is not None:
        return f"under limit key {spec.limit_key}"
    held = limits_of(state, spec)
    return f"under limit {held[0].name}" if held else ""


def _lineage(state: ClusterState, parent_task_id: str | None) -> dict[str, str]:
    """A sub-task's causation: its parent's submission, when the parent is known (the
    ``parent_task_id`` itself is kept either way)."""
    parent = state.tasks.get(parent_task_id) if parent_task_id else None
    return {"causation_id": parent.submit_event_id} if parent is not None else {}


def decide_cancel(
    state: ClusterState,
    command: CancelTask,
    *,
    stamp: Stamp,
) -> tuple[Event, ...]:
    """Cancel a task; a running one is told to stop. Nothing for a finished task."""
    task = state.tasks.get(command.task_id)
    if task is None:
        raise NotFoundError(f"no task {command.task_id}; check the id (eventsrc tasks --all)")
    if task.terminal:
        return ()
    events: list[Event] = []
    if task.state in ACTIVE_TASK_STATES and task.node_id is not None:
        events.append(
            TaskCancelRequested(
                **stamp.envelope(),
                task_id=task.task_id,
                node_id=task.node_id,
                attempt=task.attempt,
                reason=command.reason,
            )
        )
    events.append(
        TaskCancelled(
            **stamp.envelope(),
            task_id=task.task_id,
            reason=command.reason,
            attempt=task.attempt,
        )
    )
    return tuple(events)


def decide_drain(
    state: ClusterState,
    command: DrainNode,
    *,
    stamp: Stamp,
) -> tuple[Event, ...]:
    """Stop placing work on a node (``off``: place work on it again); nothing if it is
    already so. A drain holds across the node's re-joins until undone."""
    node = state.nodes.get(command.node_id)
    if node is None:
        raise NotFoundError(f"no node {command.node_id}; see `eventsrc nodes`")
    if command.off:
        if not node.drain_in_force:
            return ()
        return (
            NodeDrainCancelled(
                **stamp.envelope(),
                node_id=command.node_id,
                reason=command.reason,
            ),
        )
    if node.drained:
        return ()
    return (
        NodeDrainRequested(
            **stamp.envelope(),
            node_id=command.node_id,
            reason=command.reason,
        ),
    )


def reconcile(
    state: ClusterState,
    *,
    stamp: Stamp,
    planned: Mapping[str, int] | None = None,
    full: bool = True,
    placing: Collection[str] = (),
) -> list[Decision]:
    """The events that move unfinished tasks along, per task, highest priority first.

    ``full=False`` looks at waiting tasks only (what a change in the state can unblock),
    and passes over those that wait only for a slot on nodes an earlier task of the pass
    found busy: their queue deadlines and reasons are the full pass's, which also checks
    the running ones for deadlines and lost nodes. So the quick pass after each applied
    batch costs little however long the queue is.

    ``placing``: tasks whose placement is decided and being stored elsewhere (a
    submission with its first placement, applied in part); a pass leaves them alone
    rather than place them again with an append that can only lose its race.
    """
    decisions: list[Decision] = []
    counted: Counter[str] = Counter(planned or {})
    waiting: list[TaskView] = []
    for task_id in state.open_tasks if full else state.waiting:
        if task_id in placing:
            continue
        task = state.tasks[task_id]
        if task.state == TaskState.QUEUED:
            waiting.append(task)
            continue
        events = _check_active(state, task, stamp=stamp)
        if events:
            decisions.append((task.task_id, events))
    waiting.sort(key=lambda t: (-t.spec.priority, t.queued_since or stamp.now, t.task_id))
    full_up: dict[Hashable, Wait] = {}
    limited = LimitCounts()  # counted when a task under a limit first needs it
    for task in waiting:
        if not full and full_up and _behind_busy_nodes(task, full_up):
            continue
        events = _check_waiting(state, task, counted, full_up, limited, stamp=stamp)
        if events:
            decisions.append((task.task_id, events))
    return decisions


def _behind_busy_nodes(task: TaskView, full_up: Mapping[Hashable, Wait]) -> bool:
    """Whether the task can only wait for a slot on nodes found busy in this pass: no
    retry, chain or delay of its own to look at."""
    spec = task.spec
    return (
        not task.retry_pending
        and task.attempt <= spec.max_attempts
        and spec.after is None
        and task.not_before is None
        and _placement_key(spec) in full_up
    )


def _check_active(state: ClusterState, task: TaskView, *, stamp: Stamp) -> tuple[Event, ...]:
    now = stamp.now
    node = state.nodes.get(task.node_id or "")
    if node is None or node.state not in MEMBER_STATES:
        lost = "gone" if node is None else node.state
        return (
            TaskRequeued(
                **stamp.envelope(),
                task_id=task.task_id,
                attempt=task.attempt,
                node_id=task.node_id or "unknown",
                reason=f"node {task.node_id} {lost}",
            ),
        )
    if task.run_deadline is not None and now > task.run_deadline:
        assert task.node_id is not None
        return (
            TaskCancelRequested(
                **stamp.envelope(),
                task_id=task.task_id,
                node_id=task.node_id,
                attempt=task.attempt,
                reason="run timeout",
            ),
            TaskTimedOut(
                **stamp.envelope(),
                task_id=task.task_id,
                phase="run",
                attempt=task.attempt,
                deadline=task.run_deadline,
                observed_at=now,
            ),
        )
    return ()


def _placement_key(spec: TaskSpec) -> Hashable:
    """What decides which nodes a task may use: tasks alike in this place alike."""
    return (spec.skills, spec.node_id, tuple(sorted(spec.labels.items())))


def _check_waiting(
    state: ClusterState,
    task: TaskView,
    planned: Counter[str],
    full: dict[Hashable, Wait],
    limited: LimitCounts,
    *,
    stamp: Stamp,
) -> tuple[Event, ...]:
    now = stamp.now
    spec = task.spec
    if task.attempt > spec.max_attempts:
        # Every attempt was lost with its node (requeues count as attempts): a task that
        # takes its nodes down must not cycle forever.
        return (
            TaskRejected(
                **stamp.envelope(),
                task_id=task.task_id,
                reason=f"gave up: {task.attempt - 1} attempts were lost with their nodes "
                f"(max_attempts {spec.max_attempts})",
            ),
        )
    if task.retry_pending:
        delay = min(spec.backoff_s * spec.backoff_factor ** (task.attempt - 1), spec.backoff_max_s)
        return (
            TaskRetried(
                **stamp.envelope(),
                task_id=task.task_id,
                failed_attempt=task.attempt,
                next_attempt=task.attempt + 1,
                not_before=now + timedelta(seconds=delay),
                error=task.error or "",
            ),
        )
    before = _predecessor(state, task, stamp=stamp)
    if isinstance(before, tuple):
        return before  # cancelled with it, or waiting for it
    # The queue timeout counts from when the task may start (its retry's own time
    # does not move it); a deadline bounds it.
    asked = not_before(spec, task.submitted_at) if task.submitted_at else None
    times = (task.queued_since, asked, before.finished_at if before else None)
    ready = max((t for t in times if t is not None), default=now)
    deadline = ready + timedelta(seconds=spec.queue_timeout_s)
    if spec.deadline is not None:
        deadline = min(deadline, spec.deadline)
    if now > deadline:
        return (
            TaskTimedOut(
                **stamp.envelope(),
                task_id=task.task_id,
                phase="queue",
                attempt=task.attempt,
                deadline=deadline,
                observed_at=now,
            ),
        )
    if task.not_before is not None and now < task.not_before:
        if task.reason != AWAITING_PLACEMENT:
            return ()
        return _queued(task, f"not before {task.not_before.isoformat()}", stamp=stamp)
    held = check_limits(state, spec, limited, now=now)
    if isinstance(held, LimitReached):
        placement: Placement = Wait(held.text, limit=held)
        uses: tuple[LimitUse, ...] = ()
    else:
        uses = held
        key = _placement_key(spec)
        placement = full.get(key) or place(state, spec, planned=planned)
        if isinstance(placement, Assign):
            planned[placement.node_id] += 1
            limited.add(uses)
        elif isinstance(placement, Wait) and placement.busy:
            full[key] = placement  # later tasks needing the same nodes wait too (this pass)
    event = _placement_event(
        task.task_id,
        spec,
        attempt=task.attempt,
        placement=placement,
        previous_reason=task.reason,
        previous_hints=task.would_qualify,
        stamp=stamp,
        limits=uses,
        after=before,
    )
    return (event,) if event is not None else ()


def _predecessor(
    state: ClusterState, task: TaskView, *, stamp: Stamp
) -> TaskView | tuple[Event, ...] | None:
    """The succeeded task this one runs after (None if it runs after none), else the
    events it gets meanwhile: cancelled when that task ended otherwise, is no longer
    known, or left a result too large to pass on; the wait's reason, once, while it has
    not ended (no deadline passes unseen meanwhile: the caller checks an explicit one)."""
    after = task.spec.after
    if after is None:
        return None
    before = state.tasks.get(after)
    reason = ""
    if before is not None and before.state == TaskState.SUCCEEDED:
        size = len(canonical_json(_chained_payload(task.spec, before)))
        if size <= MAX_CHAINED_PAYLOAD:
            return before
        reason = (
            f"its payload with the result of task {after} is {size} bytes as JSON, over the "
            f"{MAX_CHAINED_PAYLOAD} one assignment may carry: pass large results by reference"
        )
    elif before is None or before.terminal:
        why = "is no longer known" if before is None else f"ended {before.state}"
        detail = before.error or before.reason if before is not None else ""
        reason = f"task {after} it runs after {why}" + (f": {detail}" if detail else "")
    if reason:
        return (
            TaskCancelled(
                **stamp.envelope(),
                task_id=task.task_id,
                reason=reason[:MAX_REASON],
                attempt=task.attempt,
            ),
        )
    deadline = task.spec.deadline
    if deadline is not None and stamp.now > deadline:
        return (
            TaskTimedOut(
                **stamp.envelope(),
                task_id=task.task_id,
                phase="queue",
                attempt=task.attempt,
                deadline=deadline,
                observed_at=stamp.now,
            ),
        )
    reason = f"waiting for task {after} to succeed"
    return () if task.reason == reason else _queued(task, reason, stamp=stamp)


def _queued(task: TaskView, reason: str, *, stamp: Stamp) -> tuple[Event, ...]:
    return (TaskQueued(**stamp.envelope(), task_id=task.task_id, reason=reason),)


def _chained_payload(spec: TaskSpec, before: TaskView | None) -> Any:
    """The payload an assignment carries: the spec's, with the result of the task it ran
    after under ``AFTER_KEY`` (the spec makes sure it is an object without that key)."""
    if before is None:
        return spec.payload
    return {**(spec.payload or {}), AFTER_KEY: {"task_id": before.task_id, "result": before.result}}


def _placement_event(
    task_id: str,
    spec: TaskSpec,
    *,
    attempt: int,
    placement: Placement,
    previous_reason: str,
    previous_hints: tuple[str, ...] = (),
    stamp: Stamp,
    causation_id: str | None = None,
    limits: tuple[LimitUse, ...] = (),
    after: TaskView | None = None,
) -> Event | None:
    if isinstance(placement, Wait) and (
        (placement.reason == previous_reason and placement.would_qualify == previous_hints)
        # Only short of a free slot, as under any load: not worth an event.
        or (placement.busy and previous_reason == AWAITING_PLACEMENT)
    ):
        return None  # nothing new to say
    envelope: dict[str, Any] = stamp.envelope(causation_id=causation_id)
    if isinstance(placement, Assign):
        return TaskAssigned.model_construct(
            **envelope,
            task_id=task_id,
            node_id=placement.node_id,
            attempt=attempt,
            skills=spec.skills,
            payload=_chained_payload(spec, after),
            task_type=spec.task_type,
            run_timeout_s=spec.run_timeout_s,
            run_deadline=stamp.now + timedelta(seconds=spec.run_timeout_s),
            model=spec.model,
            candidates=placement.candidates,
            limits=limits,
        )
    if isinstance(placement, Reject):
        return TaskRejected(
            **envelope, task_id=task_id, reason=placement.reason, missing_skills=placement.missing
        )
    assert isinstance(placement, Wait)
    return TaskQueued(
        **envelope,
        task_id=task_id,
        reason=placement.reason,
        would_qualify=placement.would_qualify,
    )

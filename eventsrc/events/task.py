"""Task lifecycle events: the aggregate ``evt.task.<task_id>.>``.

The coordinator writes ``.lifecycle`` and ``.to.<node>``; the node writes
``.from.<node>``. Attempts count from 1.
"""

from __future__ import annotations

from datetime import datetime
from enum import IntEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from eventsrc.events.base import EMBEDDED, EventBase, open_schema
from eventsrc.events.ids import Token
from eventsrc.events.limit import LimitUse
from eventsrc.events.subjects import (
    from_node_subject,
    lifecycle_subject,
    task_filter,
    to_node_subject,
)

DAY = 86_400.0

AFTER_KEY = "after"
"""The key of a chained task's payload where the coordinator puts the task it ran after:
``{"task_id": ..., "result": ...}``."""


class TaskPriority(IntEnum):
    """The week-5 API's priorities, with its numbers: there a lower number runs first.

    eventsrc's own scale is the other way round (a higher ``priority`` runs first, 0 is
    the default), so a ``TaskSpec`` given one of these stores its ``rank`` instead:
    CRITICAL 20, HIGH 10, NORMAL 0, LOW -10.
    """

    CRITICAL = 0
    HIGH = 1
    NORMAL = 2
    LOW = 3

    @property
    def rank(self) -> int:
        """This priority on eventsrc's scale, where higher runs first."""
        return (TaskPriority.NORMAL - self) * 10


class TaskSpec(BaseModel):
    """What was asked for; two submissions with the same id must carry an equal spec.

    ``priority``: higher runs first among waiting tasks, 0 by default; a
    ``TaskPriority`` is stored as its ``rank`` on this scale.
    """

    # Unknown fields are an error (a misspelt option shows); events embed it EMBEDDED.
    model_config = ConfigDict(
        frozen=True, extra="forbid", allow_inf_nan=False, json_schema_extra=open_schema
    )

    skills: tuple[Token, ...] = Field(min_length=1)
    payload: Any = None
    task_type: str | None = None
    priority: int = 0
    labels: dict[str, str] = Field(default_factory=dict)
    node_id: Token | None = None
    # Upper bounds keep every deadline computable (a year of seconds, not 1e12).
    run_timeout_s: float = Field(default=600.0, gt=0, le=30 * DAY)
    # 0: run now or be rejected, never wait in the queue.
    queue_timeout_s: float = Field(default=3600.0, ge=0, le=365 * DAY)
    max_attempts: int = Field(default=3, ge=1, le=100)
    backoff_s: float = Field(default=1.0, ge=0, le=DAY)
    backoff_factor: float = Field(default=2.0, ge=1, le=10)
    backoff_max_s: float = Field(default=60.0, ge=0, le=DAY)
    # provider/model for an OpenClaw agent turn (default: the node's, else OpenClaw's).
    model: str | None = Field(default=None, min_length=1, max_length=200, pattern=r"^\S+$")
    # Chains and delays: start after task ``after`` succeeded (its result comes in the
    # payload's ``after`` key), not before ``not_before`` nor ``delay_s`` seconds after
    # the submission (server time); never started by ``deadline``: timed out.
    after: Token | None = None
    not_before: AwareDatetime | None = None
    delay_s: float | None = Field(default=None, ge=0, le=365 * DAY)
    deadline: AwareDatetime | None = None
    # Held by the cluster-wide limit of this key, if one is set (``eventsrc limit set``).
    limit_key: Token | None = None

    @field_validator("priority", mode="before")
    @classmethod
    def _rank_of_a_week5_priority(cls, value: Any) -> Any:
        # A TaskPriority is an int too: read as one, CRITICAL (0) would rank below LOW.
        return value.rank if isinstance(value, TaskPriority) else value

    @model_validator(mode="after")
    def _room_for_the_result(self) -> TaskSpec:
        if self.after is None:
            return self
        if self.payload is not None and not isinstance(self.payload, dict):
            raise ValueError(
                f"a task run after another gets its result under the payload's "
                f"{AFTER_KEY!r} key: give a JSON object as payload, or none"
            )
        if isinstance(self.payload, dict) and AFTER_KEY in self.payload:
            raise ValueError(
                f"the payload key {AFTER_KEY!r} is where the result of task {self.after} "
                f"goes: rename it"
            )
        return self

    def waits_by_design(self) -> bool:
        """Whether this task is meant to wait: for a task, a time or a delay."""
        return self.after is not None or self.not_before is not None or bool(self.delay_s)


class Candidate(BaseModel):
    """One node as the scheduler saw it when ranking: the evidence of a placement."""

    model_config = ConfigDict(frozen=True, extra="ignore", allow_inf_nan=False)

    node_id: Token
    running: int
    capacity: int
    success_rate: float = 1.0
    cpu_percent: float = 0.0
    memory_percent: float = 0.0


class _TaskEvent(EventBase):
    task_id: Token

    @property
    def subject(self) -> str:
        return lifecycle_subject(self.task_id)

    @property
    def aggregate_subject(self) -> str:
        return task_filter(self.task_id)


class _ToNode(_TaskEvent):
    node_id: Token
    attempt: int = Field(ge=1)

    @property
    def subject(self) -> str:
        return to_node_subject(self.task_id, self.node_id)


class _FromNode(_TaskEvent):
    WRITTEN_BY = "node"
    node_id: Token
    attempt: int = Field(ge=1)

    @property
    def subject(self) -> str:
        return from_node_subject(self.task_id, self.node_id)


class _Submission(BaseModel):
    """What a submission says besides the envelope and the task id: the fields of a
    ``TaskSubmitted``, and of the ``submitted`` a ``TaskAssigned`` carries."""

    spec: Annotated[TaskSpec, EMBEDDED]
    submitted_by: str = ""
    parent_task_id: str | None = None
    broadcast_id: str | None = None
    queue_deadline: datetime
    # Set when a schedule started the task: its name and the occurrence fired.
    schedule: str | None = None
    occurrence: datetime | None = None


class TaskSubmitted(_Submission, _TaskEvent):
    """A task was accepted; from here on it must reach exactly one terminal state."""

    type: Literal["TaskSubmitted"] = "TaskSubmitted"


class TaskSubmission(_Submission):
    """A submission carried by the ``TaskAssigned`` that placed the task at once."""

    model_config = ConfigDict(
        frozen=True, extra="ignore", allow_inf_nan=False, json_schema_extra=open_schema
    )

    @classmethod
    def of(cls, submitted: TaskSubmitted) -> TaskSubmission:
        """The submission a ``TaskSubmitted`` says (``TaskAssigned.submission`` is the
        way back), built without validating again: the event is valid already."""
        return cls.model_construct(**{name: getattr(submitted, name) for name in cls.model_fields})


class TaskQueued(_TaskEvent):
    """No eligible node now; the task waits, and says why and who could qualify."""

    type: Literal["TaskQueued"] = "TaskQueued"
    reason: str
    would_qualify: tuple[str, ...] = ()


class TaskRejected(_TaskEvent):
    """Terminal: the task can never run as asked (unknown skills, bad pinning...)."""

    type: Literal["TaskRejected"] = "TaskRejected"
    reason: str
    missing_skills: tuple[str, ...] = ()


class TaskAssigned(_ToNode):
    """The coordinator placed an attempt on a node; carries all the node needs to run it."""

    type: Literal["TaskAssigned"] = "TaskAssigned"
    skills: tuple[Token, ...]
    payload: Any = None
    task_type: str | None = None
    run_timeout_s: float
    run_deadline: datetime
    candidates: tuple[Candidate, ...] = ()
    model: str | None = None
    limits: tuple[LimitUse, ...] = ()
    """The limits that held the task and allowed this start, with their counts."""
    submitted: Annotated[TaskSubmission, EMBEDDED] | None = None
    """Set on a task placed at its submission: the submission itself, stored in this one
    event instead of a ``TaskSubmitted`` before it (one append, one acknowledgement and
    one delivery less per task). It is then the task's first event, attempt 1 (the
    projection skips one that is not, as illegal), and its ``event_id`` is the
    submission's too."""

    def submission(self) -> TaskSubmitted | None:
        """The ``TaskSubmitted`` this event stands for as well, under its envelope."""
        if self.submitted is None:
            return None
        envelope = {name: getattr(self, name) for name in EventBase.model_fields}
        return TaskSubmitted.model_construct(
            **envelope, task_id=self.task_id, **dict(self.submitted)
        )

    def placed_at_submission(self, submit_event_id: str | None) -> bool:
        """Whether this is the placement decided with the submission ``submit_event_id``
        (not after the task waited)."""
        return self.submitted is not None or (
            submit_event_id is not None and self.causation_id == submit_event_id
        )


def submission_of(event: object) -> TaskSubmitted | None:
    """The submission an event records: a ``TaskSubmitted``, or a ``TaskAssigned`` that
    placed its task at once. Every reader of submissions goes through here."""
    if isinstance(event, TaskSubmitted):
        return event
    if isinstance(event, TaskAssigned):
        return event.submission()
    return None


class TaskCancelRequested(_ToNode):
    """Tells the node running an attempt to stop it."""

    type: Literal["TaskCancelRequested"] = "TaskCancelRequested"
    reason: str = ""


class TaskStarted(_FromNode):
    """The node began running an attempt."""

    type: Literal["TaskStarted"] = "TaskStarted"


class AgentRun(BaseModel):
    """What one OpenClaw agent turn used, so a person sees what each task cost."""

    model_config = ConfigDict(frozen=True, extra="ignore", allow_inf_nan=False)

    model: str | None = None
    provider: str | None = None
    session_id: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    cost_usd: float | None = None
    tools: tuple[str, ...] = ()

    def summary(self) -> str:
        """One line: ``provider/model, session S, 120 in + 8 out tokens, $0.0021``."""
        parts = ["/".join(p for p in (self.provider, self.model) if p) or "model unknown"]
        if self.session_id:
            parts.append(f"session {self.session_id}")
        parts.append(f"{self.input_tokens} in + {self.output_tokens} out tokens")
        if self.cost_usd is not None:
            parts.append(f"${self.cost_usd:.4f}")
        if self.tools:
            parts.append(f"tools {', '.join(self.tools)}")
        return ", ".join(parts)


class TaskSucceeded(_FromNode):
    """Terminal for the task when it ends the current attempt first."""

    type: Literal["TaskSucceeded"] = "TaskSucceeded"
    result: Any = None
    duration_ms: float = 0.0
    agent: AgentRun | None = None


class TaskFailed(_FromNode):
    """An attempt failed; ``retryable`` failures may be retried by the coordinator."""

    type: Literal["TaskFailed"] = "TaskFailed"
    error: str
    retryable: bool = False
    duration_ms: float = 0.0
    agent: AgentRun | None = None


class TaskRetried(_TaskEvent):
    """A retryable failure leads to another attempt, not before ``not_before``."""

    type: Literal["TaskRetried"] = "TaskRetried"
    failed_attempt: int = Field(ge=1)
    next_attempt: int = Field(ge=2)
    not_before: datetime
    error: str = ""


class TaskRequeued(_TaskEvent):
    """An attempt was lost (node expired, left, drained) and the task waits again."""

    type: Literal["TaskRequeued"] = "TaskRequeued"
    attempt: int = Field(ge=1)
    node_id: Token
    reason: str


class TaskTimedOut(_TaskEvent):
    """Terminal: the queue or run deadline passed (``phase`` says which)."""

    type: Literal["TaskTimedOut"] = "TaskTimedOut"
    phase: Literal["queue", "run"]
    attempt: int = 0
    deadline: datetime
    observed_at: datetime


class TaskCancelled(_TaskEvent):
    """Terminal: cancelled by a user."""

    type: Literal["TaskCancelled"] = "TaskCancelled"
    reason: str = ""
    attempt: int = 0

"""Event models, the envelope, the codec and the id validator.

This package imports nothing of eventsrc except the dependency-free ``eventsrc.errors``.
"""

from __future__ import annotations

from eventsrc.events.base import EventBase
from eventsrc.events.catalog import CURRENT_SCHEMA_VERSIONS, EVENT_ADAPTER, EVENT_CLASSES, Event
from eventsrc.events.cluster import ClusterSettingsChanged, Heartbeat, LeaderElected
from eventsrc.events.codec import (
    canonical_hash,
    canonical_json,
    decode,
    encode,
    may_hold_long_number,
)
from eventsrc.events.ids import (
    MAX_TOKEN_LENGTH,
    Token,
    new_event_id,
    validate_token,
)
from eventsrc.events.limit import LimitRemoved, LimitSet, LimitUse, parse_rate
from eventsrc.events.node import (
    NodeCapabilitiesReported,
    NodeDrainCancelled,
    NodeDrainRequested,
    NodeExpired,
    NodeJoined,
    NodeLeft,
    SkillInstanceExpired,
    SkillInstanceRegistered,
    SkillInstanceUnregistered,
    UnavailableSkill,
)
from eventsrc.events.output import OutputLine, TaskOutput, parse_progress
from eventsrc.events.schedule import (
    CatchUp,
    ScheduleAdded,
    ScheduleFired,
    SchedulePaused,
    ScheduleRemoved,
    ScheduleResumed,
    ScheduleSkipped,
    ScheduleTiming,
)
from eventsrc.events.skill import SkillCategory, SkillMetadata, SkillRegistered, SkillUpdated
from eventsrc.events.stamp import Origin, Stamp, is_fenced, is_newer_election
from eventsrc.events.subjects import aggregate_of
from eventsrc.events.task import (
    AFTER_KEY,
    AgentRun,
    Candidate,
    TaskAssigned,
    TaskCancelled,
    TaskCancelRequested,
    TaskFailed,
    TaskPriority,
    TaskQueued,
    TaskRejected,
    TaskRequeued,
    TaskRetried,
    TaskSpec,
    TaskStarted,
    TaskSubmission,
    TaskSubmitted,
    TaskSucceeded,
    TaskTimedOut,
    submission_of,
)

__all__ = [
    "AFTER_KEY",
    "CURRENT_SCHEMA_VERSIONS",
    "EVENT_ADAPTER",
    "EVENT_CLASSES",
    "MAX_TOKEN_LENGTH",
    "AgentRun",
    "Candidate",
    "CatchUp",
    "ClusterSettingsChanged",
    "Event",
    "EventBase",
    "Heartbeat",
    "LeaderElected",
    "LimitRemoved",
    "LimitSet",
    "LimitUse",
    "NodeCapabilitiesReported",
    "NodeDrainCancelled",
    "NodeDrainRequested",
    "NodeExpired",
    "NodeJoined",
    "NodeLeft",
    "Origin",
    "OutputLine",
    "ScheduleAdded",
    "ScheduleFired",
    "SchedulePaused",
    "ScheduleRemoved",
    "ScheduleResumed",
    "ScheduleSkipped",
    "ScheduleTiming",
    "SkillCategory",
    "SkillInstanceExpired",
    "SkillInstanceRegistered",
    "SkillInstanceUnregistered",
    "SkillMetadata",
    "SkillRegistered",
    "SkillUpdated",
    "Stamp",
    "TaskAssigned",
    "TaskCancelRequested",
    "TaskCancelled",
    "TaskFailed",
    "TaskOutput",
    "TaskPriority",
    "TaskQueued",
    "TaskRejected",
    "TaskRequeued",
    "TaskRetried",
    "TaskSpec",
    "TaskStarted",
    "TaskSubmission",
    "TaskSubmitted",
    "TaskSucceeded",
    "TaskTimedOut",
    "Token",
    "UnavailableSkill",
    "aggregate_of",
    "canonical_hash",
    "canonical_json",
    "decode",
    "encode",
    "is_fenced",
    "is_newer_election",
    "may_hold_long_number",
    "new_event_id",
    "parse_progress",
    "parse_rate",
    "submission_of",
    "validate_token",
]

"""The whole event catalog: one discriminated union and one TypeAdapter over it."""

from __future__ import annotations

from typing import Annotated, Final

from pydantic import Field, TypeAdapter

from eventsrc.events.base import EventBase
from eventsrc.events.cluster import ClusterSettingsChanged, Heartbeat, LeaderElected
from eventsrc.events.limit import LimitRemoved, LimitSet
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
)
from eventsrc.events.output import TaskOutput
from eventsrc.events.schedule import (
    ScheduleAdded,
    ScheduleFired,
    SchedulePaused,
    ScheduleRemoved,
    ScheduleResumed,
    ScheduleSkipped,
)
from eventsrc.events.skill import SkillRegistered, SkillUpdated
from eventsrc.events.task import (
    TaskAssigned,
    TaskCancelled,
    TaskCancelRequested,
    TaskFailed,
    TaskQueued,
    TaskRejected,
    TaskRequeued,
    TaskRetried,
    TaskStarted,
    TaskSubmitted,
    TaskSucceeded,
    TaskTimedOut,
)

Event = Annotated[
    SkillRegistered
    | SkillUpdated
    | NodeJoined
    | NodeLeft
    | NodeExpired
    | NodeDrainRequested
    | NodeDrainCancelled
    | SkillInstanceRegistered
    | SkillInstanceUnregistered
    | SkillInstanceExpired
    | NodeCapabilitiesReported
    | TaskSubmitted
    | TaskQueued
    | TaskRejected
    | TaskAssigned
    | TaskCancelRequested
    | TaskStarted
    | TaskSucceeded
    | TaskFailed
    | TaskRetried
    | TaskRequeued
    | TaskTimedOut
    | TaskCancelled
    | LeaderElected
    | ClusterSettingsChanged
    | ScheduleAdded
    | SchedulePaused
    | ScheduleResumed
    | ScheduleRemoved
    | ScheduleFired
    | ScheduleSkipped
    | LimitSet
    | LimitRemoved
    | Heartbeat
    | TaskOutput,
    Field(discriminator="type"),
]
"""Any event eventsrc writes; decode with ``EVENT_ADAPTER.validate_json``."""

EVENT_ADAPTER: Final[TypeAdapter[Event]] = TypeAdapter(Event)

EVENT_CLASSES: Final[dict[str, type[EventBase]]] = {
    cls.model_fields["type"].default: cls
    for cls in (
        SkillRegistered,
        SkillUpdated,
        NodeJoined,
        NodeLeft,
        NodeExpired,
        NodeDrainRequested,
        NodeDrainCancelled,
        SkillInstanceRegistered,
        SkillInstanceUnregistered,
        SkillInstanceExpired,
        NodeCapabilitiesReported,
        TaskSubmitted,
        TaskQueued,
        TaskRejected,
        TaskAssigned,
        TaskCancelRequested,
        TaskStarted,
        TaskSucceeded,
        TaskFailed,
        TaskRetried,
        TaskRequeued,
        TaskTimedOut,
        TaskCancelled,
        LeaderElected,
        ClusterSettingsChanged,
        ScheduleAdded,
        SchedulePaused,
        ScheduleResumed,
        ScheduleRemoved,
        ScheduleFired,
        ScheduleSkipped,
        LimitSet,
        LimitRemoved,
        Heartbeat,
        TaskOutput,
    )
}
"""Event type name -> model class."""

CURRENT_SCHEMA_VERSIONS: Final[dict[str, int]] = {
    name: cls.model_fields["schema_version"].default for name, cls in EVENT_CLASSES.items()
}
"""The schema version this code writes, per event type."""

ONE_EVENT_SUBMISSIONS: Final = 3
"""The event schema from which a ``TaskAssigned`` may carry its task's submission."""

EVENT_SCHEMA: Final = max(ONE_EVENT_SUBMISSIONS, *CURRENT_SCHEMA_VERSIONS.values())
"""The event schema this code reads and writes, which nodes report when they join: the
newest ``schema_version`` of any event type, or newer when events gained a meaning
without a new version of their own. A coordinator refuses a node of a newer schema
and writes to each node only what its schema reads (a task placed at once is one event
only for a node at ``ONE_EVENT_SUBMISSIONS`` or later)."""

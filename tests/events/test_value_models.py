"""SkillMetadata and TaskSpec: the week-5 field names, and unknown fields refused by the
models but ignored inside stored events (old code reads new events)."""

from __future__ import annotations

import orjson
import pytest
from pydantic import ValidationError

from eventsrc.events import (
    EVENT_ADAPTER,
    ScheduleAdded,
    ScheduleTiming,
    SkillMetadata,
    SkillRegistered,
    TaskSpec,
    TaskSubmitted,
)
from eventsrc.events.schema import union_schema
from tests.factories import envelope
from tests.projections.builders import LATER


def test_week5_metadata_fields_are_kept() -> None:
    meta = SkillMetadata(
        name="ml", author="OpenClaw", required_resources={"gpu": "recommended", "network": True}
    )
    assert meta.author == "OpenClaw"
    assert meta.resources == meta.required_resources == {"gpu": "recommended", "network": True}
    assert SkillMetadata(name="ml", resources={"cpu": 2}).required_resources == {"cpu": 2}


@pytest.mark.parametrize(
    "fields", [{"name": "x", "owner": "me"}, {"name": "x", "required_resource": {"gpu": 1}}]
)
def test_metadata_refuses_unknown_fields(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        SkillMetadata.model_validate(fields)


def test_task_spec_refuses_unknown_fields() -> None:
    with pytest.raises(ValidationError, match="name"):
        TaskSpec.model_validate({"skills": ["python"], "name": "nightly"})


def test_events_ignore_unknown_fields_of_what_they_carry() -> None:
    meta = SkillMetadata(name="ml", author="a")
    registered = orjson.loads(SkillRegistered(**envelope(), metadata=meta).model_dump_json())
    registered["metadata"]["licence"] = "from newer code"
    decoded = EVENT_ADAPTER.validate_json(orjson.dumps(registered))
    assert isinstance(decoded, SkillRegistered) and decoded.metadata == meta

    spec = TaskSpec(skills=("python",))
    event = TaskSubmitted(**envelope(), task_id="t1", spec=spec, queue_deadline=LATER)
    submitted = orjson.loads(event.model_dump_json())
    submitted["spec"]["deadline_hint"] = 5
    decoded = EVENT_ADAPTER.validate_json(orjson.dumps(submitted))
    assert isinstance(decoded, TaskSubmitted) and decoded.spec == spec

    timing = ScheduleTiming(every_s=60)
    added = ScheduleAdded(**envelope(), name="nightly", timing=timing, task=spec, anchor=LATER)
    stored = orjson.loads(added.model_dump_json())
    stored["timing"]["jitter_s"] = 3
    stored["task"]["deadline_hint"] = 5
    decoded = EVENT_ADAPTER.validate_json(orjson.dumps(stored))
    assert isinstance(decoded, ScheduleAdded)
    assert (decoded.timing, decoded.task) == (timing, spec)


def test_embedding_keeps_the_models_own_validators_and_strictness() -> None:
    # The embedded copies of the schemas still check what the models check...
    spec = TaskSpec(skills=("python",), after="t0")
    event = TaskSubmitted(**envelope(), task_id="t1", spec=spec, queue_deadline=LATER)
    submitted = orjson.loads(event.model_dump_json())
    submitted["spec"]["payload"] = [1]
    with pytest.raises(ValidationError, match="payload"):
        EVENT_ADAPTER.validate_json(orjson.dumps(submitted))
    # ... and leave the models outside events as strict as they were.
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        ScheduleTiming.model_validate({"every_s": 60, "jitter_s": 3})


def test_the_published_event_schema_does_not_forbid_unknown_fields() -> None:
    defs = union_schema()["$defs"]
    assert "additionalProperties" not in defs["SkillMetadata"]
    assert "additionalProperties" not in defs["TaskSpec"]


def test_a_stored_task_spec_is_validated_in_json_mode_throughout() -> None:
    # A Python step before the spec's own validation would turn its JSON into Python
    # objects to validate them again (what once doubled a TaskSubmitted's decoding).
    schema = TaskSubmitted.__pydantic_core_schema__["schema"]["fields"]["spec"]["schema"]
    kinds = []
    while schema["type"] != "model":
        kinds.append(schema["type"])
        schema = schema["schema"]
    assert "function-before" not in kinds and "function-wrap" not in kinds
    assert schema["cls"] is TaskSpec and schema["config"]["extra_fields_behavior"] == "ignore"

"""The codec: round trips, upcasting, and refusal of everything that is not an event."""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from pydantic import BaseModel

from eventsrc.errors import UndecodableEventError, UnknownEventTypeError
from eventsrc.events import EVENT_CLASSES, Heartbeat, decode, encode
from eventsrc.events.schema import event_schemas, union_schema
from tests.factories import envelope, one_of_each


@pytest.mark.parametrize("event", one_of_each(), ids=lambda e: e.type)
def test_every_event_type_round_trips(event: Any) -> None:
    assert decode(encode(event), subject=event.subject) == event


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b"not json at all", "not JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (b'{"type": "Heartbeat"}', "Field required"),
        (b'{"type": "Heartbeat", "schema_version": "x"}', "schema_version"),
    ],
)
def test_garbage_is_undecodable_with_its_sequence(raw: bytes, words: str) -> None:
    with pytest.raises(UndecodableEventError) as caught:
        decode(raw, seq=42, subject="hb.n1")
    assert caught.value.seq == 42
    assert caught.value.raw == raw
    assert words in str(caught.value)
    assert "42" in str(caught.value)


def test_unknown_type_is_reported_as_such() -> None:
    with pytest.raises(UnknownEventTypeError, match="FromTheFuture"):
        decode(b'{"type": "FromTheFuture", "event_id": "x"}', seq=3)


def test_unknown_fields_are_ignored() -> None:
    event = Heartbeat(**envelope("node:n1"), node_id="n1")
    data = orjson.loads(encode(event))
    data["added_by_a_newer_version"] = {"anything": 1}
    assert decode(orjson.dumps(data)) == event


def test_payload_must_match_its_subject() -> None:
    event = Heartbeat(**envelope("node:n1"), node_id="n1")
    with pytest.raises(UndecodableEventError, match=r"stored under hb\.n2"):
        decode(encode(event), subject="hb.n2", seq=7)


def test_older_versions_are_upcast_before_validation() -> None:
    event = Heartbeat(**envelope("node:n1"), node_id="n1", cpu_percent=50.0)
    old = orjson.loads(encode(event))
    old["schema_version"] = 0  # pretend v0 stored the load as "cpu" in 0..1
    old["cpu"] = old.pop("cpu_percent") / 100

    def v0_to_v1(data: dict[str, Any]) -> dict[str, Any]:
        data["cpu_percent"] = data.pop("cpu") * 100
        return data

    with pytest.raises(UndecodableEventError, match="no upcaster"):
        decode(orjson.dumps(old))
    upcast = decode(orjson.dumps(old), upcasters={("Heartbeat", 0): v0_to_v1})
    assert upcast.cpu_percent == 50.0  # type: ignore[union-attr]
    assert upcast.schema_version == 1


def test_every_event_type_has_a_json_schema() -> None:
    schemas = event_schemas()
    assert set(schemas) == set(EVENT_CLASSES)
    for name, schema in schemas.items():
        assert schema["properties"]["type"]["const"] == name
        assert "event_id" in schema["required"]
    assert union_schema()["discriminator"]["propertyName"] == "type"


def _may_be_none(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if annotation is type(None) or annotation is Any:
        return True
    if origin is typing.Annotated:
        return _may_be_none(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return any(_may_be_none(arg) for arg in typing.get_args(annotation))
    return False


def _models_in(annotation: Any) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
        return
    for arg in typing.get_args(annotation):
        yield from _models_in(arg)


def _stored_models() -> set[type[BaseModel]]:
    """Every event model and every value model an event carries, nested ones included."""
    found: set[type[BaseModel]] = set()
    todo: list[type[BaseModel]] = list(EVENT_CLASSES.values())
    while todo:
        model = todo.pop()
        if model not in found:
            found.add(model)
            for info in model.model_fields.values():
                todo.extend(_models_in(info.annotation))
    return found


def test_every_field_that_may_be_null_defaults_to_null() -> None:
    # encode leaves null fields out; that is only the same event if a missing field
    # reads as null, now and in every later version of the model.
    models = _stored_models()
    assert {"TaskSpec", "SkillMetadata", "Candidate"} <= {m.__name__ for m in models}
    wrong = [
        f"{model.__name__}.{name} (default {info.get_default(call_default_factory=True)!r})"
        for model in models
        for name, info in model.model_fields.items()
        if _may_be_none(info.annotation)
        and not (info.default is None and info.default_factory is None)
    ]
    assert wrong == []


@pytest.mark.parametrize("event", one_of_each(), ids=lambda e: e.type)
def test_null_fields_are_not_stored_and_old_events_read_the_same(event: Any) -> None:
    stored = encode(event)
    # No field is stored as null (the factories' free-form values hold no nulls).
    assert b":null" not in stored
    # An event stored with every field, as before null fields were left out.
    every_field = event.__pydantic_serializer__.to_json(event)
    assert len(stored) <= len(every_field)
    assert decode(every_field, subject=event.subject) == decode(stored, subject=event.subject)
    assert decode(stored, subject=event.subject) == event


def test_nulls_inside_free_form_values_are_kept() -> None:
    (submitted,) = [e for e in one_of_each() if e.type == "TaskSubmitted"]
    payload = {"keep": None, "list": [None, {"deep": None}]}
    spec = submitted.spec.model_copy(update={"payload": payload})
    event = submitted.model_copy(update={"spec": spec})
    stored = orjson.loads(encode(event))
    assert stored["spec"]["payload"] == payload
    assert "parent_task_id" not in stored
    assert decode(encode(event), subject=event.subject) == event

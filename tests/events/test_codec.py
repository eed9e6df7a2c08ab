"""The codec: round trips, upcasting, and refusal of everything that is not an event."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

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

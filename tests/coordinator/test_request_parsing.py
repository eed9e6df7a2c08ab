"""How the API reads a request's bytes, as pure code: a request is parsed and validated
once, and the check that orjson can store what it carries runs only when the bytes may
hold an integer beyond 64 bits, which then is refused as before."""

from __future__ import annotations

import orjson
import pytest
from pydantic import ValidationError

from eventsrc.commands import api
from eventsrc.coordinator.endpoints import _parse
from eventsrc.errors import InvalidRequestError
from eventsrc.events import may_hold_long_number

BIG = 2**64 + 1


def run_request(**spec: object) -> bytes:
    return orjson.dumps({"task_id": "t1", "spec": {"skills": ["search"], **spec}})


def test_a_plain_request_is_read_without_the_long_number_check() -> None:
    raw = run_request(payload={"n": 123456789012345678, "s": "x"}, priority=3)
    assert not may_hold_long_number(raw)
    command = _parse(api.RunTask, raw)
    assert isinstance(command, api.RunTask)
    assert command.spec.payload == {"n": 123456789012345678, "s": "x"}


@pytest.mark.parametrize(
    "raw",
    [
        b'{"task_id": "t1", "spec": {"skills": ["search"], "payload": %d}}' % BIG,
        b'{"task_id": "t1", "spec": {"skills": ["search"], "payload": {"a": [%d]}}}' % BIG,
        b'{"task_id": "t1", "spec": {"skills": ["search"], "priority": "%d"}}' % BIG,
        # The digits spelt as escapes: no run of digits in the bytes, the same integer.
        b'{"task_id": "t1", "spec": {"skills": ["search"], "priority": "'
        + b"".join(b"\\u00%x" % ord(c) for c in str(BIG))
        + b'"}}',
    ],
)
def test_an_integer_beyond_64_bits_is_refused_with_a_hint(raw: bytes) -> None:
    assert may_hold_long_number(raw)
    with pytest.raises(InvalidRequestError, match="send such numbers as strings"):
        _parse(api.RunTask, raw)


def test_numbers_json_cannot_hold_are_refused_before_validation() -> None:
    for raw in (b'{"task_id": "t1", "spec": {"skills": ["a"], "payload": NaN}}', b"{x"):
        with pytest.raises(InvalidRequestError, match="not valid JSON"):
            _parse(api.RunTask, raw)
    with pytest.raises(ValidationError):
        _parse(api.RunTask, b'{"task_id": "t1", "spec": {"skills": ["a"], "priority": 1e30}}')

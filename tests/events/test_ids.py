"""The one id validator, property-tested against the subject-token rules."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from eventsrc.errors import InvalidIdError
from eventsrc.events import MAX_TOKEN_LENGTH, SkillMetadata, validate_token

FORBIDDEN = ".*>"


def is_valid(value: str) -> bool:
    return 1 <= len(value) <= MAX_TOKEN_LENGTH and not any(
        c in FORBIDDEN or c.isspace() or ord(c) < 32 or 127 <= ord(c) <= 159 for c in value
    )


@pytest.mark.parametrize("bad", ["a.b", "*", ">", "a b", "", "x" * 300, "tab\there", "nl\n"])
def test_named_bad_ids_are_refused_clearly(bad: str) -> None:
    with pytest.raises(InvalidIdError) as caught:
        validate_token(bad, what="task id")
    message = str(caught.value)
    assert message.startswith("task id")
    assert "\n" not in message


@pytest.mark.parametrize("good", ["node_001", "data-analysis", "t-1_2", "ünïcode", "a" * 128])
def test_good_ids_pass(good: str) -> None:
    assert validate_token(good) == good


@given(st.text(max_size=200))
def test_validator_agrees_with_the_rules(value: str) -> None:
    if is_valid(value):
        assert validate_token(value) == value
    else:
        with pytest.raises(InvalidIdError):
            validate_token(value)


@given(st.text(max_size=200))
def test_model_fields_use_the_same_rule(value: str) -> None:
    if is_valid(value):
        assert SkillMetadata(name=value).name == value
    else:
        with pytest.raises(ValidationError):
            SkillMetadata(name=value)


def test_non_strings_are_refused() -> None:
    with pytest.raises(InvalidIdError, match="must be a string"):
        validate_token(12)

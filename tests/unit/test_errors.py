"""The error tree, the one table between errors and API codes, and the one-line
validation message: pure rules, no server."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from types import ModuleType

import pytest
from pydantic import BaseModel, ValidationError

import eventsrc
import eventsrc.api_client
import eventsrc.errors
import eventsrc.node.messaging
import replay_tools
from eventsrc.commands import api
from eventsrc.errors import (
    CoordinatorUnavailableError,
    EventsrcError,
    InvalidIdError,
    NotLeaderError,
    RefusedError,
    StoreFullError,
    first_problem,
)


def _modules(package: ModuleType) -> list[ModuleType]:
    found = [package]
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        found.append(importlib.import_module(info.name))
    return found


def _defined_errors() -> dict[str, type[BaseException]]:
    """Every exception class defined in eventsrc or replay_tools, by name."""
    errors: dict[str, type[BaseException]] = {}
    for module in _modules(eventsrc) + _modules(replay_tools):
        for name, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == module.__name__
            ):
                errors[name] = value
    return errors


DEFINED = _defined_errors()
OURS = sorted(
    (kind for kind in DEFINED.values() if issubclass(kind, EventsrcError)),
    key=lambda kind: kind.__name__,
)


def _same_family(one: type[BaseException], other: type[BaseException]) -> bool:
    """One is a base of the other, or both share a base below the root: an ``except``
    for that base catches both."""
    shared = set(one.__mro__) & set(other.__mro__)
    return any(issubclass(base, EventsrcError) and base is not EventsrcError for base in shared)


def test_the_walk_finds_the_errors_defined_outside_errors_py() -> None:
    # A guard on the walk itself: if it found nothing outside errors.py, the test below
    # would pass for the wrong reason.
    assert {"QueueFullError", "SkillFileError", "UsageError", "ExportFileError"} <= set(DEFINED)


def test_the_docstring_tree_names_every_error_class() -> None:
    doc = eventsrc.errors.__doc__ or ""
    named = set(re.findall(r"\b([A-Z]\w*)\b", doc))  # in the tree, or beside it
    missing = sorted(set(DEFINED) - named)
    assert not missing, f"eventsrc/errors.py's docstring tree lacks {missing}"


def _tree() -> dict[str, str]:
    """Each class drawn in the docstring tree, mapped to the class drawn as its parent."""
    parents: dict[str, str] = {}
    drawn: list[tuple[int, str]] = []
    for line in (eventsrc.errors.__doc__ or "").splitlines():
        entry = re.match(r"^([ │├└─]*)([A-Z]\w*Error)\b", line)
        if entry is None:
            continue
        column, name = len(entry.group(1)), entry.group(2)
        parent = next((above for at, above in reversed(drawn) if at == column - 4), "")
        parents[name] = parent
        drawn.append((column, name))
    return parents


def test_the_tree_draws_every_error_of_ours_under_a_base_of_it() -> None:
    tree = _tree()
    missing = sorted(kind.__name__ for kind in OURS if kind.__name__ not in tree)
    assert not missing, f"eventsrc/errors.py's tree does not draw {missing}"
    stale = sorted(set(tree) - set(DEFINED))
    assert not stale, f"eventsrc/errors.py's tree draws classes that do not exist: {stale}"
    for name, parent in tree.items():
        if name == "EventsrcError":
            assert parent == ""
        else:
            assert issubclass(DEFINED[name], DEFINED[parent]), f"{name} is drawn under {parent}"


@pytest.mark.parametrize("row", api.ERROR_CODES, ids=lambda row: row.code)
def test_every_code_round_trips_to_an_error_of_the_same_family(row: api.ErrorCode) -> None:
    for sent in row.sent_for:
        assert api.code_for(sent) == row.code
        assert api.error_for(row.code) is row.raised_as
        # A base or a subclass of what was sent, so ``except`` works on both sides.
        assert issubclass(row.raised_as, sent) or issubclass(sent, row.raised_as), row


@pytest.mark.parametrize("kind", OURS, ids=lambda kind: kind.__name__)
def test_every_error_of_ours_comes_back_as_its_family_or_as_refused(
    kind: type[EventsrcError],
) -> None:
    code = api.code_for(kind)
    back = api.error_for(code)
    matched = [row for row in api.ERROR_CODES if issubclass(kind, row.sent_for)]
    if matched:
        assert _same_family(kind, back), f"{kind.__name__} -> {code} -> {back.__name__}"
    else:
        assert (code, back) == (api.ERR_REFUSED, RefusedError)


def test_each_code_has_one_row_and_every_api_code_but_internal_has_one() -> None:
    codes = [row.code for row in api.ERROR_CODES]
    assert len(codes) == len(set(codes))
    declared = {value for name, value in vars(api).items() if name.startswith("ERR_")}
    assert set(codes) == declared - {api.ERR_INTERNAL}


@pytest.mark.parametrize(
    ("kind", "code", "back"),
    [
        (InvalidIdError, api.ERR_INVALID, eventsrc.errors.InvalidRequestError),
        (NotLeaderError, api.ERR_UNAVAILABLE, CoordinatorUnavailableError),
        (eventsrc.errors.LeaseLostError, api.ERR_UNAVAILABLE, CoordinatorUnavailableError),
        (StoreFullError, api.ERR_REFUSED, RefusedError),
        (eventsrc.errors.ConcurrencyError, api.ERR_UNAVAILABLE, CoordinatorUnavailableError),
        (eventsrc.errors.NodeIdInUseError, api.ERR_CONFLICT, eventsrc.errors.DomainError),
        (eventsrc.errors.ConfigError, api.ERR_REFUSED, RefusedError),
    ],
)
def test_the_findings_that_once_came_back_wrong(
    kind: type[EventsrcError], code: str, back: type[EventsrcError]
) -> None:
    assert (api.code_for(kind), api.error_for(code)) == (code, back)


@pytest.mark.parametrize("code", [api.ERR_INTERNAL, "no_such_code", ""])
def test_an_unknown_code_comes_back_as_the_root(code: str) -> None:
    assert api.error_for(code) is EventsrcError


def test_a_coordinator_that_cannot_answer_now_is_retried_as_unavailable() -> None:
    # eventsrc.client retries on it; CLIs exit "cannot reach the cluster" (3) for it.
    assert issubclass(CoordinatorUnavailableError, eventsrc.errors.ServerUnavailableError)
    assert issubclass(CoordinatorUnavailableError, NotLeaderError)


def test_one_request_timeout_error_importable_where_it_is_used() -> None:
    one = eventsrc.errors.RequestTimeoutError
    assert eventsrc.node.messaging.RequestTimeoutError is one
    assert eventsrc.api_client.RequestTimeoutError is one
    assert eventsrc.api_client.CoordinatorUnavailableError is CoordinatorUnavailableError
    assert issubclass(one, eventsrc.errors.ServerUnavailableError)


class _Shape(BaseModel):
    size: int
    name: str


@pytest.mark.parametrize(
    ("value", "line"),
    [
        ({"size": "x", "name": "a"}, "size: Input should be a valid integer"),
        ({"size": "x"}, "size: Input should be a valid integer"),
        ({}, "size: Field required (+1 more)"),
        ("not a dict", "shape: Input should be a valid dictionary"),
    ],
)
def test_the_first_validation_problem_is_one_line(value: object, line: str) -> None:
    with pytest.raises(ValidationError) as caught:
        _Shape.model_validate(value)
    problem = first_problem(caught.value, root="shape")
    assert str(problem).startswith(line)
    assert "\n" not in str(problem)
    assert problem.more == caught.value.error_count() - 1


def test_the_location_of_a_nested_problem_is_dotted() -> None:
    class Outer(BaseModel):
        inner: _Shape

    with pytest.raises(ValidationError) as caught:
        Outer.model_validate({"inner": {"size": 1, "name": 2}})
    problem = first_problem(caught.value)
    assert (problem.where, problem.more) == ("inner.name", 0)
    assert str(problem) == "inner.name: Input should be a valid string"

"""The what-if options as text, read into a ``Scenario``: one reader for every front.

``replay_tools what-if`` reads them from its flags (``--skill-on python=n2``), the
dashboard from its query string (``skill_on=python=n2``): the same values, the same
one-line errors, each naming the option as its caller spells it (``spell``).
Pure: InvalidRequestError for a value that cannot be used.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from eventsrc.commands.simulate import NewNode, Scenario, Spell, flag
from eventsrc.errors import InvalidRequestError
from eventsrc.events import validate_token

ORDERED = ("add-node", "skills", "capacity", "labels")
"""The options whose order matters: ``skills``, ``labels`` and a bare ``capacity N``
belong to the ``add-node`` before them."""


def parse_time(text: str, *, flag: str) -> datetime:
    """An ISO 8601 time; without a zone it is taken as UTC. InvalidRequestError names
    ``flag`` and shows the form."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError as err:
        raise InvalidRequestError(
            f"{flag} {text!r} is not an ISO 8601 time; write e.g. 2026-01-31T12:00:00Z"
        ) from err
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def scenario_from_options(
    ordered: Sequence[tuple[str, str]],
    *,
    remove: Sequence[str] = (),
    drains: Sequence[str] = (),
    skill_on: Sequence[str] = (),
    limits: Sequence[str] = (),
    since: str | None = None,
    until: str | None = None,
    spell: Spell = flag,
) -> Scenario:
    """The scenario the options ask for; raises InvalidRequestError (one line).

    ``ordered`` holds (name, value) of ``add-node``, ``skills``, ``capacity`` and
    ``labels`` (names as in ``ORDERED``) in the order given: ``skills``, ``labels``
    and a bare ``capacity N`` belong to the ``add-node`` before them, ``capacity
    NAME=N`` changes a recorded node.
    """
    added: list[dict[str, Any]] = []
    capacity: list[tuple[str, int]] = []
    for name, value in ordered:
        option = spell(name)
        if name == "add-node":
            added.append({"node_id": _name(option, value), "skills": (), "labels": ()})
        elif name == "capacity" and "=" in value:
            target, _, number = value.partition("=")
            capacity.append((_name(option, target), _count(option, number, value)))
        elif not added:
            raise InvalidRequestError(
                f"{option} {value}: it belongs to an {spell('add-node')} NAME given before it"
            )
        elif name == "skills":
            added[-1]["skills"] = _names(option, value)
        elif name == "capacity":
            added[-1]["capacity"] = _count(option, value, value)
        else:
            added[-1]["labels"] = _pairs(option, value)
    for node in added:
        if not node["skills"]:
            raise InvalidRequestError(
                f"{spell('add-node')} {node['node_id']} needs {spell('skills')} a,b after it"
            )
    start = parse_time(since, flag=spell("from")) if since else None
    end = parse_time(until, flag=spell("until")) if until else None
    if start is not None and end is not None and start > end:
        raise InvalidRequestError(
            f"{spell('from')} is after {spell('until')}; give the window's start first"
        )
    return Scenario(
        add_nodes=tuple(NewNode(**node) for node in added),
        remove_nodes=tuple(_name(spell("remove-node"), n) for n in remove),
        capacity=tuple(capacity),
        drains=tuple(_drain(spell("drain"), value) for value in drains),
        skill_on=tuple(_skill_on(spell("skill-on"), value) for value in skill_on),
        since=start,
        until=end,
        limits=tuple(_limit(spell("limit"), value) for value in limits),
    )


def _name(option: str, text: str) -> str:
    name = text.strip()
    if not name or any(c in name for c in ".*> ,=@"):
        raise InvalidRequestError(
            f"{option} {text!r}: not a node or skill name (no . * > , = @ or spaces)"
        )
    return name


def _names(option: str, text: str) -> tuple[str, ...]:
    return tuple(_name(option, part) for part in text.split(","))


def _count(option: str, text: str, value: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise InvalidRequestError(
            f"{option} {value}: the capacity must be a whole number of slots, 1 or more"
        )
    return number


def _pairs(option: str, text: str) -> tuple[tuple[str, str], ...]:
    pairs = []
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise InvalidRequestError(f"{option} {text}: write labels as key=value[,key=value]")
        pairs.append((key.strip(), value.strip()))
    return tuple(sorted(pairs))


def _drain(option: str, text: str) -> tuple[str, datetime]:
    name, sep, when = text.partition("@")
    if not sep:
        raise InvalidRequestError(f"{option} {text}: write NODE@TIME, e.g. n1@2026-01-31T12:00:00Z")
    return _name(option, name), parse_time(when, flag=option)


def _skill_on(option: str, text: str) -> tuple[str, tuple[str, ...]]:
    skill, sep, nodes = text.partition("=")
    if not sep or not nodes:
        raise InvalidRequestError(f"{option} {text}: write SKILL=NODE[,NODE]")
    return _name(option, skill), _names(option, nodes)


def _limit(option: str, text: str) -> tuple[str, int]:
    key, sep, number = text.partition("=")
    if not sep:
        raise InvalidRequestError(f"{option} {text}: write KEY=N")
    try:
        key = validate_token(key.strip(), what="limit key")
    except InvalidRequestError as err:
        raise InvalidRequestError(f"{option} {text}: {err}") from err
    return key, _count(option, number, text)


QUERY_NAMES = (
    "skill_on",
    "add_node",
    "skills",
    "capacity",
    "labels",
    "remove_node",
    "drain",
    "limit",
    "from",
    "until",
)
"""The options as a query string writes them (``skill_on=python=n2``), in the order
the error message lists them."""


def query_name(name: str) -> str:
    """A query string's spelling of an option: ``skill-on`` -> ``skill_on``."""
    return name.replace("-", "_")


def scenario_from_query(pairs: Iterable[tuple[str, str]]) -> Scenario:
    """The scenario of a query string's (key, value) pairs, in their order (a repeated
    key adds one more; ``from`` and ``until``: the last one counts). InvalidRequestError
    (one line) for an unknown key or a value that cannot be used."""
    ordered: list[tuple[str, str]] = []
    lists: dict[str, list[str]] = {"remove-node": [], "drain": [], "skill-on": [], "limit": []}
    window: dict[str, str] = {}
    for key, value in pairs:
        if key not in QUERY_NAMES:
            raise InvalidRequestError(
                f"{key} is not a what-if option; use {', '.join(QUERY_NAMES)}"
            )
        name = key.replace("_", "-")
        if name in ORDERED:
            ordered.append((name, value))
        elif name in lists:
            lists[name].append(value)
        else:
            window[name] = value
    return scenario_from_options(
        ordered,
        remove=lists["remove-node"],
        drains=lists["drain"],
        skill_on=lists["skill-on"],
        limits=lists["limit"],
        since=window.get("from"),
        until=window.get("until"),
        spell=query_name,
    )

"""Hypothesis strategies for hostile input: bad ids, weird JSON, junk bytes.

JSON is written by ``dump`` rather than a JSON library so that it can hold what strict
encoders refuse but wire bytes may carry: NaN and Infinity, integers beyond 64 bits,
lone surrogates, duplicate keys and arbitrarily deep nesting (``Raw`` fragments).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st


@dataclass(frozen=True)
class Raw:
    """A JSON fragment inserted as it is (a depth bomb, a 5000-digit number, a 600 kB
    string...), kept as a recipe so that a failing example prints short."""

    recipe: str
    n: int = 0

    @property
    def text(self) -> str:
        return {
            "list bomb": "[" * self.n + "]" * self.n,
            "object bomb": '{"a":' * self.n + "1" + "}" * self.n,
            "digits": "1" * self.n,
            "string": '"' + "x" * self.n + '"',
        }.get(self.recipe, self.recipe)


@dataclass(frozen=True)
class Duplicates:
    """A JSON object written with its key/value pairs as given, repeated keys included."""

    pairs: tuple[tuple[str, Any], ...]


def dump(value: Any) -> str:
    """JSON text of ``value``; see the module docstring for what it may contain."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, Duplicates):
        return "{" + ",".join(f"{json.dumps(k)}:{dump(v)}" for k, v in value.pairs) + "}"
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{dump(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(dump(item) for item in value) + "]"
    # ensure_ascii (the default) keeps the text ASCII: lone surrogates become \ud800
    # escapes, which strict parsers refuse. allow_nan writes NaN and Infinity.
    return json.dumps(value)


FORBIDDEN_IN_IDS = ".*> \t\n\r\x00\x01\x1f\x7f\x85\xa0\u2028\u3000"

bad_tokens = st.one_of(
    st.sampled_from(
        [
            "",
            ".",
            "*",
            ">",
            "a.b",
            "a.*",
            "a.>",
            "evt.>",
            "*.to.n1",
            "a b",
            " lead",
            "trail ",
            "tab\there",
            "new\nline",
            "nul\x00",
            "del\x7f",
            "nel\x85",
            "x" * 129,
            "é" * 129,
            "x" * 1000,
        ]
    ),
    st.builds(
        lambda before, bad, after: before + bad + after,
        st.text(max_size=6),
        st.sampled_from(list(FORBIDDEN_IN_IDS)),
        st.text(max_size=6),
    ),
    st.integers(129, 400).map(lambda n: "t" * n),
)
"""Strings that must never become a subject token."""

depth_bombs = st.builds(
    Raw,
    st.sampled_from(["list bomb", "object bomb"]),
    st.sampled_from([150, 199, 201, 254, 300, 1100, 5000]),
)
huge_strings = st.builds(Raw, st.just("string"), st.sampled_from([10_000, 130_000, 600_000]))
big_numbers = st.one_of(
    st.integers(min_value=2**64, max_value=2**200),
    st.integers(min_value=-(2**200), max_value=-(2**63) - 1),
    st.just(Raw("digits", 5000)),
    st.sampled_from([Raw("1e999"), Raw("-1e999"), Raw("NaN"), Raw("-Infinity")]),
)

leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    bad_tokens,
    big_numbers,
)
hostile_values = st.recursive(
    st.one_of(leaves, depth_bombs, huge_strings),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=8), inner, max_size=4),
        st.lists(st.tuples(st.sampled_from(["a", "task_id", "spec"]), inner), max_size=4).map(
            lambda pairs: Duplicates(tuple(pairs))
        ),
    ),
    max_leaves=8,
)
"""Any JSON value, hostile leaves included (NaN, 2**100, 600 kB strings, bombs)."""

JUNK_LITERALS: dict[str, bytes] = {
    "empty": b"",
    "spaces": b" " * 1000,
    "open brace": b"{",
    "close brace": b"}",
    "trailing garbage": b"{}garbage",
    "two documents": b"{} {}",
    "byte order mark": b"\xef\xbb\xbf{}",
    "nul bytes": b"\x00" * 64,
    "not utf-8": b"\xff\xfe\xfd",
    "NaN": b"NaN",
    "unclosed lists": b"[" * 100_000,
    "unclosed objects": b'{"a":' * 5000,
    "700 kB string": b'"' + b"x" * 700_000 + b'"',
    "5000 digits": b"1" * 5000,
    "duplicate keys": b'{"task_id": "t", "task_id": {"x": 1}}',
    "1e999 payload": b'{"spec": {"skills": ["python"], "payload": 1e999}}',
    "proto": b'{"__proto__": {"ok": true}}',
}
"""Hand-picked bad bodies, by name (a failing example prints the name)."""


def junk_body(junk: Any) -> bytes:
    """The bytes of a ``junk_bodies`` example."""
    if isinstance(junk, bytes):
        return junk
    if isinstance(junk, str) and junk in JUNK_LITERALS:
        return JUNK_LITERALS[junk]
    return dump(junk).encode()


junk_bodies = st.one_of(
    st.binary(max_size=300),
    hostile_values,
    st.sampled_from(sorted(JUNK_LITERALS)),
)
"""Request bodies of any shape (random bytes, random JSON, named literals); turn an
example into bytes with ``junk_body``."""


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into a JSON template (the root included)."""
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += paths(item, (*prefix, index))
    return found


def mutated(template: Any, path: tuple[Any, ...], operation: str, new: Any) -> Any:
    """A deep copy of ``template`` with the value at ``path`` replaced, removed,
    duplicated with another value, or given an unknown sibling."""
    if not path:
        return new
    copy = json.loads(json.dumps(template))
    parent = copy
    for step in path[:-1]:
        parent = parent[step]
    key = path[-1]
    if operation == "replace":
        parent[key] = new
    elif operation == "remove":
        del parent[key]
    elif operation == "unknown" and isinstance(parent, dict):
        parent[f"{key}_surprise"] = new
    elif operation == "duplicate" and isinstance(parent, dict):
        pairs = [*parent.items(), (key, new)]
        if len(path) == 1:
            return Duplicates(tuple(pairs))
        grand = copy
        for step in path[:-2]:
            grand = grand[step]
        grand[path[-2]] = Duplicates(tuple(pairs))
    else:
        parent[key] = new
    return copy


OPERATIONS = st.sampled_from(["replace", "replace", "replace", "remove", "unknown", "duplicate"])

"""The connection's header parser gives what nats-py's own gives, for every kind of line."""

from __future__ import annotations

import itertools

import pytest
from nats.aio.client import Client

from eventsrc.store.connection import _Client

LINES = [
    b"Nats-Msg-Id: 57a7879ac66e70d800000000",
    b"Nats-Expected-Last-Subject-Sequence: 12",
    b"Name:Value",
    b"Name:\tValue ",
    b"  Padded  :  value  ",
    b"Colons: a:b:c",
    b"Empty:",
    b": no name",
    b"no colon at all",
    b"",
    b"Bad Name: inside space",
    b"Tab\tName: x",
    b"\x1cSep: unicode whitespace",
    b"\x1c: only a separator",
    b"N\xc3\xa4me: non-ASCII name",
    b"Value: caf\xc3\xa9",
    b"Broken: \xff\xfe",
    b"Dup: first",
    b"Dup: second",
]


def test_nats_py_has_the_parser_we_replace() -> None:
    # A later nats-py without it would silently bypass ours: fail here instead.
    assert callable(Client.__dict__["_parse_header_lines"].__func__)


@pytest.mark.parametrize("count", [1, 2, 3])
def test_same_headers_as_nats_py(count: int) -> None:
    for lines in itertools.permutations(LINES, count):
        raw = b"\r\n".join(lines) + b"\r\n\r\n"
        assert _Client._parse_header_lines(raw) == Client._parse_header_lines(raw), raw

"""The one validator for ids that become NATS subject tokens.

Skill names, node ids and task ids are spliced into subjects (``evt.task.<id>.lifecycle``),
so a dot, a wildcard or whitespace in them would address the wrong messages.
"""

from __future__ import annotations

import itertools
import random
import re
from typing import Annotated

from pydantic import StringConstraints

from eventsrc.errors import InvalidIdError

MAX_TOKEN_LENGTH = 128

# Forbidden anywhere in a token: subject separators/wildcards, whitespace and control
# characters. The same class is used by pydantic (Rust regex) and by validate_token.
_FORBIDDEN_CLASS = r".*>\s\x00-\x1f\x7f-\x9f"
TOKEN_PATTERN = rf"^[^{_FORBIDDEN_CLASS}]{{1,{MAX_TOKEN_LENGTH}}}$"
_FORBIDDEN = re.compile(rf"[{_FORBIDDEN_CLASS}]")

Token = Annotated[str, StringConstraints(pattern=TOKEN_PATTERN)]
"""A string usable as one subject token; checked when a model is validated."""


def validate_token(value: object, *, what: str = "id") -> str:
    """Return ``value`` if it can be a subject token, else raise InvalidIdError.

    ``what`` names the id in the message ("task id", "skill name", ...).
    """
    if not isinstance(value, str):
        raise InvalidIdError(f"{what} must be a string, got {type(value).__name__}")
    if not value:
        raise InvalidIdError(f"{what} is empty; give 1 to {MAX_TOKEN_LENGTH} characters")
    if len(value) > MAX_TOKEN_LENGTH:
        raise InvalidIdError(
            f"{what} is {len(value)} characters long; the limit is {MAX_TOKEN_LENGTH}"
        )
    bad = _FORBIDDEN.search(value)
    if bad is not None:
        raise InvalidIdError(
            f"{what} {value!r} contains {bad.group()!r} at position {bad.start()}; "
            f"ids may not contain '.', '*', '>', whitespace or control characters"
        )
    return value


_COUNTER = itertools.count()


def new_event_id() -> str:
    """A fresh, globally unique event id (also used as the ``Nats-Msg-Id``).

    64 random bits and a per-process counter: a third of uuid4's cost (no call into the
    OS per id). ``random`` reseeds from the OS in a forked child, so a fork never
    repeats its parent's ids even though the counter carries over.
    """
    return f"{random.getrandbits(64):016x}{next(_COUNTER):08x}"

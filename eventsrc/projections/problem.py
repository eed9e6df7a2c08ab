"""The one way a fold handler says a stored event cannot change the state."""

from __future__ import annotations

from typing import Literal

ProblemKind = Literal["illegal", "late", "fenced"]
"""``illegal``: the event contradicts the state (a bug or a forgery); ``late``: it came
after the state moved on (a race the history settles); ``fenced``: an older leader's."""


class Problem(Exception):
    """Why an event is skipped: raised by a handler before it changes the state, caught
    once in ``apply`` and counted under ``kind``. It never leaves the projections."""

    def __init__(self, kind: ProblemKind, text: str) -> None:
        super().__init__(text)
        self.kind: ProblemKind = kind
        self.text = text

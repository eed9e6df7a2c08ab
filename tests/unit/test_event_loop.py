"""Every program runs on uvloop unless EVENTSRC_UVLOOP turns it off, in one place."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from eventsrc.projections.state import NodeIds
from eventsrc.runtime import UVLOOP_ENV, loop_name, run_program


async def _loop_type() -> int:
    return 1 if isinstance(asyncio.get_running_loop(), uvloop.Loop) else 0


def test_programs_run_on_uvloop_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(UVLOOP_ENV, raising=False)
    assert loop_name() == "uvloop"
    assert run_program(_loop_type) == 1


@pytest.mark.parametrize("off", ["0", "false", "No", " off "])
def test_eventsrc_uvloop_0_runs_asyncios_own_loop(
    monkeypatch: pytest.MonkeyPatch, off: str
) -> None:
    monkeypatch.setenv(UVLOOP_ENV, off)
    assert loop_name() == "asyncio"
    assert run_program(_loop_type) == 0


def test_node_ids_are_a_sequence_equal_to_the_list_of_them() -> None:
    ids = NodeIds(["a", "b"])
    as_list = ["a", "b"]
    assert ids == as_list and ids == ("a", "b")
    assert as_list == ids  # the list on the left: list.__eq__ defers to ours
    assert ids != ["b", "a"] and ids != ["a"]
    assert (ids != as_list) is False
    assert list(ids) == ["a", "b"] and ids[1] == "b" and len(ids) == 2
    assert hash(ids) == hash(("a", "b"))

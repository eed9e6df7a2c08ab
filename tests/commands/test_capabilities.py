"""A skill some node found but cannot run is known: listed, waited for, timed out with why.

Only a skill no node has ever reported (and not in the catalog) is unknown.
"""

from __future__ import annotations

from datetime import timedelta

from eventsrc.commands.base import COORDINATOR
from eventsrc.commands.tasks import SubmitTask, decide_submit, reconcile
from eventsrc.commands.views import list_skill_infos, task_info
from eventsrc.events import (
    NodeCapabilitiesReported,
    TaskQueued,
    TaskRejected,
    TaskSpec,
    TaskTimedOut,
    UnavailableSkill,
)
from tests.factories import T0
from tests.projections.builders import Fold, by_node, joined

GHOST = UnavailableSkill(
    name="ghost-tool",
    description="Haunts things",
    missing_bins=("ghost-bin",),
    install=({"id": "brew", "kind": "brew", "label": "Install ghost (brew)", "bins": "ghost-bin"},),
)


def alpha_reports_ghost() -> Fold:
    run = Fold()
    run.fold(
        joined("alpha"),
        NodeCapabilitiesReported(**by_node("alpha"), node_id="alpha", unavailable=(GHOST,)),
    )
    return run


def submit(run: Fold, skill: str, **spec: float) -> tuple[object, ...]:
    command = SubmitTask(task_id="t1", spec=TaskSpec(skills=(skill,), **spec))
    return decide_submit(run.state, command, stamp=COORDINATOR.stamp(T0))


def test_a_reported_skill_no_node_can_run_waits_saying_who_would_with_what() -> None:
    run = alpha_reports_ghost()
    _, followup = submit(run, "ghost-tool")
    assert isinstance(followup, TaskQueued)
    assert followup.reason == (
        "no node can run ghost-tool now; alpha would run ghost-tool with bin:ghost-bin "
        "(install: Install ghost (brew))"
    )
    assert followup.would_qualify == (followup.reason.split("now; ")[1],)


def test_with_queue_timeout_0_it_is_rejected_at_once_with_that_reason() -> None:
    _, followup = submit(alpha_reports_ghost(), "ghost-tool", queue_timeout_s=0)
    assert isinstance(followup, TaskRejected)
    assert followup.reason.startswith("no node can run ghost-tool now; alpha would run")
    assert followup.reason.endswith("(queue timeout 0: not waiting)")
    assert followup.missing_skills == ()


def test_a_skill_no_node_ever_reported_is_unknown() -> None:
    _, followup = submit(alpha_reports_ghost(), "phantom")
    assert isinstance(followup, TaskRejected)
    assert followup.reason == "unknown skills: phantom (not in the catalog)"


def test_at_its_queue_timeout_the_task_times_out_with_the_reason_it_waited_for() -> None:
    run = alpha_reports_ghost()
    run.fold(*submit(run, "ghost-tool", queue_timeout_s=5))  # type: ignore[arg-type]
    ((_, events),) = reconcile(run.state, stamp=COORDINATOR.stamp(T0 + timedelta(seconds=30)))
    assert [type(e) for e in events] == [TaskTimedOut]
    run.fold(*events)
    info = task_info(run.state.tasks["t1"])
    assert info.state == "timed_out"
    assert "passed while waiting: no node can run ghost-tool now; alpha would" in info.reason


def test_every_reported_skill_is_in_the_skills_view_with_its_would_be_holders() -> None:
    (ghost,) = list_skill_infos(alpha_reports_ghost().state)
    assert (ghost.name, ghost.description, ghost.holders) == ("ghost-tool", "Haunts things", ())
    (holder,) = ghost.would_be_holders
    assert holder.node_id == "alpha"
    assert holder.lacks == ("bin:ghost-bin",)
    assert holder.install == "Install ghost (brew)"

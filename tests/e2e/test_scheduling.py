"""Placement through the real CLI: the week-5 scenario, rejection, waiting, queue timeout.

Placement and "waiting is never silent" (docs/concepts.md); ``eventsrc submit --json``.
"""

from __future__ import annotations

import eventsrc
from eventsrc.events import SkillMetadata
from eventsrc.node.builtins import BUILTIN_SKILLS
from tests.e2e.conftest import E2E


async def test_the_seeds_scenario_places_as_written(e2e: E2E) -> None:
    # The catalog comes from the nodes themselves: each registers its built-ins.
    await e2e.start_nodes(
        {
            "node_001": ["python", "search"],
            "node_002": ["python", "weather"],
            "node_003": ["python", "ml", "data-analysis"],
        }
    )
    skills = {s["name"]: s for s in (await e2e.cli("skills", "--json")).json["skills"]}
    assert skills["weather"]["dependencies"] == ["search"]
    assert skills["ml"]["dependencies"] == ["python", "data-analysis"]
    assert "media" not in skills, "only what some node advertises is in the catalog"

    expected = [
        (["python"], "node_001"),
        (["weather"], "node_002"),
        (["ml"], "node_003"),
        (["python", "search"], "node_001"),
    ]
    for required, node_id in expected:
        args = ["submit", "--json", "--payload", '{"code": "print(1)"}']
        for skill in required:
            args += ["--skill", skill]
        run = await e2e.cli(*args)
        assert run.code == 0, run
        task = run.json
        assert task["node_id"] == node_id, (required, task)
        assert task["state"] in {"assigned", "running", "succeeded", "failed"}, task
        assert isinstance(task["attempts"], int) and task["attempts"] == 1
        assert {"task_id", "result", "error"} <= task.keys()


async def test_an_unknown_skill_is_rejected_naming_it(e2e: E2E) -> None:
    await e2e.start_node("node_a", "python")
    run = await e2e.cli("submit", "--json", "--skill", "python", "--skill", "no-such-skill")
    assert run.code == 1, run
    task = run.json
    assert task["state"] == "rejected"
    assert task["missing_skills"] == ["no-such-skill"]
    assert "no-such-skill" in task["reason"]


async def test_a_known_skill_without_a_node_waits_then_runs_where_it_appears(e2e: E2E) -> None:
    # The catalog knows weather (and its dependency search, held by node_s), but no
    # live node holds weather: registered through the Python client's registry.
    await e2e.start_node("node_s", "search")
    async with eventsrc.connect(e2e.url) as cluster:
        weather: SkillMetadata = BUILTIN_SKILLS["weather"]
        assert await cluster.registry.register_skill(weather)

    timed = await e2e.cli(
        "submit",
        "--json",
        "--skill",
        "weather",
        "--queue-timeout",
        "1",
        "--wait",
        "--timeout",
        "30",
    )
    assert timed.code == 1, timed
    assert timed.json["state"] == "timed_out", timed.json
    assert "queue deadline" in timed.json["reason"]

    waiting = await e2e.cli("submit", "--json", "--skill", "weather", "--task-id", "wx-1")
    assert waiting.code == 0, waiting
    task = waiting.json
    assert task["state"] == "queued"
    assert task["node_id"] is None
    assert "weather" in task["reason"], task

    await e2e.start_node("node_w", "search", "weather")
    async with eventsrc.connect(e2e.url, project=False) as cluster:
        # Weather has no executor (only python runs built in), so it ends failed; what
        # matters is where it went.
        done = await cluster.wait("wx-1", timeout=30)
    assert done.node_id == "node_w", done
    assert done.state == "failed" and "no executor" in (done.error or ""), done

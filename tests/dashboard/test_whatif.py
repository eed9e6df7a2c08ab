"""The dashboard's what-if page against a real recorded history: a coordinator process
serving its dashboard, node processes, tasks of the built-in python skill queued behind
one node's single slot; the JSON API and the chart in a real headless Chromium."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import nats

import eventsrc
from eventsrc.dashboard.server import Dashboard
from eventsrc.events import Event
from eventsrc.runner import ProjectionRunner
from eventsrc.store import JetStreamEventStore
from tests.conftest import MakeServer
from tests.dashboard.conftest import Browser, Site
from tests.projections.builders import joined, leader

TASKS = 6
CODE = "import time; time.sleep(0.5)"
TIMEOUT_MS = 30_000


async def record_a_queue(site: Site) -> None:
    """Only n1 holds python, with one slot: the tasks, submitted at once, queue."""
    await site.cluster.start_nodes({"n1": ["python"], "n2": ["search"]}, extra=["--capacity", "1"])
    async with eventsrc.connect(site.cluster.url, project=False) as cluster:
        ids = [f"q{n}" for n in range(TASKS)]
        await asyncio.gather(
            *(cluster.submit("python", {"code": CODE}, task_id=task_id) for task_id in ids)
        )
        done = await asyncio.gather(*(cluster.wait(task_id, timeout=60) for task_id in ids))
    assert {task.state for task in done} == {"succeeded"}, done


async def test_the_whatif_api_answers_waits_over_time_and_refuses_bad_options(
    site: Site,
) -> None:
    await record_a_queue(site)
    body: dict[str, Any] = await site.get("/api/whatif", skill_on="python=n2")

    assert body["scenario"]["changes"] == ["skill python also on n2"]
    assert body["tasks"] == TASKS and body["role"] == "leader"
    overall = body["overall"]
    assert overall["recorded"]["count"] == overall["simulated"]["count"] == TASKS
    assert overall["simulated"]["p50"] < 0.7 * overall["recorded"]["p50"], overall
    assert body["moved"] and body["no_longer_wait"]
    nodes = {n["node_id"]: n for n in body["nodes"]}
    assert nodes["n2"]["recorded"]["tasks"] == 0 and nodes["n2"]["simulated"]["tasks"] >= 2
    series = body["series"]
    assert series and sum(b["tasks"] for b in series) == TASKS
    first = series[0]
    assert set(first) == {"start", "end", "tasks", "recorded", "simulated"}
    assert set(first["recorded"]) == {"count", "p50", "p95", "max"}
    # The same question, asked again: the same answer (the simulation is deterministic).
    again = await site.get("/api/whatif", skill_on="python=n2")
    assert again["series"] == series and again["overall"] == overall

    cases = {
        "skill_on=python": "skill_on python: write SKILL=NODE[,NODE]",
        "remove_node=n9": "node n9 is not in the recorded history",
        "skill_on=python=n9": "skill_on python=n9: node n9 is not in the recorded history "
        "(add it with add_node)",
        "capacity=n1=0": "capacity n1=0: the capacity must be a whole number",
        "add_node=n3": "add_node n3 needs skills a,b after it",
        "from=yesterday": "from 'yesterday' is not an ISO 8601 time",
        "stale_after=3": "stale_after is not a what-if option",
    }
    for query, message in cases.items():
        async with site.session.get(f"{site.url}/api/whatif?{query}") as response:
            assert response.status == 400, query
            error = (await response.json())["error"]
            assert message in error and "\n" not in error, (query, error)


async def test_the_whatif_chart_shows_the_waits_a_second_node_would_save(
    site: Site, browser: Browser
) -> None:
    await record_a_queue(site)
    page = browser.page
    await page.goto(site.url + "/")
    await page.wait_for_selector('#live-nodes li[data-node="n1"]', timeout=TIMEOUT_MS)

    await page.click("#tt-whatif")
    await page.wait_for_selector("#whatif-form", timeout=TIMEOUT_MS)
    await page.fill('#whatif-form input[name="skill_on"]', "python=n2")
    await page.click('#whatif-form button[type="submit"]')
    await page.wait_for_selector("#whatif-chart", timeout=TIMEOUT_MS)

    series = page.locator("#whatif-chart polyline.series")
    assert await series.count() == 2
    kinds = await series.evaluate_all("lines => lines.map(l => l.dataset.series)")
    assert kinds == ["recorded", "simulated"]
    points = await series.evaluate_all("lines => lines.map(l => Number(l.dataset.points))")
    assert all(n >= 1 for n in points), points
    medians = page.locator("#whatif-medians")
    recorded = float(await medians.get_attribute("data-recorded") or "nan")
    simulated = float(await medians.get_attribute("data-simulated") or "nan")
    assert simulated < recorded, (simulated, recorded)
    assert "skill python also on n2" in await page.inner_text("#whatif-changes")
    assert await page.locator('#whatif-nodes tr[data-node="n2"]').count() == 1
    print(f"median wait s: recorded {recorded:.3f}, simulated with python on n2 {simulated:.3f}")
    assert browser.errors == []

    # A bad option is the server's one line, under the form, which stays.
    await page.fill('#whatif-form input[name="skill_on"]', "python=n9")
    await page.click('#whatif-form button[type="submit"]')
    await page.wait_for_selector("#whatif-error", timeout=TIMEOUT_MS)
    assert "n9" in await page.inner_text("#whatif-error")
    assert await page.locator("#whatif-form").count() == 1
    # Chromium logs the refused request itself; nothing else may complain.
    assert browser.errors and all("status of 400" in e for e in browser.errors), browser.errors


async def test_a_history_over_the_limit_is_refused_with_one_line(make_server: MakeServer) -> None:
    # A dashboard in-process over a real server, its limit lowered to three records.
    server = make_server()
    assert server.url is not None
    nc = await nats.connect(server.url)
    try:
        store = JetStreamEventStore(nc)
        await store.ensure_streams()
        history: list[Event] = [leader(1), joined("n1"), joined("n2"), joined("n3")]
        for event in history:
            await store.append(event)
        async with (
            ProjectionRunner(store, follow_heartbeats=False) as runner,
            Dashboard(
                runner, store, host="127.0.0.1", port=0, role=lambda: "viewer", identity="t"
            ) as dashboard,
            aiohttp.ClientSession() as session,
        ):
            dashboard.whatif_limit = 3
            async with session.get(f"{dashboard.url}/api/whatif") as response:
                assert response.status == 400
                error = (await response.json())["error"]
    finally:
        await nc.close()
    assert error == (
        "the EVENTSRC_EVENTS stream holds more than 3 records, more than the dashboard "
        "simulates; run replay_tools what-if with the same options"
    )

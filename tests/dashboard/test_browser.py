"""The dashboard in a real headless Chromium against a real cluster: live nodes, a task
that appears without a reload and its timeline, time travel, no console errors."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import eventsrc
from tests.conftest import MakeServer
from tests.dashboard.conftest import Browser, Site, start_dashboard_cluster

TIMEOUT_MS = 20_000


async def no_reload_marker(browser: Browser) -> None:
    await browser.page.evaluate("window.__sameDocument = 'yes'")


async def still_same_document(browser: Browser) -> bool:
    return bool(await browser.page.evaluate("window.__sameDocument === 'yes'"))


async def test_live_nodes_a_new_task_without_reload_and_its_timeline(
    site: Site, browser: Browser
) -> None:
    await site.cluster.start_node("node_a", "python")
    page = browser.page
    await page.goto(site.url + "/")
    await page.wait_for_selector('#live-nodes li[data-node="node_a"]', timeout=TIMEOUT_MS)
    assert "leader" in (await page.inner_text("#serving"))
    await no_reload_marker(browser)

    await page.click('nav a[href="#/tasks"]')
    await page.wait_for_selector("#tasks-table-empty", timeout=TIMEOUT_MS)
    async with eventsrc.connect(site.cluster.url, project=False) as cluster:
        submitted = await cluster.submit("python", {"code": "print('from the browser test')"})
        row = f'#tasks-table tr[data-task="{submitted.task_id}"]'
        await page.wait_for_selector(row, timeout=TIMEOUT_MS)  # live: no reload
        await cluster.wait(submitted.task_id, 30)
    await page.wait_for_selector(f"{row} .state-succeeded", timeout=TIMEOUT_MS)
    assert await still_same_document(browser)

    await page.click(f"{row} a")
    await page.wait_for_selector('#timeline tr[data-type="TaskSucceeded"]', timeout=TIMEOUT_MS)
    steps = await page.locator("#timeline tr.step").evaluate_all(
        "rows => rows.map(r => r.dataset.type)"
    )
    # Placed at its submission: one TaskAssigned carries the submission.
    assert steps[0] == "TaskAssigned" and steps[-1] == "TaskSucceeded", steps
    assigned = page.locator('#timeline tr[data-type="TaskAssigned"]')
    assert "node_a" in await assigned.inner_text()
    assert "node_a" in await page.inner_text("#task-facts")
    assert "from the browser test" in await page.inner_text("#payload")

    await assigned.locator('a[href="#/nodes/node_a"]').click()
    await page.wait_for_selector(f'#node-tasks tr[data-task="{submitted.task_id}"]')
    assert "NodeJoined" in await page.inner_text("#node-history")
    await page.click('nav a[href="#/skills"]')
    await page.wait_for_selector('#skills-table tr[data-skill="python"]', timeout=TIMEOUT_MS)
    assert "node_a" in await page.inner_text('#skills-table tr[data-skill="python"]')
    assert await still_same_document(browser)
    assert browser.errors == []


async def test_time_travel_to_before_a_node_joined(site: Site, browser: Browser) -> None:
    await site.cluster.start_node("node_a", "python")
    before_b = (await site.get("/api/overview"))["last_seq"]
    await site.cluster.start_node("node_b", "python")
    page = browser.page
    await page.goto(site.url + "/#/nodes")
    await page.wait_for_selector('#nodes-table tr[data-node="node_b"]', timeout=TIMEOUT_MS)

    await page.fill("#tt-seq", str(before_b))
    await page.click("#tt-go")
    await page.wait_for_selector('#serving[data-role="past"]', timeout=TIMEOUT_MS)
    await page.wait_for_selector('#nodes-table tr[data-node="node_b"]', state="detached")
    assert await page.locator('#nodes-table tr[data-node="node_a"]').count() == 1
    assert str(before_b) in await page.inner_text("#tt-banner")

    # The slider picks a point too: the first event, before any node.
    await page.evaluate(
        "() => { const r = document.getElementById('tt-range'); r.value = r.min;"
        " r.dispatchEvent(new Event('change')); }"
    )
    await page.wait_for_selector("#nodes-table-empty", timeout=TIMEOUT_MS)

    await page.click("#tt-live")
    await page.wait_for_selector('#serving:not([data-role="past"])', timeout=TIMEOUT_MS)
    await page.wait_for_selector('#nodes-table tr[data-node="node_b"]', timeout=TIMEOUT_MS)
    assert browser.errors == []


async def test_the_token_leaves_the_address_bar_once_the_cookie_is_set(
    make_server: MakeServer, tmp_path: Path, browser: Browser
) -> None:
    with ExitStack() as stack:
        _, url = start_dashboard_cluster(make_server, tmp_path, stack, "--http-token", "s3cret")
        page = browser.page
        await page.goto(url + "/?token=s3cret#/nodes")
        await page.wait_for_function(
            "document.getElementById('serving').textContent.includes('leader')",
            timeout=TIMEOUT_MS,
        )
        assert "token" not in page.url and page.url.endswith("/#/nodes"), page.url
        # The cookie carries the token from here on: a reload still shows the cluster.
        await page.reload()
        await page.wait_for_function(
            "document.getElementById('serving').textContent.includes('leader')",
            timeout=TIMEOUT_MS,
        )
        assert "token" not in page.url, page.url
    assert browser.errors == [], browser.errors

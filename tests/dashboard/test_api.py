"""The dashboard's JSON API and /metrics against a real cluster: a coordinator process
serving its projection, node processes, tasks run by the built-in python skill."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import nats
import pytest
from prometheus_client.parser import text_string_to_metric_families

import eventsrc
from eventsrc.dashboard.server import (
    Address,
    Dashboard,
    check_exposure,
    dashboard_address,
    is_loopback,
    read_token,
)
from eventsrc.errors import ConfigError, InvalidRequestError
from eventsrc.events import SkillMetadata, SkillRegistered
from eventsrc.history import fold_until
from eventsrc.ports import StoredEvent
from eventsrc.projections.state import ClusterState
from eventsrc.store import JetStreamEventStore
from tests.conftest import MakeServer
from tests.dashboard.conftest import Site, printed_url, start_dashboard_cluster
from tests.e2e.conftest import CLEAN_ENV, poll
from tests.factories import envelope
from tests.nats_cluster import REPO
from tests.processes import program


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, parsed by prometheus_client's own parser."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(scrape: dict[Any, float], name: str, **labels: str) -> float:
    return scrape.get((name, tuple(sorted(labels.items()))), 0.0)


async def run_tasks(site: Site, count: int) -> list[str]:
    async with eventsrc.connect(site.cluster.url, project=False) as cluster:
        ids = []
        for i in range(count):
            submitted = await cluster.submit("python", {"code": f"print({i})"})
            ids.append(submitted.task_id)
        for task_id in ids:
            info = await cluster.wait(task_id, 30)
            assert info.state == "succeeded", info
    return ids


async def test_pages_show_the_cluster_and_time_travel_shows_the_past(site: Site) -> None:
    await site.cluster.start_node("node_a", "python")
    overview = await site.get("/api/overview")
    assert overview["role"] == "leader" and overview["serving"] == "leader"
    assert overview["live_nodes"] == ["node_a"]
    before_b = overview["last_seq"]
    await site.cluster.start_node("node_b", "python")

    (task_id,) = await run_tasks(site, 1)
    body = await site.get(f"/api/tasks/{task_id}")
    assert body["task"]["state"] == "succeeded"
    types = [step["type"] for step in body["timeline"]]
    # Placed at its submission: one TaskAssigned carries the submission.
    assert types[0] == "TaskAssigned" and types[-1] == "TaskSucceeded", types
    assert body["timeline"][0]["detail"]["submitted"]["spec"]["skills"] == ["python"]
    assigned = next(step for step in body["timeline"] if step["type"] == "TaskAssigned")
    ran_on = body["task"]["node_id"]
    assert assigned["node_id"] == ran_on in ("node_a", "node_b")
    assert {c["node_id"] for c in assigned["candidates"]} == {"node_a", "node_b"}
    assert body["spec"]["payload"] == {"code": "print(0)"}

    listed = await site.get("/api/tasks", state="succeeded", skill="python", node=ran_on)
    assert [t["task_id"] for t in listed["tasks"]] == [task_id]
    assert (await site.get("/api/tasks", state="failed"))["tasks"] == []
    node = await site.get(f"/api/nodes/{ran_on}")
    assert node["node"]["tasks"][0]["task_id"] == task_id
    assert node["history"][0]["type"] == "NodeJoined"
    skills = await site.get("/api/skills")
    assert {"node_a", "node_b"} <= set(
        next(s for s in skills["skills"] if s["name"] == "python")["holders"]
    )

    past = await site.get("/api/nodes", seq=str(before_b))
    assert past["role"] == "past" and past["applied_seq"] == before_b
    assert [n["node_id"] for n in past["nodes"]] == ["node_a"]
    live = await site.get("/api/nodes")
    assert [n["node_id"] for n in live["nodes"]] == ["node_a", "node_b"]
    # By time: the moment node_a's join was stored, before node_b's.
    node_a = await site.get("/api/nodes/node_a")
    joined_at = next(e["time"] for e in node_a["history"] if e["type"] == "NodeJoined")
    then = await site.get("/api/nodes", time=joined_at)
    assert then["role"] == "past" and [n["node_id"] for n in then["nodes"]] == ["node_a"]
    history = await site.get("/api/history")
    assert history["first_seq"] == 1 and history["last_seq"] >= live["applied_seq"]


async def test_bad_input_gets_one_line_and_the_server_stays_read_only(site: Site) -> None:
    cases = {
        "/api/tasks?state=bogus": (400, "state bogus is not a task state"),
        "/api/nodes?seq=x": (400, "seq 'x' is not a whole number"),
        "/api/nodes?seq=0": (400, "sequences start at 1"),
        "/api/nodes?time=yesterday": (400, "is not an ISO time"),
        "/api/nodes?time=2000-01-01T00:00:00Z": (400, "before the first event"),
        "/api/nodes/nobody": (404, "not found: node nobody"),
        "/api/tasks/nothing-here": (404, "not found: task nothing-here"),
        # An id that is no subject token would widen the history filter to every task.
        "/api/tasks/*": (400, "task id '*' contains '*'"),
        "/api/tasks/%3E": (400, "task id '>' contains '>'"),
        "/api/tasks/a.b?seq=1": (400, "task id 'a.b' contains '.'"),
        "/api/nodes/*": (400, "node id '*' contains '*'"),
        "/api/nodes/%3E": (400, "node id '>' contains '>'"),
        "/static/../secure.json": (404, ""),
    }
    for path, (status, message) in cases.items():
        async with site.session.get(f"{site.url}{path}") as response:
            assert response.status == status, path
            if message:
                error = (await response.json())["error"]
                assert message in error and "\n" not in error, (path, error)
    async with site.session.post(f"{site.url}/api/tasks", json={}) as response:
        assert response.status == 405


async def test_metrics_of_a_coordinator_and_a_node_move_when_tasks_run(
    site: Site, tmp_path: Path
) -> None:
    node = site.cluster.spawn_node("node_m", "python", extra=["--metrics", "127.0.0.1:0"])
    node_url = printed_url(node, "metrics at")
    await site.cluster.wait_node("node_m", "alive", skills=["python"])
    coordinator_before = samples(await site.text(f"{site.url}/metrics"))
    node_before = samples(await site.text(node_url))
    assert value(coordinator_before, "eventsrc_is_leader") == 1
    assert value(coordinator_before, "eventsrc_nodes", state="alive") == 1
    assert ("eventsrc_node_heartbeat_age_seconds", (("node", "node_m"),)) in coordinator_before

    await run_tasks(site, 3)

    async def moved() -> dict[Any, float] | None:
        scrape = samples(await site.text(f"{site.url}/metrics"))
        ended = value(scrape, "eventsrc_tasks_ended_total", outcome="succeeded", skill="python")
        return scrape if ended == 3 else None

    after = await poll(moved, "3 ended tasks counted on the coordinator")
    assert value(after, "eventsrc_placements_total") == 3
    assert value(after, "eventsrc_task_latency_seconds_count", outcome="succeeded") == 3
    assert value(after, "eventsrc_tasks", state="succeeded") == 3
    assert value(after, "eventsrc_projection_lag_events") >= 0
    assert (
        value(after, "eventsrc_stream_last_seq")
        >= value(after, "eventsrc_projection_applied_seq")
        > 0
    )
    assert value(after, "eventsrc_leader_epoch") == 1
    assert value(after, "eventsrc_problem_events_total", kind="fenced") == 0
    submits = value(after, "eventsrc_api_request_seconds_count", endpoint="submit", outcome="ok")
    assert (
        submits
        - value(
            coordinator_before,
            "eventsrc_api_request_seconds_count",
            endpoint="submit",
            outcome="ok",
        )
        == 3
    )

    node_after = samples(await site.text(node_url))
    labels = {"node": "node_m", "outcome": "succeeded", "skill": "python"}
    assert (
        value(node_after, "eventsrc_node_attempts_total", **labels)
        - value(node_before, "eventsrc_node_attempts_total", **labels)
        == 3
    )
    assert (
        value(node_after, "eventsrc_node_executor_seconds_count", node="node_m", skill="python")
        == 3
    )
    assert value(node_after, "eventsrc_node_running_tasks", node="node_m") == 0

    # Every series the Grafana dashboard in deploy/ asks for is one we serve.
    board = json.loads((REPO / "deploy" / "grafana" / "eventsrc-dashboard.json").read_text())
    exprs = " ".join(t["expr"] for panel in board["panels"] for t in panel["targets"])
    served = {name for name, _ in after} | {name for name, _ in node_after}
    assert set(re.findall(r"eventsrc_[a-z_]+", exprs)) <= served


def test_a_token_guards_every_route(make_server: MakeServer, tmp_path: Path) -> None:
    import asyncio
    from contextlib import ExitStack

    async def check(url: str) -> None:
        # unsafe: keep cookies of an IP address, as browsers do (aiohttp does not by default)
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
            for path in ("/api/overview", "/metrics", "/"):
                async with session.get(url + path) as response:
                    assert response.status == 401, path
            headers = {"Authorization": "Bearer s3cret"}
            async with session.get(url + "/api/overview", headers=headers) as response:
                assert response.status == 200
            async with session.get(url + "/?token=s3cret") as response:
                assert response.status == 200
            # The page's own requests carry the cookie the token set.
            async with session.get(url + "/api/overview") as response:
                assert response.status == 200

    with ExitStack() as stack:
        _, url = start_dashboard_cluster(make_server, tmp_path, stack, "--http-token", "s3cret")
        asyncio.run(check(url))


def test_a_secure_cluster_dashboard_needs_a_token_beyond_loopback() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0")
    check_exposure("127.0.0.1", token=None, secure=True)
    check_exposure("0.0.0.0", token="t", secure=True)
    check_exposure("0.0.0.0", token=None, secure=False)
    with pytest.raises(InvalidRequestError, match=r"add --http-token TOKEN") as caught:
        check_exposure("0.0.0.0", token=None, secure=True)
    assert "\n" not in str(caught.value)
    with pytest.raises(ConfigError, match=r"add --http-token TOKEN"):  # a usage error
        dashboard_address("0.0.0.0:8470", default=True, token=None, secure=True)
    assert dashboard_address(None, default=False, token=None, secure=True) is None
    assert dashboard_address("off", default=True, token=None, secure=False) is None
    assert dashboard_address(None, default=True, token=None, secure=False) == Address(
        "127.0.0.1", 8470, asked=False
    )


async def test_a_standby_and_a_dashboard_process_serve_the_same_cluster(site: Site) -> None:
    await site.cluster.start_node("node_a", "python")
    url, where = site.cluster.url, site.cluster.workdir
    standby_args = ["-m", "eventsrc.coordinator", "--nats-url", url, "--http", "127.0.0.1:0"]
    viewer_args = ["-m", "eventsrc.cli", "--nats-url", url, "dashboard", "--http", "127.0.0.1:0"]
    with (
        program(standby_args, cwd=where, env=CLEAN_ENV) as standby,
        program(viewer_args, cwd=where, env=CLEAN_ENV) as viewer,
    ):
        await _three_dashboards(
            site, printed_url(standby, "dashboard at"), printed_url(viewer, "dashboard at")
        )
        assert viewer.signal() == 0


async def _three_dashboards(site: Site, standby_url: str, viewer_url: str) -> None:
    for url, role in ((site.url, "leader"), (standby_url, "standby"), (viewer_url, "viewer")):

        async def shows_node_a(url: str = url) -> Any:
            async with site.session.get(f"{url}/api/overview") as response:
                body = await response.json()
            return body if body["live_nodes"] == ["node_a"] else None

        body = await poll(shows_node_a, f"{role} dashboard showing node_a")
        assert body["role"] == role, body
        metrics = samples(await site.text(f"{url}/metrics"))
        assert value(metrics, "eventsrc_is_leader") == (1 if role == "leader" else 0)

    async def standbys_seen(url: str) -> Any:
        async with site.session.get(f"{url}/api/overview") as response:
            return (await response.json())["standbys"] or None

    # The leader and the viewer both name the one standby; it names no other.
    by_leader = await poll(
        lambda: standbys_seen(site.url), "the leader's overview naming a standby"
    )
    by_viewer = await poll(lambda: standbys_seen(viewer_url), "the viewer naming the standby")
    assert len(by_leader) == 1 and by_viewer == by_leader, (by_leader, by_viewer)
    async with site.session.get(f"{standby_url}/api/overview") as response:
        assert (await response.json())["standbys"] == []


def test_the_embedded_cluster_of_one_serves_its_dashboard_on_loopback(tmp_path: Path) -> None:
    with program(
        ["-m", "eventsrc.coordinator", "--embedded-port", "0"], cwd=tmp_path, env=CLEAN_ENV
    ) as child:
        url = printed_url(child, "dashboard at")
        assert url.startswith("http://127.0.0.1:"), url
        assert child.signal() == 0
    with program(
        ["-m", "eventsrc.coordinator", "--embedded-port", "0", "--http", "nowhere"],
        cwd=tmp_path,
        env=CLEAN_ENV,
    ) as child:
        assert child.proc.wait(timeout=30) == 2
        child.kill()
        assert child.stderr_lines == [
            "error: --http 'nowhere' is not HOST:PORT, e.g. 127.0.0.1:8765"
        ], child.stderr_lines
    # Secure mode (credentials), beyond loopback, no token: refused before anything starts.
    secure = ["--nats-url", "nats://127.0.0.1:1", "--creds", str(tmp_path / "c.creds")]
    with program(
        ["-m", "eventsrc.coordinator", *secure, "--http", "0.0.0.0:0"],
        cwd=tmp_path,
        env=CLEAN_ENV,
    ) as child:
        assert child.proc.wait(timeout=30) == 2
        child.kill()
        assert len(child.stderr_lines) == 1 and "add --http-token TOKEN" in child.stderr_lines[0]


def test_the_token_can_come_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "http-token"
    secret.write_text("s3cret\n")
    assert read_token(None, secret) == "s3cret"
    assert read_token("given", secret) == "given"
    assert read_token(None, None) is None
    secret.write_text("")
    with pytest.raises(ConfigError, match="is empty"):
        read_token(None, secret)
    with pytest.raises(ConfigError, match="cannot read it"):
        read_token(None, tmp_path / "missing")


@pytest.mark.parametrize(
    ("flag", "env", "says"),
    [
        (["--http", "off"], {}, "eventsrc dashboard --http off: nothing to serve"),
        ([], {"EVENTSRC_HTTP": "off"}, "EVENTSRC_HTTP=off eventsrc dashboard: nothing to serve"),
    ],
)
def test_a_dashboard_told_to_serve_nothing_is_a_usage_error(
    tmp_path: Path, flag: list[str], env: dict[str, str], says: str
) -> None:
    args = ["-m", "eventsrc.cli", "--nats-url", "nats://127.0.0.1:1", "dashboard", *flag]
    with program(args, cwd=tmp_path, env={**CLEAN_ENV, **env}) as child:
        assert child.proc.wait(timeout=30) == 2
        child.kill()
        assert len(child.stderr_lines) == 1, child.stderr_lines
        assert child.stderr_lines[0].startswith(f"error: {says}"), child.stderr_lines


class _Behind:
    """A projection that has applied the stream only up to a point (catching up)."""

    def __init__(self, state: ClusterState) -> None:
        self._state = state

    @property
    def state(self) -> ClusterState:
        return self._state

    @contextlib.asynccontextmanager
    async def reading(self) -> AsyncIterator[ClusterState]:
        yield self._state


async def test_history_of_a_catching_up_viewer_ends_at_what_it_applied(
    make_server: MakeServer,
) -> None:
    """/api/history reads the applied event only, not the backlog after it."""
    server = make_server()
    assert server.url is not None
    nc = await nats.connect(server.url)
    try:
        store = JetStreamEventStore(nc)
        await store.ensure_streams()
        for i in range(20):
            await store.append(SkillRegistered(**envelope(), metadata=SkillMetadata(name=f"s{i}")))
        state = await fold_until(store, ClusterState(), until_seq=3)
        times = [r.time async for r in store.read() if isinstance(r, StoredEvent)]
        dashboard = Dashboard(
            _Behind(state), store, host="127.0.0.1", port=0, role=lambda: "viewer", identity="v"
        )
        async with dashboard, aiohttp.ClientSession() as session:
            body = await _get_json(session, f"{dashboard.url}/api/history")
    finally:
        await nc.close()
    assert body["first_seq"] == 1 and body["last_seq"] == 3, body
    assert body["last_time"] == times[2].isoformat(), (body, times[2], times[-1])


async def _get_json(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def test_the_standbys_shown_never_include_the_leader(make_server: MakeServer) -> None:
    """The coordinator that just won the lease may still be listed as standing by (its
    word ages out a lease time later); the overview leaves the elected leader out."""
    server = make_server()
    assert server.url is not None
    nc = await nats.connect(server.url)
    try:
        store = JetStreamEventStore(nc)
        await store.ensure_streams()
        state = ClusterState()
        state.leader = "c-lead"

        async def standing_by() -> tuple[str, ...]:
            return ("c-2", "c-lead")

        dashboard = Dashboard(
            _Behind(state),
            store,
            host="127.0.0.1",
            port=0,
            role=lambda: "viewer",
            identity="v",
            standbys=standing_by,
        )
        async with dashboard, aiohttp.ClientSession() as session:
            body = await _get_json(session, f"{dashboard.url}/api/overview")
    finally:
        await nc.close()
    assert body["standbys"] == ["c-2"], body

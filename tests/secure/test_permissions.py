"""Who writes what (docs/design.md) against a real server started from the generated
config: what a node's credentials may and may not publish, and who may connect or submit at all.

A refused JetStream publish gets no ack (the client times out); the server's refusal
arrives as an async ``permissions violation`` error. Each test asserts both that error
and that nothing landed in the stream.
"""

from __future__ import annotations

import os
import uuid

import aiohttp
import nats.errors
import nats.js.errors
import pytest
from nats.aio.client import Client
from nats.js.api import ConsumerConfig

from eventsrc.api_client import ApiClient
from eventsrc.commands.tasks import SubmitTask
from eventsrc.errors import NotPermittedError, ServerUnavailableError
from eventsrc.events import TaskSpec, TaskStarted
from eventsrc.node.host import envelope, heartbeat_event, joined_event
from eventsrc.ports import EVENTS_STREAM, HEARTBEATS_STREAM
from eventsrc.store import JetStreamEventStore, NatsOptions, connect_nats
from eventsrc.store.credentials import JS_API_IMPORTED
from eventsrc.store.lease import standbys
from tests.dashboard.conftest import printed_url
from tests.e2e.conftest import CLEAN_ENV
from tests.processes import program
from tests.secure.conftest import Refusals, SecureServer, connect_as, connect_with

FORGED = b'{"type": "forged"}'


async def _last(server: SecureServer, stream: str, subject: str) -> bytes | None:
    """The newest message on ``subject`` (read as the coordinator), None when none."""
    nc = await connect_with(server, "coordinator")
    try:
        msg = await nc.jetstream().get_last_msg(stream, subject)
    except nats.js.errors.NotFoundError:
        return None
    finally:
        await nc.close()
    return bytes(msg.data or b"")


async def _stored(server: SecureServer, stream: str, subject: str) -> bool:
    return await _last(server, stream, subject) is not None


async def _refused_publish(server: SecureServer, subject: str) -> str:
    """Publish ``subject`` through JetStream as node A; the server's refusal text."""
    refusals = Refusals()
    nc = await connect_as(server, "node-A", refusals)
    try:
        with pytest.raises((nats.errors.TimeoutError, nats.errors.NoRespondersError)):
            await nc.jetstream(timeout=1.0).publish(subject, FORGED)
        return await refusals.wait_for(subject)
    finally:
        await nc.close()


async def test_node_cannot_publish_another_nodes_heartbeat(
    secure_cluster: SecureServer,
) -> None:
    error = await _refused_publish(secure_cluster, "hb.B")
    assert "permissions violation" in error
    assert not await _stored(secure_cluster, HEARTBEATS_STREAM, "hb.B")


async def test_node_cannot_publish_another_nodes_result(secure_cluster: SecureServer) -> None:
    subject = f"evt.task.{uuid.uuid4().hex}.from.B"
    assert "permissions violation" in await _refused_publish(secure_cluster, subject)
    assert not await _stored(secure_cluster, EVENTS_STREAM, subject)


async def test_node_cannot_publish_another_nodes_registration(
    secure_cluster: SecureServer,
) -> None:
    assert "permissions violation" in await _refused_publish(secure_cluster, "evt.node.B")
    assert not await _stored(secure_cluster, EVENTS_STREAM, "evt.node.B")


async def test_node_cannot_publish_an_assignment_even_to_itself(
    secure_cluster: SecureServer,
) -> None:
    subject = f"evt.task.{uuid.uuid4().hex}.to.A"
    assert "permissions violation" in await _refused_publish(secure_cluster, subject)
    assert not await _stored(secure_cluster, EVENTS_STREAM, subject)


@pytest.mark.parametrize(
    "subject",
    ["evt.task.t1.lifecycle", "evt.skill.python", "evt.cluster", "evt.task.t1.from.A.x"],
)
async def test_node_cannot_publish_coordinator_subjects(
    secure_cluster: SecureServer, subject: str
) -> None:
    assert "permissions violation" in await _refused_publish(secure_cluster, subject)
    assert await _last(secure_cluster, EVENTS_STREAM, subject) != FORGED


async def test_node_can_publish_its_own_events(secure_cluster: SecureServer) -> None:
    nc = await connect_with(secure_cluster, "node-A")
    try:
        store = JetStreamEventStore(nc)
        producer = "node:A"
        joined = joined_event(producer, node_id="A", incarnation="i1", capacity=1, labels={})
        beat = heartbeat_event(
            producer, node_id="A", incarnation="i1", running=0, capacity=1, skills=()
        )
        task_id = uuid.uuid4().hex
        started = TaskStarted(**envelope(producer), task_id=task_id, node_id="A", attempt=1)
        seqs = [await store.append(event) for event in (joined, beat, started)]
    finally:
        await nc.close()
    assert all(seq > 0 for seq in seqs)
    assert await _stored(secure_cluster, EVENTS_STREAM, "evt.node.A")
    assert await _stored(secure_cluster, HEARTBEATS_STREAM, "hb.A")
    assert await _stored(secure_cluster, EVENTS_STREAM, f"evt.task.{task_id}.from.A")


async def _expect_refused(nc: Client, refusals: Refusals, subject: str) -> None:
    with pytest.raises((nats.errors.TimeoutError, nats.errors.NoRespondersError)):
        await nc.request(subject, b"{}", timeout=1.0)
    assert "permissions violation" in await refusals.wait_for(subject)


async def test_node_cannot_take_another_nodes_work_nor_make_consumers(
    secure_cluster: SecureServer,
) -> None:
    refusals = Refusals()
    nc = await connect_as(secure_cluster, "node-A", refusals)
    try:
        await _expect_refused(
            nc, refusals, f"{JS_API_IMPORTED}.CONSUMER.MSG.NEXT.{EVENTS_STREAM}.node-B"
        )
        with pytest.raises((nats.errors.TimeoutError, nats.errors.NoRespondersError)):
            await nc.jetstream(timeout=1.0, prefix=JS_API_IMPORTED).add_consumer(
                EVENTS_STREAM, ConsumerConfig(deliver_subject="hb.B")
            )
        assert await refusals.wait_for(f"{JS_API_IMPORTED}.CONSUMER.CREATE.{EVENTS_STREAM}")
        await _expect_refused(
            nc, refusals, f"{JS_API_IMPORTED}.CONSUMER.DELETE.{EVENTS_STREAM}.node-B"
        )
        # Direct gets answer with the stored message itself, to a reply subject the
        # requester picks: not granted.
        await _expect_refused(nc, refusals, f"{JS_API_IMPORTED}.DIRECT.GET.{EVENTS_STREAM}")
    finally:
        await nc.close()


async def test_connection_without_credentials_is_refused(secure_server: SecureServer) -> None:
    with pytest.raises(ServerUnavailableError) as caught:
        await connect_nats(NatsOptions(servers=(secure_server.url,)), long_running=False)
    message = str(caught.value)
    assert "refused" in message and "authorization violation" in message.lower()
    assert "--creds" in message


async def test_reader_cannot_submit_but_can_read(secure_cluster: SecureServer) -> None:
    nc = await connect_with(secure_cluster, "reader")
    try:
        api = ApiClient(nc, timeout=2.0)
        status = await api.call("status")
        task_id = uuid.uuid4().hex
        command = SubmitTask(task_id=task_id, spec=TaskSpec(skills=("python",)))
        with pytest.raises(NotPermittedError, match="submit"):
            await api.call("submit", command)
        with pytest.raises(NotPermittedError, match="cancel"):
            await api.call("cancel", {"task_id": task_id})
    finally:
        await nc.close()
    assert status["epoch"] >= 1
    assert not await _stored(secure_cluster, EVENTS_STREAM, f"evt.task.{task_id}.lifecycle")


async def test_submitter_can_submit(secure_cluster: SecureServer) -> None:
    nc = await connect_with(secure_cluster, "submitter")
    try:
        task_id = uuid.uuid4().hex
        command = SubmitTask(task_id=task_id, spec=TaskSpec(skills=("python",)))
        info = await ApiClient(nc, timeout=5.0).call("submit", command)
    finally:
        await nc.close()
    # No node has the skill, so the catalog does not know it: refused by the rules, but
    # the request reached the coordinator and was decided (an event was stored).
    assert info["task_id"] == task_id
    assert await _stored(secure_cluster, EVENTS_STREAM, f"evt.task.{task_id}.lifecycle")


async def test_a_dashboard_on_reader_credentials_knows_the_standbys(
    secure_cluster: SecureServer,
) -> None:
    """The reader may ask the leader bucket's stream info (who stands by), so a viewer
    on reader credentials shows the standbys instead of "unknown", and the server logs
    no permissions violation."""
    refusals = Refusals()
    nc = await connect_as(secure_cluster, "reader", refusals)
    try:
        assert await standbys(nc.jetstream(prefix=JS_API_IMPORTED)) == ()
        await nc.flush()
    finally:
        await nc.close()
    assert not [e for e in refusals.errors if "permissions violation" in e], refusals.errors

    args = ["-m", "eventsrc.cli", "--nats-url", secure_cluster.url]
    args += ["--creds", secure_cluster.creds("reader"), "dashboard", "--http", "127.0.0.1:0"]
    where = secure_cluster.folder.parent
    with program(args, cwd=where, env={**os.environ, **CLEAN_ENV}) as viewer:
        url = printed_url(viewer, "dashboard at")
        async with aiohttp.ClientSession() as session, session.get(f"{url}/api/overview") as got:
            body = await got.json()
        assert body["role"] == "viewer" and body["standbys"] == [], body
        assert viewer.signal() == 0

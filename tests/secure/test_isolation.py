"""Secure mode's isolation tried as an attacker would, against a real nats-server on the
config ``eventsrc secure init`` wrote.

- A request whose reply subject is a stream subject: whoever answers it (JetStream, the
  coordinator's API) answers into the requester's own account, where no stream is, so
  nothing is stored.
- A subscription to another identity's inbox (or to every inbox) is refused.
"""

from __future__ import annotations

import uuid

import nats.js.errors
import orjson
import pytest
from nats.aio.client import Client

from eventsrc.commands.api import subject as api_subject
from eventsrc.ports import EVENTS_STREAM, HEARTBEATS_STREAM, OUTPUT_STREAM
from eventsrc.store.credentials import JS_API_IMPORTED
from eventsrc.store.jetstream import stream_for
from tests.secure.conftest import Refusals, SecureServer, connect_as, connect_with
from tests.waiting import until

ATTACKERS = ("node-A", "submitter", "reader")


def _junk_subjects(mark: str) -> list[str]:
    """Stream subjects an attacker would like its junk stored under."""
    return [
        f"evt.task.{mark}.lifecycle",
        f"evt.task.{mark}.from.B",
        f"evt.schedule.{mark}",
        f"hb.{mark}",
        f"out.{mark}.B",
    ]


def _api_request(identity: str, mark: str) -> tuple[str, bytes]:
    """An API request the identity may make: ``wait`` for nodes, ``status`` for clients."""
    if identity.startswith("node-"):
        return api_subject("wait"), orjson.dumps({"task_id": mark, "wait_s": 0})
    return api_subject("status"), b"{}"


async def _count(nc: Client) -> dict[str, int]:
    js = nc.jetstream()
    return {
        stream: (await js.stream_info(stream)).state.messages
        for stream in (EVENTS_STREAM, HEARTBEATS_STREAM, OUTPUT_STREAM)
    }


async def _stored_under(nc: Client, subject: str) -> bool:
    try:
        await nc.jetstream().get_last_msg(stream_for(subject), subject)
    except nats.js.errors.NotFoundError:
        return False
    return True


@pytest.mark.parametrize("attacker", ATTACKERS)
async def test_a_reply_subject_cannot_store_anything_in_the_streams(
    secure_cluster: SecureServer, attacker: str
) -> None:
    """Requests that the attacker may make, each answered by someone who may write the
    streams (JetStream itself; the coordinator's API), with stream subjects as their
    reply subjects: nothing lands in the streams, and the same requests with the
    attacker's own inbox are answered (so the responders were there to answer)."""
    mark = uuid.uuid4().hex
    requests = [
        (f"{JS_API_IMPORTED}.STREAM.MSG.GET.{EVENTS_STREAM}", orjson.dumps({"seq": 1})),
        (f"{JS_API_IMPORTED}.STREAM.INFO.{EVENTS_STREAM}", b""),
    ]
    requests.append(_api_request(attacker, mark))
    if attacker.startswith("node-"):
        # A node's own subjects: a plain publish whose reply (JetStream's ack) is aimed
        # at the streams too.
        requests.append(("hb.A", b'{"type": "junk"}'))
    coordinator = await connect_with(secure_cluster, "coordinator")
    refusals = Refusals()
    nc = await connect_as(secure_cluster, attacker, refusals)
    try:
        for subject, payload in requests:
            answer = await nc.request(subject, payload, timeout=5.0)
            assert answer.data, subject
        before = await _count(coordinator)
        for subject, payload in requests:
            for junk in _junk_subjects(mark):
                await nc.publish(subject, payload, reply=junk)
        # A barrier instead of a sleep: the same requests again, answered to our inbox,
        # come after every planted one on this connection and at each responder.
        for subject, payload in requests:
            await nc.request(subject, payload, timeout=5.0)
        await coordinator.flush()
        after = await _count(coordinator)
        stored = [junk for junk in _junk_subjects(mark) if await _stored_under(coordinator, junk)]
    finally:
        await nc.close()
        await coordinator.close()
    sent = len(requests) * len(_junk_subjects(mark))
    print(f"{attacker}: {sent} requests with stream reply subjects; stored: {stored}")
    assert stored == []
    # Only the node's own heartbeats (the plain publishes themselves, and the barrier's)
    # were stored.
    expected_heartbeats = len(_junk_subjects(mark)) + 1 if attacker.startswith("node-") else 0
    assert after[EVENTS_STREAM] - before[EVENTS_STREAM] <= 1  # at most a coordinator's own
    assert after[HEARTBEATS_STREAM] - before[HEARTBEATS_STREAM] == expected_heartbeats
    assert after[OUTPUT_STREAM] == before[OUTPUT_STREAM]
    assert not [e for e in refusals.errors if "permissions violation" in e], refusals.errors


async def _refused_subscription(nc: Client, refusals: Refusals, subject: str) -> str:
    await nc.subscribe(subject)
    await nc.flush()
    needle = f'subscription to "{subject.lower()}"'
    found = await until(
        lambda: [e for e in refusals.errors if "permissions violation" in e and needle in e],
        lambda: f"a permissions violation for a subscription to {subject}; got {refusals.errors}",
        10.0,
    )
    return found[0]


@pytest.mark.parametrize(
    ("attacker", "victim"),
    [("reader", "submitter"), ("submitter", "reader"), ("node-A", "node-B")],
)
async def test_no_identity_reads_another_identitys_replies(
    secure_cluster: SecureServer, attacker: str, victim: str
) -> None:
    """The attacker subscribes to the victim's inbox and to every inbox: both refused,
    and while it tries, the victim's request is answered to the victim alone."""
    refusals = Refusals()
    nc = await connect_as(secure_cluster, attacker, refusals)
    victim_nc = await connect_with(secure_cluster, victim)
    try:
        for subject in (f"_INBOX_{victim}.>", "_INBOX.>", ">"):
            assert "permissions violation" in await _refused_subscription(nc, refusals, subject)
        subject, payload = _api_request(victim, uuid.uuid4().hex)
        answer = await victim_nc.request(subject, payload, timeout=5.0)
        assert answer.subject.startswith(f"_INBOX_{victim}.")
    finally:
        await victim_nc.close()
        await nc.close()

"""EVENTSRC_OUTPUT in secure mode: a node publishes the progress and output of its own
tasks only; readers read them by message gets (no consumer), as ``get --follow`` and
``eventsrc tasks`` do."""

from __future__ import annotations

import asyncio
import uuid

from eventsrc.events import OutputLine, TaskOutput
from eventsrc.events.subjects import output_subject
from eventsrc.node.host import envelope
from eventsrc.ports import OUTPUT_STREAM, StoredEvent
from eventsrc.store.getreads import event_store
from tests.secure.conftest import SecureServer, connect_with
from tests.secure.test_permissions import _refused_publish, _stored


def _output(task_id: str, node_id: str) -> TaskOutput:
    return TaskOutput(
        **envelope(f"node:{node_id}"),
        task_id=task_id,
        node_id=node_id,
        attempt=1,
        lines=(OutputLine(kind="progress", text="half", fraction=0.5),),
        progress=0.5,
        progress_message="half",
    )


async def test_node_publishes_its_tasks_output_and_a_reader_reads_it(
    secure_cluster: SecureServer,
) -> None:
    task_id = uuid.uuid4().hex
    nc = await connect_with(secure_cluster, "node-A")
    try:
        assert await event_store(nc, consumers=False).append(_output(task_id, "A")) > 0
    finally:
        await nc.close()
    reader = await connect_with(secure_cluster, "reader")
    try:
        store = event_store(reader, consumers=False)
        latest = await store.latest(OUTPUT_STREAM, output_subject(task_id, "A"))
        followed = store.subscribe(stream=OUTPUT_STREAM, subjects=[f"out.{task_id}.*"])
        first = await asyncio.wait_for(anext(aiter(followed)), 10)
    finally:
        await reader.close()
    assert isinstance(latest, StoredEvent) and isinstance(latest.event, TaskOutput), latest
    assert latest.event.progress == 0.5 and latest.event.progress_message == "half"
    assert isinstance(first, StoredEvent) and first.seq == latest.seq


async def test_node_cannot_publish_another_nodes_output(secure_cluster: SecureServer) -> None:
    subject = output_subject(uuid.uuid4().hex, "B")
    assert "permissions violation" in await _refused_publish(secure_cluster, subject)
    assert not await _stored(secure_cluster, OUTPUT_STREAM, subject)

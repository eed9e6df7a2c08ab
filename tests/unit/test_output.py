"""The node's output sink and the ``::progress`` protocol, without a server: what is
coalesced, what is dropped and counted, what a malformed report is."""

from __future__ import annotations

import asyncio

import pytest

from eventsrc.errors import InvalidRequestError
from eventsrc.events import OutputLine, TaskOutput, parse_progress
from eventsrc.node.host import envelope
from eventsrc.node.output import OutputSink, current_output, progress


def _sink(sent: list[TaskOutput], **options: float) -> OutputSink:
    async def publish(event: TaskOutput) -> int:
        sent.append(event)
        return len(sent)

    return OutputSink(
        publish,
        envelope=lambda: envelope("node:n1"),
        task_id="t1",
        node_id="n1",
        attempt=1,
        **options,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("::progress 0.4 fetching pages", (0.4, "fetching pages")),
        ("::progress 1", (1.0, "")),
        ("::progress 25% a quarter", (0.25, "a quarter")),
        ("::progress 1.5 too far", None),
        ("::progress soon", None),
        ("progress 0.4", None),
    ],
)
def test_progress_lines(line: str, expected: tuple[float, str] | None) -> None:
    found = parse_progress(line)
    if expected is None:
        assert found is None
    else:
        assert found == OutputLine(kind="progress", fraction=expected[0], text=expected[1])


async def test_lines_are_coalesced_into_few_messages() -> None:
    sent: list[TaskOutput] = []
    sink = _sink(sent, interval=0.05)
    sink.start()
    for i in range(100):
        sink.line("stdout", f"line {i}")
    sink.line("stderr", "::progress 0.5 half")
    await asyncio.sleep(0.2)
    sink.line("stderr", "oops")
    await sink.close()
    assert len(sent) == 2, sent
    assert [line.text for line in sent[0].lines][:2] == ["line 0", "line 1"]
    assert sent[0].lines[-1] == OutputLine(kind="progress", text="half", fraction=0.5)
    # The later batch carries the latest progress too: the newest message says it.
    assert (sent[1].progress, sent[1].progress_message) == (0.5, "half")
    assert sent[1].lines == (OutputLine(kind="stderr", text="oops"),)


async def test_a_full_buffer_drops_and_counts_and_never_waits() -> None:
    release = asyncio.Event()
    sent: list[TaskOutput] = []

    async def slow(event: TaskOutput) -> int:
        await release.wait()  # a stuck server: the task must not wait for it
        sent.append(event)
        return 1

    sink = OutputSink(
        slow,
        envelope=lambda: envelope("node:n1"),
        task_id="t1",
        node_id="n1",
        attempt=1,
        interval=0.01,
        max_pending=10,
    )
    sink.start()
    await asyncio.sleep(0.05)
    for i in range(25):
        sink.line("stdout", str(i))  # returns at once although nothing is sent
    release.set()
    await sink.close()
    lines = sum(len(batch.lines) for batch in sent)
    dropped = sum(batch.dropped for batch in sent)
    assert lines + dropped == 25 and dropped > 0, (lines, dropped)


def test_progress_outside_a_task_does_nothing_and_bad_fractions_are_refused() -> None:
    assert current_output.get() is None
    progress(0.5, "nobody listens")
    with pytest.raises(InvalidRequestError, match="from 0 to 1"):
        progress(2, "too much")
    with pytest.raises(InvalidRequestError, match="from 0 to 1"):
        progress(True, "not a number")


async def test_closing_gives_up_on_a_stuck_server_instead_of_holding_the_task() -> None:
    async def stuck(event: TaskOutput) -> int:
        await asyncio.Event().wait()  # never acked
        return 0

    sink = OutputSink(
        stuck, envelope=lambda: envelope("node:n1"), task_id="t1", node_id="n1", attempt=1
    )
    sink.start()
    sink.line("stdout", "hello")
    async with asyncio.timeout(5):  # bounded by close's own timeout, not by the server
        await sink.close(timeout=0.2)
    assert sink.sent == 0

"""``export`` and ``import``: both streams as JSON Lines, and back into a deployment.

File layout (gzip when the name ends ``.gz``)::

    {"format": "eventsrc-export", "version": 1, "streams": [...]}        line 1
    {"stream", "seq", "subject", "time", "headers", "data"}             one per message
    {"end": true, "messages": {"EVENTSRC_EVENTS": n, ...}}               last line

``data`` is the event's JSON; a message that is not an event keeps its bytes exactly,
as ``data_text`` (UTF-8) or ``data_base64``, and says why in ``undecodable``.

Import keeps order and event ids (``Nats-Msg-Id``). Besides the server's dedup window
it compares with what the target already holds, so importing twice stores nothing
twice: messages already present are skipped; an events stream holding anything but a
prefix of the file's history is refused. The server stamps imported messages with the
import time; the original sequence and time travel along as ``Eventsrc-Origin-Seq`` and
``Eventsrc-Origin-Time`` headers.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final, cast

import orjson

from eventsrc.errors import InvalidRequestError, StoreError, UndecodableEventError
from eventsrc.events import decode
from eventsrc.events.subjects import subject_matches
from eventsrc.ports import EVENTS_STREAM, HEARTBEATS_STREAM, stream_filter
from eventsrc.progress import Progress
from eventsrc.store import JetStreamEventStore
from eventsrc.store.jetstream import HDR_MSG_ID, HDR_ORIGIN_SEQ, HDR_ORIGIN_TIME
from eventsrc.store.raw import (
    RawMessage,
    RawPublishError,
    create_missing_streams,
    publish_raw,
    read_raw,
    stream_state,
)
from replay_tools.common import iso, require_stream

FORMAT: Final = "eventsrc-export"
VERSION: Final = 1
STREAMS: Final = (EVENTS_STREAM, HEARTBEATS_STREAM)
BATCH: Final = 500


class ExportFileError(InvalidRequestError):
    """An export file that cannot be imported; the message names the line."""


@dataclass(slots=True)
class Counts:
    """What an export or import did, per stream."""

    stored: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STREAMS, 0))
    skipped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STREAMS, 0))


def _open(path: Path, mode: str, *, gz: bool | None = None) -> IO[bytes]:
    """The file, through gzip when its name ends ``.gz``; the caller closes it."""
    if path.name.endswith(".gz") if gz is None else gz:
        return cast(IO[bytes], gzip.open(path, mode))
    return path.open(mode)


def message_line(message: RawMessage) -> dict[str, Any]:
    """One message as its export line."""
    line: dict[str, Any] = {
        "stream": message.stream,
        "seq": message.seq,
        "subject": message.subject,
        "time": iso(message.time),
        "headers": message.headers,
    }
    try:
        decode(message.data, seq=message.seq, subject=message.subject)
        data = orjson.loads(message.data)
        if orjson.dumps(data) == message.data:
            line["data"] = data
            return line
    except UndecodableEventError as err:
        line["undecodable"] = err.reason
    try:
        line["data_text"] = message.data.decode("utf-8")
    except UnicodeDecodeError:
        line["data_base64"] = base64.b64encode(message.data).decode("ascii")
    return line


async def export(store: JetStreamEventStore, path: Path) -> Counts:
    """Write both streams to ``path`` (atomically: a failed export leaves no file)."""
    await require_stream(store, EVENTS_STREAM)
    counts = Counts()
    partial = path.with_name(path.name + ".partial")
    try:
        with _open(partial, "wb", gz=path.name.endswith(".gz")) as out:
            header = {"format": FORMAT, "version": VERSION, "streams": list(STREAMS)}
            out.write(orjson.dumps(header) + b"\n")
            for stream in STREAMS:
                info = await stream_state(store, stream)
                if info is None or info.messages == 0:
                    continue
                bar = Progress(f"exporting {stream}", info.messages, unit="messages")
                async for message in read_raw(store, stream, last_seq=info.last_seq):
                    out.write(orjson.dumps(message_line(message)) + b"\n")
                    counts.stored[stream] += 1
                    bar.update(counts.stored[stream])
                bar.done()
            out.write(orjson.dumps({"end": True, "messages": counts.stored}) + b"\n")
        os.replace(partial, path)
    except OSError as err:
        raise InvalidRequestError(f"cannot write {path}: {err.strerror or err}") from err
    finally:
        partial.unlink(missing_ok=True)
    return counts


@dataclass(frozen=True, slots=True)
class Line:
    """A message line of an export file, checked."""

    number: int
    stream: str
    seq: int
    subject: str
    time: str
    headers: dict[str, str]
    data: bytes

    @property
    def key(self) -> str:
        return message_key(self.headers, self.subject, self.data)


def message_key(headers: dict[str, str], subject: str, data: bytes) -> str:
    """The identity of a message: its event id, or a digest of an id-less one."""
    msg_id = headers.get(HDR_MSG_ID)
    if msg_id:
        return msg_id
    return "sha256:" + hashlib.sha256(subject.encode() + b"\0" + data).hexdigest()


def read_lines(path: Path) -> Iterator[Line]:
    """The message lines of an export file; ExportFileError names a bad line."""
    number = 0
    end: dict[str, Any] | None = None
    counted = dict.fromkeys(STREAMS, 0)
    try:
        with _open(path, "rb") as handle:
            for number, raw in enumerate(handle, 1):
                if end is not None:
                    raise ExportFileError(f"{path} line {number}: text after the end marker")
                value = _json(path, number, raw)
                if number == 1:
                    _check_header(path, value)
                elif value.get("end") is True:
                    end = value
                else:
                    line = _message(path, number, value)
                    counted[line.stream] += 1
                    yield line
    except FileNotFoundError as err:
        raise ExportFileError(f"{path} does not exist; check the --in path") from err
    except (OSError, EOFError, zlib.error) as err:
        reason = str(err) or type(err).__name__
        raise ExportFileError(f"{path} line {number + 1}: cannot read it ({reason})") from err
    if number == 0:
        raise ExportFileError(f"{path} line 1: the file is empty, not an eventsrc export")
    if end is None:
        raise ExportFileError(
            f"{path} line {number}: the file ends without its end marker; it was cut short"
        )
    if end.get("messages") != counted:
        raise ExportFileError(
            f"{path} line {number}: the end marker counts {end.get('messages')} messages but "
            f"the file holds {counted}"
        )


def _json(path: Path, number: int, raw: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        raise ExportFileError(f"{path} line {number}: not valid JSON ({err})") from err
    if not isinstance(value, dict):
        raise ExportFileError(f"{path} line {number}: expected a JSON object")
    return value


def _check_header(path: Path, value: dict[str, Any]) -> None:
    if value.get("format") != FORMAT:
        raise ExportFileError(f"{path} line 1: not an eventsrc export (no format header)")
    if value.get("version") != VERSION:
        raise ExportFileError(
            f"{path} line 1: export format version {value.get('version')} is not supported "
            f"by this replay_tools (it reads version {VERSION})"
        )


def _message(path: Path, number: int, value: dict[str, Any]) -> Line:
    def bad(what: str) -> ExportFileError:
        return ExportFileError(f"{path} line {number}: {what}")

    stream, seq, subject = value.get("stream"), value.get("seq"), value.get("subject")
    headers, time = value.get("headers", {}), value.get("time")
    if stream not in STREAMS:
        raise bad(f"unknown stream {stream!r}")
    if not isinstance(seq, int) or seq < 1:
        raise bad(f"bad sequence {seq!r}")
    if not isinstance(subject, str) or not subject_matches(stream_filter(stream), subject):
        raise bad(f"subject {subject!r} does not belong to {stream}")
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise bad("headers must map strings to strings")
    if not isinstance(time, str):
        raise bad("missing time")
    present = [key for key in ("data", "data_text", "data_base64") if key in value]
    if len(present) != 1:
        raise bad("a message needs exactly one of data, data_text, data_base64")
    payload = value[present[0]]
    if present[0] == "data":
        data = orjson.dumps(payload)
    elif not isinstance(payload, str):
        raise bad(f"{present[0]} must be a string")
    elif present[0] == "data_text":
        data = payload.encode("utf-8")
    else:
        try:
            data = base64.b64decode(payload, validate=True)
        except ValueError as err:
            raise bad(f"data_base64 is not base64 ({err})") from err
    return Line(number, str(stream), seq, subject, time, headers, data)


async def import_file(store: JetStreamEventStore, path: Path) -> Counts:
    """Store the file's messages that the target lacks, in file order.

    Reads the file twice: once to check every line (nothing is stored from a corrupt
    file), once to publish. Raises ExportFileError, StoreError.
    """
    keys: dict[str, list[str]] = {stream: [] for stream in STREAMS}
    for line in read_lines(path):
        keys[line.stream].append(line.key)
    # Only create: an existing stream keeps the limits its coordinator gave it.
    await create_missing_streams(store)
    present = {stream: await _present(store, stream) for stream in STREAMS}
    _check_same_history(path, present[EVENTS_STREAM], keys[EVENTS_STREAM])
    seen = {stream: set(ids) for stream, ids in present.items()}
    counts = Counts()
    batch: list[Line] = []
    bar = Progress("importing", sum(map(len, keys.values())), unit="messages")
    for number, line in enumerate(read_lines(path), 1):
        if line.key in seen[line.stream]:
            counts.skipped[line.stream] += 1
            continue
        seen[line.stream].add(line.key)
        batch.append(line)
        if len(batch) >= BATCH:
            await _publish(store, path, batch, counts)
            batch = []
            bar.update(number)
    await _publish(store, path, batch, counts)
    bar.done()
    return counts


async def _present(store: JetStreamEventStore, stream: str) -> list[str]:
    info = await stream_state(store, stream)
    if info is None or info.messages == 0:
        return []
    return [
        message_key(message.headers, message.subject, message.data)
        async for message in read_raw(store, stream, last_seq=info.last_seq)
    ]


def _check_same_history(path: Path, present: list[str], wanted: list[str]) -> None:
    if present == wanted[: len(present)]:
        return
    strangers = len(set(present) - set(wanted))
    raise InvalidRequestError(
        f"{EVENTS_STREAM} already holds a different history ({len(present)} events, "
        f"{strangers} of them not in {path}); import into an empty deployment — before "
        f"starting its coordinator — or into the one the file came from"
    )


def _headers(line: Line) -> dict[str, str]:
    # Nats-* headers other than the id steer the server (expected sequences, rollups,
    # TTLs); replaying them against another stream would refuse or purge messages.
    headers = {
        key: value
        for key, value in line.headers.items()
        if key == HDR_MSG_ID or not key.lower().startswith("nats-")
    }
    headers.setdefault(HDR_ORIGIN_SEQ, str(line.seq))
    headers.setdefault(HDR_ORIGIN_TIME, line.time)
    return headers


async def _publish(
    store: JetStreamEventStore, path: Path, batch: list[Line], counts: Counts
) -> None:
    if not batch:
        return
    try:
        acks = await publish_raw(
            store, [(line.subject, line.data, _headers(line)) for line in batch]
        )
    except RawPublishError as err:
        raise _stopped(path, batch[err.index], counts, err.reason) from err
    failure: str | None = None
    failed_line = batch[0]
    for line, ack in zip(batch, acks, strict=True):
        if ack.error is not None:
            if failure is None:
                failure, failed_line = ack.error, line
            continue
        if ack.duplicate:
            counts.skipped[line.stream] += 1
        else:
            counts.stored[line.stream] += 1
    if failure is not None:
        raise _stopped(path, failed_line, counts, failure)


def _stopped(path: Path, line: Line, counts: Counts, reason: str) -> StoreError:
    return StoreError(
        f"import stopped at {path} line {line.number} ({reason}); {sum(counts.stored.values())} "
        f"messages were stored — run the same import again to continue, stored ones are skipped"
    )


def describe(counts: Counts, *, verb: str) -> list[str]:
    """Lines for people."""
    return [
        f"{stream}: {verb} {counts.stored[stream]}"
        + (f", skipped {counts.skipped[stream]} already present" if counts.skipped[stream] else "")
        for stream in STREAMS
    ]

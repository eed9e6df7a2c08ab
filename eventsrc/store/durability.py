"""When a JetStream server flushes what it acknowledged to disk: the one place for the
``sync_interval`` setting of every nats-server config eventsrc writes.

nats-server acknowledges a stored message once it is in the operating system's page
cache and, by default, flushes to disk only every two minutes. A process crash loses
nothing (the kernel still writes the cache out), but a power loss or an OS crash loses
what was acknowledged since the last flush, and in a cluster such a node can come back
with a shorter log than its peers. ``always`` flushes every write before the
acknowledgement; a duration (``"2m"``, ``"10s"``) trades that for speed.
"""

from __future__ import annotations

import json
import re
from typing import Final

SYNC_ALWAYS: Final = "always"
"""Flush before acknowledging: the default of every server eventsrc configures."""

_GO_DURATION: Final = re.compile(r"(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+")


def sync_interval(value: str) -> str:
    """``value`` as nats-server takes it for ``sync_interval``: ``always`` or a duration
    above zero such as ``2m`` or ``500ms``; raises ValueError saying what to give
    otherwise (nats-server itself takes a zero duration as its two-minute default)."""
    text = value.strip().lower()
    if text == SYNC_ALWAYS:
        return text
    if not _GO_DURATION.fullmatch(text):
        raise ValueError(
            f"sync interval {value!r} is neither 'always' nor a duration such as '2m', '10s' "
            f"or '500ms'"
        )
    if not any(digit in text for digit in "123456789"):  # nats-server: zero is its default
        raise ValueError(
            f"sync interval {value!r} is zero, which nats-server takes as its default of 2m; "
            f"give 'always' to flush before acknowledging, or a duration above zero such as '10s'"
        )
    return text


def jetstream_block(
    store_dir: str, *, sync: str = SYNC_ALWAYS, max_file_store: int | None = None
) -> str:
    """The ``jetstream { ... }`` block of a nats-server config: the store dir, the flush
    policy (checked by ``sync_interval``) and, when given, the file store's limit in
    bytes."""
    settings = [
        f"store_dir: {json.dumps(store_dir)}",
        f"sync_interval: {json.dumps(sync_interval(sync))}",
    ]
    if max_file_store is not None:
        settings.append(f"max_file_store: {max_file_store}")
    return "jetstream { " + ", ".join(settings) + " }"

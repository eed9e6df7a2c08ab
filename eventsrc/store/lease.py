"""The leader lease: one key in a JetStream KV bucket whose TTL is the lease time.

- acquire: ``create`` (refused while the key holds a value);
- renew: ``update`` with the revision we last wrote (refused once anything else was
  written, or the key expired, was deleted or purged);
- expire: the bucket's max age removes a value that was not renewed in time (a
  standby's ``standby.<id>`` key too: it says the standby is there while it is renewed). The
  bucket has no subject-delete markers: with them ``create`` would be refused after an
  expiry (nats-server issue 6712). Verified against nats-server 2.15: ``create``
  succeeds once the value aged out (about 0.25 s after the TTL), and a renewal with the
  old revision is refused afterwards.

The server stores a write no earlier than it was sent, so a holder may count its
lease from the moment it *sent* the last successful write.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final

import nats.errors
import nats.js.errors
import orjson
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue

from eventsrc.errors import LeaseLostError, StoreError

log = logging.getLogger(__name__)

LEADER_BUCKET: Final = "EVENTSRC_LEADER"
LEADER_BUCKET_STREAM: Final = f"KV_{LEADER_BUCKET}"
"""The stream JetStream keeps the bucket in (KV bucket B is stream KV_B)."""
LEADER_KEY: Final = "leader"
STANDBY_PREFIX: Final = "standby."
"""``standby.<coordinator id>``: a standby's word that it is there, aged out by the TTL."""


@dataclass(frozen=True, slots=True)
class LeaseHolder:
    """Who holds the lease as the bucket shows it."""

    coordinator_id: str
    epoch: int
    revision: int


def encode_holder(coordinator_id: str, epoch: int) -> bytes:
    """The stored value: JSON with the coordinator id and its leader epoch (0 while electing)."""
    return orjson.dumps({"coordinator_id": coordinator_id, "epoch": epoch})


def decode_holder(value: bytes | None, revision: int) -> LeaseHolder:
    """Read a stored value; anything unreadable shows as an unknown holder."""
    try:
        document = orjson.loads(value or b"")
        return LeaseHolder(str(document["coordinator_id"]), int(document["epoch"]), revision)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return LeaseHolder("(unreadable lease value)", 0, revision)


class KvLease:
    """The lease key; every call is one request to JetStream and raises StoreError when
    NATS does not answer."""

    def __init__(
        self,
        js: JetStreamContext,
        *,
        lease_s: float,
        replicas: int = 1,
        bucket: str = LEADER_BUCKET,
        key: str = LEADER_KEY,
    ) -> None:
        self._js = js
        self._lease_s = lease_s
        self._replicas = replicas
        self._bucket = bucket
        self._key = key
        self._kv: KeyValue | None = None

    async def open(self) -> float:
        """Create the bucket if missing; return the lease time in force (its TTL).

        An existing bucket keeps its TTL: every coordinator must count with the same
        lease time, so the bucket, not each one's config, decides it.
        """
        try:
            try:
                self._kv = await self._js.key_value(self._bucket)
            except nats.js.errors.BucketNotFoundError:
                self._kv = await self._create_bucket()
            ttl = (await self._kv.status()).ttl
        except nats.errors.Error as err:
            raise StoreError(
                f"could not open the leader lease bucket {self._bucket}: {err}"
            ) from err
        if not ttl:
            raise StoreError(
                f"KV bucket {self._bucket} has no TTL, so a dead leader's lease never ends; "
                f"delete the bucket (nats kv del {self._bucket}) and restart the coordinators"
            )
        if abs(ttl - self._lease_s) > 1e-3:
            log.warning(
                "the leader lease bucket %s has a TTL of %g s, not the configured %g s; "
                "using %g s (recreate the bucket to change it)",
                self._bucket,
                ttl,
                self._lease_s,
                ttl,
            )
        return float(ttl)

    async def _create_bucket(self) -> KeyValue:
        config = KeyValueConfig(
            bucket=self._bucket,
            description="eventsrc: the coordinators' leader lease",
            history=1,
            ttl=self._lease_s,
            storage=StorageType.FILE,
            replicas=self._replicas,
        )
        try:
            return await self._js.create_key_value(config)
        except nats.js.errors.BadRequestError:
            # Another coordinator created it at the same moment (with other settings).
            return await self._js.key_value(self._bucket)

    @property
    def kv(self) -> KeyValue:
        """The bucket; only after ``open``."""
        assert self._kv is not None, "KvLease.open() first"
        return self._kv

    async def acquire(self, value: bytes) -> int | None:
        """Take the lease if nobody holds it: its revision, or None when it is held."""
        try:
            return await self.kv.create(self._key, value)
        except nats.js.errors.KeyWrongLastSequenceError:
            return None
        except nats.errors.Error as err:
            raise StoreError(f"could not contest the leader lease: {err}") from err

    async def renew(self, revision: int, value: bytes) -> int:
        """Extend the lease held at ``revision``; the new revision.

        Raises LeaseLostError when the key moved on (expired, taken, deleted, purged).
        """
        try:
            return await self.kv.update(self._key, value, last=revision)
        except nats.js.errors.KeyWrongLastSequenceError as err:
            raise LeaseLostError(
                f"the leader lease is no longer at revision {revision}: it expired or another "
                f"coordinator took it"
            ) from err
        except nats.errors.Error as err:
            raise StoreError(f"could not renew the leader lease: {err}") from err

    async def release(self, revision: int) -> bool:
        """Give the lease up if it is still at ``revision`` (so a standby need not wait
        for the TTL); False when it was no longer ours."""
        try:
            await self.kv.delete(self._key, last=revision)
        except nats.js.errors.BadRequestError:
            return False  # wrong last sequence: someone else's now
        except nats.errors.Error as err:
            raise StoreError(f"could not release the leader lease: {err}") from err
        return True

    async def holder(self) -> LeaseHolder | None:
        """The current holder, or None when the lease is free."""
        try:
            entry = await self.kv.get(self._key)
        except nats.js.errors.KeyNotFoundError:
            return None
        except nats.errors.Error as err:
            raise StoreError(f"could not read the leader lease: {err}") from err
        return decode_holder(entry.value, entry.revision or 0)

    async def announce_standby(self, coordinator_id: str) -> None:
        """Say that ``coordinator_id`` stands by, for one lease time."""
        try:
            await self.kv.put(f"{STANDBY_PREFIX}{coordinator_id}", b"")
        except nats.errors.Error as err:
            raise StoreError(f"could not announce standby {coordinator_id}: {err}") from err

    async def standbys(self) -> tuple[str, ...]:
        """The coordinators that said they stand by within the last lease time, sorted."""
        return await standbys(self._js, bucket=self._bucket)


async def standbys(js: JetStreamContext, *, bucket: str = LEADER_BUCKET) -> tuple[str, ...]:
    """The coordinators standing by (their ``standby.<id>`` keys not yet aged out),
    sorted: one stream-info request listing the bucket's standby subjects, so a reader
    needs no lease of its own."""
    prefix = f"$KV.{bucket}.{STANDBY_PREFIX}"
    try:
        info = await js.stream_info(f"KV_{bucket}", subjects_filter=f"{prefix}>")
    except nats.errors.Error as err:
        raise StoreError(f"could not list the standby coordinators: {err}") from err
    return tuple(sorted(subject.removeprefix(prefix) for subject in info.state.subjects or {}))

"""Snapshot storage in a JetStream Object Store (KV values cap at 1 MiB; states do not)."""

from __future__ import annotations

import logging
from typing import Final

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import ObjectStoreConfig, StorageType
from nats.js.object_store import ObjectStore

from eventsrc.errors import StoreError

log = logging.getLogger(__name__)

SNAPSHOT_BUCKET: Final = "EVENTSRC_SNAPSHOTS"
DEFAULT_SNAPSHOT_NAME: Final = "cluster-state"


class SnapshotStore:
    """Latest-snapshot-wins storage: ``save`` overwrites, ``load`` returns newest or None."""

    def __init__(self, js: JetStreamContext, *, bucket: str = SNAPSHOT_BUCKET, replicas: int = 1):
        self._js = js
        self._bucket = bucket
        self._replicas = replicas
        self._store: ObjectStore | None = None

    async def _bucket_store(self, *, create: bool = True) -> ObjectStore:
        if self._store is None:
            try:
                self._store = await self._js.object_store(self._bucket)
            except nats.js.errors.BucketNotFoundError:
                if not create:
                    raise
                self._store = await self._js.create_object_store(
                    self._bucket,
                    ObjectStoreConfig(
                        description="eventsrc projection snapshots",
                        storage=StorageType.FILE,
                        replicas=self._replicas,
                    ),
                )
        return self._store

    async def save(self, data: bytes, *, name: str = DEFAULT_SNAPSHOT_NAME) -> None:
        """Store a snapshot, replacing the previous one of that name."""
        try:
            store = await self._bucket_store()
            await store.put(name, data)
        except nats.errors.Error as err:
            raise StoreError(f"could not save snapshot {name}: {err}") from err

    async def load(self, *, name: str = DEFAULT_SNAPSHOT_NAME) -> bytes | None:
        """The stored snapshot bytes, or None when there is none (or it cannot be read).

        Reading never creates the bucket, so inspecting a deployment changes nothing.
        """
        try:
            return await self.read(name=name)
        except StoreError as err:
            log.warning("snapshot %s unreadable (%s); a full replay follows", name, err.__cause__)
            return None

    async def read(self, *, name: str = DEFAULT_SNAPSHOT_NAME) -> bytes | None:
        """Like ``load``, but a snapshot that cannot be read is a StoreError (for tools
        that must say so rather than fall back)."""
        try:
            store = await self._bucket_store(create=False)
            result = await store.get(name)
        except nats.js.errors.NotFoundError:  # no bucket, no object, or a deleted one
            return None
        except nats.errors.Error as err:
            raise StoreError(
                f"cannot read the snapshot from {self._bucket} ({err or type(err).__name__})"
            ) from err
        return bytes(result.data or b"")

    async def delete(self, *, name: str = DEFAULT_SNAPSHOT_NAME) -> None:
        """Remove a snapshot (the next start replays in full)."""
        try:
            store = await self._bucket_store()
            await store.delete(name)
        except nats.js.errors.NotFoundError:
            return
        except nats.errors.Error as err:
            raise StoreError(f"could not delete snapshot {name}: {err}") from err

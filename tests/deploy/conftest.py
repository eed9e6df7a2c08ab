"""Fixtures of the deployment tests: the loopback NATS cluster and the e2e cluster of one."""

from __future__ import annotations

from tests.e2e.conftest import e2e
from tests.nats_cluster import nats_cluster

__all__ = ["e2e", "nats_cluster"]

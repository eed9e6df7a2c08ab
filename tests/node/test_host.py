"""Telling a dead predecessor from a live process: only on this very host and pid
namespace, and only with the process's start time matching."""

from __future__ import annotations

import os
import subprocess
import sys

import psutil

from eventsrc.node.host import host_identity, process_is_gone, process_started


def test_this_host_has_an_identity() -> None:
    identity = host_identity()
    assert identity.count(":") == 2 and all(identity.split(":"))


def test_a_live_process_is_never_gone() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        started = psutil.Process(child.pid).create_time()
        here = host_identity()
        assert not process_is_gone(host_id=here, pid=child.pid, started=started)
        # Unknown, or another host or container: never judged from here.
        for host_id in ("", "other-machine:boot:4026531836"):
            assert not process_is_gone(host_id=host_id, pid=child.pid + 10**6, started=started)
        assert not process_is_gone(host_id=here, pid=child.pid, started=0.0)
        # The same pid, started at another time: a reused pid, so the holder is gone.
        assert process_is_gone(host_id=here, pid=child.pid, started=started - 100)
    finally:
        child.kill()
        child.wait()
    assert process_is_gone(host_id=host_identity(), pid=child.pid, started=started)


def test_our_own_pid_means_the_holder_is_gone() -> None:
    assert process_is_gone(host_id=host_identity(), pid=os.getpid(), started=process_started())

"""The unwrapper's process pool: its children leave with the process that made it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil

_PARENT = """
import os, sys, time
from assetfactory.algorithms.unwrap import _pool
print(_pool(1).submit(os.getpid).result(), flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_pool_children_exit_when_their_parent_is_killed():
    """A Ray worker SIGKILLed mid-run (out of memory, a fault, its driver gone) must not leave
    its unwrap children waiting on the pool's queue forever."""
    parent = subprocess.Popen([sys.executable, "-c", _PARENT], stdout=subprocess.PIPE,
                              start_new_session=True)
    try:
        child = int(parent.stdout.readline())
        assert psutil.Process(child).ppid() == parent.pid
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 30
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(child), "the pool's child outlived its parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        try:
            os.killpg(parent.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

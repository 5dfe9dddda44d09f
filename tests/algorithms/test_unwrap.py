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


def _hang_once(marker: str, value: int) -> int:
    """Hang (as a child holding an inherited lock would) the first time, answer after."""
    if not os.path.exists(marker):
        open(marker, "w").close()
        time.sleep(600)
    return value * 2


def test_a_hung_call_is_run_again_in_a_fresh_pool(tmp_path, monkeypatch):
    """A child that stops answering is killed at its stall limit and its calls run again in
    newly forked children, so the stage goes on instead of holding its CPU until its timeout."""
    from assetfactory.algorithms import unwrap

    monkeypatch.setattr(unwrap, "STALL_BASE_S", 1.5)
    marker = str(tmp_path / "hung")
    unwrap._drop_pool(kill=True)
    first = unwrap._pool(1)
    hung = list(first._processes)
    out = unwrap._run([(_hang_once, marker, 3), (_hang_once, marker, 4)], 1, "two calls",
                      [10, 10])
    assert out == [6, 8]
    assert unwrap._POOL is not first
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in hung) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in hung), "the hung child was left running"
    unwrap._drop_pool(kill=True)


def _hang_always(value: int) -> int:
    time.sleep(600)
    return value


def test_a_call_that_hangs_twice_fails_the_stage_with_a_fix(monkeypatch):
    import pytest

    from assetfactory.algorithms import unwrap
    from assetfactory.core.errors import ProcessingError

    monkeypatch.setattr(unwrap, "STALL_BASE_S", 1.0)
    with pytest.raises(ProcessingError, match="xatlas stopped working on the mesh") as err:
        unwrap._run([(_hang_always, 1)], 1, "the mesh", [10])
    assert "chunk_faces" in err.value.fix
    assert unwrap._POOL is None


def _busy(seconds: float) -> float:
    """Work on the CPU for ``seconds`` (a slow xatlas call, not a hung one)."""
    end, x = time.monotonic() + seconds, 0.0
    while time.monotonic() < end:
        x += sum(i * i for i in range(1000))
    return seconds


def test_an_idle_child_is_caught_long_before_the_ceiling_and_a_busy_one_is_not(tmp_path,
                                                                               monkeypatch):
    """A hung child uses no CPU: it is taken as stalled after ``IDLE_S`` without CPU, not at
    the ceiling of minutes; a call that keeps working past ``IDLE_S`` runs to its end."""
    from assetfactory.algorithms import unwrap

    monkeypatch.setattr(unwrap, "IDLE_S", 1.0)
    monkeypatch.setattr(unwrap, "POLL_S", 0.2)
    monkeypatch.setattr(unwrap, "STALL_BASE_S", 300.0)
    unwrap._drop_pool(kill=True)
    assert unwrap._run([(_busy, 2.5)], 1, "a slow call", [10]) == [2.5]
    first = unwrap._POOL
    t = time.monotonic()
    out = unwrap._run([(_hang_once, str(tmp_path / "hung"), 5)], 1, "one call", [10])
    assert out == [10] and unwrap._POOL is not first
    assert time.monotonic() - t < 60, "the hung call waited for the ceiling"
    unwrap._drop_pool(kill=True)


def test_settle_waits_for_a_new_thread_to_sleep_before_an_atlas_is_dropped(tmp_path, monkeypatch):
    """xatlas wakes its workers once when an atlas is destroyed; a worker still running
    towards its wait would miss it and hang the process. ``_settle`` returns only when the
    threads started since ``before`` sleep, and at once when they already do.

    The threads' states come from a stand-in for ``/proc/self/task`` (a Python thread cannot
    play an xatlas worker: whenever the checking thread holds the GIL it sleeps on it, and
    reads as asleep mid-run): one new thread runnable for 0.4 s, then asleep; an old one
    runnable throughout, which must not count."""
    import threading

    from assetfactory.algorithms import unwrap

    def state(tid: str, letter: str) -> None:
        (tmp_path / tid).mkdir(exist_ok=True)
        (tmp_path / tid / "stat").write_text(f"{tid} (xatlas worker) {letter} 1 2 3\n")

    state("100", "R")                                  # there before: ignored
    monkeypatch.setattr(unwrap, "_TASKS", str(tmp_path))
    before = unwrap._threads()
    state("200", "R")                                  # new, running towards its wait
    slept_at = []

    def fall_asleep():
        state("200", "S")
        slept_at.append(time.monotonic())

    timer = threading.Timer(0.4, fall_asleep)
    timer.start()
    try:
        unwrap._settle(before)
        settled = time.monotonic()
        assert slept_at and settled >= slept_at[0], "settled while the new thread was running"
        # already asleep: returns without waiting out its 5 s limit (an old thread still
        # running would hold it there)
        again = time.monotonic()
        unwrap._settle(before)
        assert time.monotonic() - again < 2.5
    finally:
        timer.cancel()


def test_partitions_hold_a_fixed_share_of_the_atlas():
    """Partitions get smaller as the atlas gets more texels per face (seams' padding costs
    less there), never below ``MIN_PARTITION`` nor above ``chunk_faces``."""
    from types import SimpleNamespace

    import numpy as np
    import trimesh

    from assetfactory.algorithms.unwrap import MIN_PARTITION, partition_faces, partition_size
    from assetfactory.core.mesh import MeshData

    def opts(resolution, chunk=8000, texels=360_000):
        return SimpleNamespace(resolution=resolution, chunk_faces=chunk, partition_texels=texels)

    assert partition_size(23_000, opts(2048)) == 23_000 * 360_000 // 2048**2  # 1974
    assert partition_size(23_000, opts(1024)) == 7896          # 4x the texels per face
    assert partition_size(23_000, opts(512)) == 8000           # capped at chunk_faces
    assert partition_size(23_000, opts(2048, chunk=700)) == 700
    assert partition_size(2_000, opts(4096)) == MIN_PARTITION
    assert partition_size(23_000, opts(2048, texels=0)) == 8000  # 0: chunk_faces as before

    s = trimesh.creation.icosphere(5)  # 20,480 faces, one part
    mesh = MeshData(np.asarray(s.vertices), np.asarray(s.faces))
    small = partition_faces(mesh, partition_size(mesh.n_faces, opts(2048)))
    big = partition_faces(mesh, partition_size(mesh.n_faces, opts(1024)))
    assert max(len(g) for g in small) <= 1758 < max(len(g) for g in big) <= 7864
    for groups in (small, big):  # every face in exactly one partition
        np.testing.assert_array_equal(np.sort(np.concatenate(groups)), np.arange(mesh.n_faces))

"""Checks shared by test modules (imported as ``tests.tools``; a name in a ``conftest.py``
is ambiguous once a test folder has a conftest of its own)."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable

import pytest


def skip_without_gltf_validator() -> None:
    """Skip the calling test module when Node.js or the npm glTF-Validator is missing."""
    from assetfactory.core.validate import find_node_modules

    if shutil.which("node") is None:
        pytest.skip("Node.js is not installed (the glTF-Validator runs on it)")
    try:
        find_node_modules()
    except RuntimeError as exc:
        pytest.skip(str(exc))


def session_processes(sid: int) -> list:
    """The live processes (zombies left out) of session ``sid``: a process started with
    ``start_new_session=True`` and everything it started, Ray's workers included (they take
    process groups of their own but stay in the session)."""
    import os

    import psutil

    out = []
    for p in psutil.process_iter():
        try:
            if os.getsid(p.pid) == sid and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except (OSError, psutil.Error):  # ended meanwhile, or not ours to read
            continue
    return out


def end_session(sid: int, timeout: float = 60.0) -> list[str]:
    """SIGKILL every process of session ``sid`` until none is left (a killed raylet can still
    be starting a worker); returns those alive after ``timeout`` ("pid name"). Never kill by
    name: other Ray clusters and servers on the machine are not ours."""
    import time

    import psutil

    deadline = time.monotonic() + timeout
    while True:
        left = session_processes(sid)
        if not left:
            return []
        if time.monotonic() > deadline:
            out = []
            for p in left:
                try:
                    out.append(f"{p.pid} {p.name()}")
                except psutil.Error:
                    continue
            return out
        for p in left:
            try:
                p.kill()
            except psutil.Error:
                continue
        time.sleep(0.2)


def assert_readers_see_whole_files(store, read: Callable[[], bytes], sizes: list[int],
                                   reads: int) -> None:
    """One thread rewrites ``assets/x/x.glb`` through ``store`` with payloads of ``sizes``
    bytes while ``read()`` reads it ``reads`` times: every read is one whole payload, and the
    reads overlapped at least two different writes."""
    payloads = [bytes([i]) * n for i, n in enumerate(sizes)]
    store.put("assets/x/x.glb", payloads[0])
    stop = threading.Event()

    def writer():
        i = 0
        while not stop.is_set():
            store.put("assets/x/x.glb", payloads[i % len(payloads)])
            i += 1

    seen: set[int] = set()
    t = threading.Thread(target=writer)
    t.start()
    try:
        for _ in range(reads):
            data = read()
            assert data in payloads, f"a reader saw {len(data)} bytes, not a whole file"
            seen.add(data[0])
    finally:
        stop.set()
        t.join()
    assert len(seen) >= 2  # the reads really overlapped several writes

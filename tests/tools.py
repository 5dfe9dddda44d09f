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

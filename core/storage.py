"""Artifact storage: one interface, a local directory by default, S3 through boto3.

Artifacts are content-addressed (``objects/ab/abcdef....ext``): writing the same bytes twice
is a no-op, and a reference (URI + sha256) is all that travels between stages. Named outputs
(a SKU's GLB, the catalog's fragments) are written under readable keys. Every write is
atomic: temp file + rename locally, one PUT on S3, so a reader sees the old file or the new one,
never part of one, and a writer killed midway leaves only an invisible ``.tmp-*`` file (which
``list`` skips). A key is a relative path that stays inside the root: ``..`` segments, absolute
keys and empty segments are refused rather than written somewhere else.
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

from .hashing import sha256_bytes


@dataclass(frozen=True)
class ArtifactRef:
    """A content-addressed artifact: where it is and what its bytes hash to."""

    uri: str
    sha256: str
    size: int = 0
    media_type: str = "application/octet-stream"


class Storage(Protocol):
    root_uri: str

    def put(self, key: str, data: bytes, media_type: str = ...) -> ArtifactRef: ...
    def get(self, key_or_uri: str) -> bytes: ...
    def exists(self, key: str) -> bool: ...
    def list(self, prefix: str) -> Iterator[str]: ...
    def local_path(self, key: str) -> Path | None: ...


_EXT_MEDIA = {
    ".png": "image/png", ".jpg": "image/jpeg", ".glb": "model/gltf-binary",
    ".usdz": "model/vnd.usdz+zip", ".json": "application/json", ".npz": "application/x-npz",
    ".parquet": "application/vnd.apache.parquet",
}


class BadKey(ValueError):
    """A storage key that would leave the storage root or is not a plain relative path."""


def check_key(key: str) -> str:
    """``key`` if it is a plain relative key (``a/b.glb``); raises ``BadKey`` otherwise."""
    parts = key.split("/")
    if (not key or key.startswith("/") or "\\" in key or "\x00" in key
            or any(p in ("", ".", "..") for p in parts)):
        raise BadKey(f"storage key {key!r} must be a relative path without '.', '..' or empty "
                     "segments")
    return key


def _file_mode() -> int:
    """The mode a plain ``open(..., 'w')`` would give a new file (0666 minus the umask)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except OSError:
        pass
    return 0o644


_FILE_MODE = _file_mode()
#: Flush each local file to disk before renaming it into place (a power cut then never leaves a
#: short file under the final name). ``ASSETFACTORY_FSYNC=0`` trades that for speed on scratch
#: disks (about 6 ms per file on the development VM).
FSYNC = os.environ.get("ASSETFACTORY_FSYNC", "1") not in ("0", "false", "no")


def media_type_for(key: str) -> str:
    return _EXT_MEDIA.get(os.path.splitext(key)[1].lower(), "application/octet-stream")


def put_object(store: Storage, data: bytes, ext: str) -> ArtifactRef:
    """Store bytes under their content address and return the reference."""
    digest = sha256_bytes(data)
    key = f"objects/{digest[:2]}/{digest}{ext}"
    local = store.local_path(key)
    # a local object of the wrong size (a file system that lost data in a power cut) is rewritten
    if (store.exists(key) if local is None
            else local.is_file() and local.stat().st_size == len(data)):
        return ArtifactRef(store.uri_for(key), digest, len(data), media_type_for(key))  # type: ignore[attr-defined]
    return store.put(key, data, media_type_for(key))


class LocalStorage:
    """A directory on this machine."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root).expanduser().resolve()
        self.root_uri = str(self.root)

    def uri_for(self, key: str) -> str:
        return str(self.root / key)

    def _path(self, key_or_uri: str) -> Path:
        if key_or_uri.startswith("file://"):
            key_or_uri = urlparse(key_or_uri).path
        p = Path(key_or_uri)
        return p if p.is_absolute() else self.root / key_or_uri

    def put(self, key: str, data: bytes, media_type: str | None = None) -> ArtifactRef:
        path = self.root / check_key(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.parent.resolve().is_relative_to(self.root):
            raise BadKey(f"storage key {key!r} leads outside {self.root} through a symlink")
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                if FSYNC:  # the rename must never publish a file whose bytes are only cached
                    fh.flush()
                    os.fsync(fh.fileno())
            os.chmod(tmp, _FILE_MODE)  # mkstemp makes 0600; outputs are meant to be shared
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return ArtifactRef(str(path), sha256_bytes(data), len(data), media_type or media_type_for(key))

    def get(self, key_or_uri: str) -> bytes:
        return self._path(key_or_uri).read_bytes()

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    def list(self, prefix: str) -> Iterator[str]:
        base = self.root / prefix
        if not base.exists():
            return iter(())
        return (str(p.relative_to(self.root)) for p in sorted(base.rglob("*"))
                if p.is_file() and not p.name.startswith(".tmp-"))

    def local_path(self, key: str) -> Path | None:
        return self._path(key)


class S3Storage:
    """A bucket and prefix on any S3 endpoint (AWS, SeaweedFS, MinIO, R2).

    The endpoint comes from ``AWS_ENDPOINT_URL`` (or ``ASSETFACTORY_S3_ENDPOINT``); credentials
    from the usual boto3 chain.
    """

    def __init__(self, uri: str, endpoint_url: str | None = None) -> None:
        parsed = urlparse(uri)
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self.root_uri = uri.rstrip("/")
        self.endpoint_url = (endpoint_url or os.environ.get("ASSETFACTORY_S3_ENDPOINT")
                             or os.environ.get("AWS_ENDPOINT_URL"))

    @functools.cached_property
    def client(self):
        import boto3
        from botocore.config import Config

        # botocore's standard retry mode (exponential backoff with jitter) rides out a busy or
        # briefly restarting server ("InternalError", "SlowDown", dropped connections) instead
        # of failing the SKU on the first hiccup; a request that still fails raises.
        config = Config(retries={"mode": "standard", "max_attempts": 8})
        return boto3.client("s3", endpoint_url=self.endpoint_url, config=config)

    def __getstate__(self):
        return {"bucket": self.bucket, "prefix": self.prefix, "root_uri": self.root_uri,
                "endpoint_url": self.endpoint_url}

    def _key(self, key_or_uri: str) -> str:
        if key_or_uri.startswith("s3://"):
            return urlparse(key_or_uri).path.lstrip("/")
        return f"{self.prefix}/{key_or_uri}" if self.prefix else key_or_uri

    def uri_for(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def put(self, key: str, data: bytes, media_type: str | None = None) -> ArtifactRef:
        mt = media_type or media_type_for(key)
        # one PUT: S3 makes the object visible only once all of it has arrived
        self.client.put_object(Bucket=self.bucket, Key=self._key(check_key(key)), Body=data,
                               ContentType=mt)
        return ArtifactRef(self.uri_for(key), sha256_bytes(data), len(data), mt)

    def get(self, key_or_uri: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=self._key(key_or_uri))["Body"].read()

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except ClientError:
            return False

    def list(self, prefix: str) -> Iterator[str]:
        full = self._key(prefix)
        strip = len(self.prefix) + 1 if self.prefix else 0
        for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=full):
            for obj in page.get("Contents", []):
                yield obj["Key"][strip:]

    def local_path(self, key: str) -> Path | None:
        return None


@functools.lru_cache(maxsize=16)
def open_storage(uri: str) -> LocalStorage | S3Storage:
    """``s3://bucket/prefix`` or a local directory path."""
    if uri.startswith("s3://"):
        return S3Storage(uri)
    return LocalStorage(uri)


def read_ref(ref: ArtifactRef | str, store_uri: str | None = None) -> bytes:
    """Read an artifact's bytes from its URI, whichever storage it lives in."""
    uri = ref.uri if isinstance(ref, ArtifactRef) else ref
    if uri.startswith("s3://"):
        parsed = urlparse(uri)
        s3 = open_storage(f"s3://{parsed.netloc}")
        return s3.get(uri)
    return Path(urlparse(uri).path if uri.startswith("file://") else uri).read_bytes()

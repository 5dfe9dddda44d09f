"""Shared fixtures: the third-party test data folder, an isolated Prefect home, and a real S3
server (SeaweedFS on loopback) for the storage and catalog tests."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from tests.tools import Weed

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


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory):
    """A SeaweedFS server with an S3 gateway and a bucket ``factory``, for the whole session."""
    weed = Weed(tmp_path_factory.mktemp("weed"))
    weed.start()
    endpoint = weed.endpoint
    env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
           "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint,
           "ASSETFACTORY_CACHE_DIR": str(tmp_path_factory.mktemp("catalog-cache"))}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    weed.wait_ready()
    _clear_storage_cache()
    yield endpoint
    weed.stop(grace=2)   # its data is a temporary folder: no clean shutdown needed
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

"""Shared fixtures: the third-party test data folder, and an isolated Prefect home."""

from __future__ import annotations

import os
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


def skip_without_gltf_validator() -> None:
    """Skip the calling test module when Node.js or the npm glTF-Validator is missing."""
    import shutil

    from assetfactory.core.validate import find_node_modules

    if shutil.which("node") is None:
        pytest.skip("Node.js is not installed (the glTF-Validator runs on it)")
    try:
        find_node_modules()
    except RuntimeError as exc:
        pytest.skip(str(exc))


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

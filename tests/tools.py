"""Checks shared by test modules (imported as ``tests.tools``; a name in a ``conftest.py``
is ambiguous once a test folder has a conftest of its own)."""

from __future__ import annotations

import shutil

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

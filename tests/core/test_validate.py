"""validate: the Khronos glTF-Validator through Node."""

from __future__ import annotations

import shutil

import pytest
import trimesh

from assetfactory.core import validate
from assetfactory.core.validate import GltfReport, find_node_modules, validate_gltf


@pytest.fixture(scope="module", autouse=True)
def need_validator():
    if shutil.which("node") is None:
        pytest.skip("Node.js is not installed")
    try:
        find_node_modules()
    except RuntimeError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def box_glb() -> bytes:
    return trimesh.creation.box().export(file_type="glb")


def test_valid_glb_has_no_errors(box_glb):
    report = validate_gltf(box_glb)
    assert isinstance(report, GltfReport)
    assert report.ok and report.errors == 0
    assert report.validator_version


def test_truncated_glb_has_errors(box_glb):
    report = validate_gltf(box_glb[: len(box_glb) // 2])
    assert report.errors > 0 and not report.ok
    assert report.first("error")[0].startswith("GLB_")


def test_corrupted_json_chunk_has_errors(box_glb):
    bad = bytearray(box_glb)
    start = bad.index(b'"accessors"')
    bad[start:start + 11] = b'"accessorz"'  # every accessor reference now dangles
    report = validate_gltf(bytes(bad))
    assert report.errors > 0
    assert any(m["severity"] == 0 for m in report.messages)


def test_max_issues_truncates(box_glb):
    report = validate_gltf(box_glb[:40], max_issues=1)
    assert len(report.messages) <= 1


def test_env_var_points_at_node_modules(monkeypatch, tmp_path):
    found = find_node_modules()
    monkeypatch.setenv("ASSETFACTORY_NODE_MODULES", str(found.parent))
    assert find_node_modules() == found
    monkeypatch.setenv("ASSETFACTORY_NODE_MODULES", str(found))
    assert validate._candidates()[0] == found


def test_missing_package_says_run_npm_ci(monkeypatch, tmp_path):
    monkeypatch.setattr(validate, "_candidates", lambda: [tmp_path / "node_modules"])
    with pytest.raises(RuntimeError, match="npm ci"):
        validate_gltf(b"glTF")


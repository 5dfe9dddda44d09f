"""validate: the Khronos glTF-Validator through Node."""

from __future__ import annotations

import pytest
import trimesh

from assetfactory.core import validate
from assetfactory.core.validate import GltfReport, find_node_modules, validate_gltf
from tests.tools import skip_without_gltf_validator


@pytest.fixture(scope="module", autouse=True)
def need_validator():
    skip_without_gltf_validator()


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



# ---------------------------------------------------------------- USDZ (usdchecker --arkit rules)

def _usd_stage(path, *, up=True, meters=True, default=True):
    from pxr import Usd, UsdGeom

    stage = Usd.Stage.CreateNew(str(path))
    xf = UsdGeom.Xform.Define(stage, "/asset")
    UsdGeom.Mesh.Define(stage, "/asset/geom")
    if up:
        UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.y)
    if meters:
        UsdGeom.SetStageMetersPerUnit(stage, 1.0)
    if default:
        stage.SetDefaultPrim(xf.GetPrim())
    stage.GetRootLayer().Save()
    return path


def _package(layer, out):
    from pxr import Sdf, UsdUtils

    assert UsdUtils.CreateNewARKitUsdzPackage(Sdf.AssetPath(str(layer)), str(out))
    return out


@pytest.fixture()
def pxr_available():
    pytest.importorskip("pxr")


def test_usdz_with_stage_metadata_passes(tmp_path, pxr_available):
    path = _package(_usd_stage(tmp_path / "ok.usdc"), tmp_path / "ok.usdz")
    report = validate.validate_usdz(path)
    assert report.ok and report.errors == 0 and report.validators >= 15


def test_usdz_without_up_axis_meters_or_default_prim_fails(tmp_path, pxr_available):
    layer = _usd_stage(tmp_path / "bad.usdc", up=False, meters=False, default=False)
    report = validate.validate_usdz(_package(layer, tmp_path / "bad.usdz"))
    text = " ".join(report.messages)
    assert not report.ok and "upAxis" in text and "metersPerUnit" in text
    assert "defaultPrim" in text


def test_compressed_or_foreign_files_in_a_package_fail(tmp_path, pxr_available):
    import zipfile

    layer = _usd_stage(tmp_path / "a.usdc")
    path = tmp_path / "zipped.usdz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.write(layer, "a.usdc")
        z.writestr("notes.txt", "hello")
    report = validate.validate_usdz(path)
    assert not report.ok and report.messages[0].startswith("ERROR")


def test_non_preview_surface_shader_fails_arkit(tmp_path, pxr_available):
    from pxr import Usd, UsdShade

    layer = _usd_stage(tmp_path / "s.usdc")
    stage = Usd.Stage.Open(str(layer))
    UsdShade.Material.Define(stage, "/asset/mat")
    UsdShade.Shader.Define(stage, "/asset/mat/s").CreateIdAttr("ND_standard_surface_surfaceshader")
    stage.GetRootLayer().Save()
    report = validate.validate_usdz(_package(layer, tmp_path / "s.usdz"))
    assert any("ARKit ignores" in m for m in report.messages) and not report.ok


def test_served_validator_answers_like_a_fresh_process_and_survives_its_death(box_glb):
    from assetfactory.core.validate import _SERVER, validate_gltf_once

    broken = box_glb[:-40]
    for data in (box_glb, broken, b"garbage"):
        assert validate_gltf(data) == validate_gltf_once(data)
    for run in (validate_gltf, validate_gltf_once):  # no format at all: the validator refuses
        with pytest.raises(RuntimeError, match="could not detect glTF format"):
            run(b"not a glb")
    _SERVER._proc.kill()  # the served process dies between two files
    _SERVER._proc.wait()
    assert validate_gltf(box_glb) == validate_gltf_once(box_glb)

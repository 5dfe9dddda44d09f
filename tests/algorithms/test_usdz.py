"""USDZ: a textured, two-material asset written as a package the USD validators accept."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from assetfactory.algorithms.usdz import UsdMaterial, UsdTextures, build_usdz, usd_name
from assetfactory.core.mesh import MeshData
from assetfactory.core.validate import validate_usdz
from assetfactory.geometry.colour import to_uint8
from tests.builders import unit_cube

pxr = pytest.importorskip("pxr")


def _png(value: float) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), to_uint8(value), np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _textured_cube() -> MeshData:
    cube = unit_cube(split_seams=True)
    uv = np.tile(np.array([[0, 0], [1, 0], [1, 1]], np.float32), (cube.n_faces, 1))
    return cube.replace(uv=uv, vertex_normals=np.tile([0, 1, 0], (cube.n_vertices, 1))
                        .astype(np.float32),
                        face_labels=(np.arange(cube.n_faces) >= 6).astype(np.int32))


def test_a_two_material_textured_package_validates(tmp_path):
    mesh = _textured_cube()
    mats = [UsdMaterial("box-metal", np.arange(6), 1.0, 0.3, (1.0, 1.0, 1.0)),
            UsdMaterial("box-paper", np.arange(6, 12), 0.0, 0.8, (1.0, 1.0, 1.0))]
    textures = UsdTextures({"base_color": (_png(0.5), "png"), "orm": (_png(0.7), "png")})
    data = build_usdz(mesh, "box", mats, textures)
    path = tmp_path / "box.usdz"
    path.write_bytes(data)
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        assert names[0].endswith((".usdc", ".usda"))       # the root layer comes first
        assert all(i.compress_type == zipfile.ZIP_STORED for i in z.infolist())
    report = validate_usdz(path)
    assert report.ok, report.first()
    stage = pxr.Usd.Stage.Open(str(path))
    assert pxr.UsdGeom.GetStageUpAxis(stage) == "Y"
    assert pxr.UsdGeom.GetStageMetersPerUnit(stage) == 1.0
    shaders = [p for p in stage.Traverse() if p.IsA(pxr.UsdShade.Shader)]
    assert len([p for p in shaders if pxr.UsdShade.Shader(p).GetIdAttr().Get()
                == "UsdPreviewSurface"]) == 2


def test_names_are_usd_identifiers():
    assert usd_name("mug-01.blue") == usd_name("mug-01.blue")
    assert pxr.Sdf.Path.IsValidIdentifier(usd_name("9 lives!"))

"""export: a validated GLB under the readable key, with the conventions viewers expect."""

from __future__ import annotations

import io
import json
import re
import struct

import numpy as np
import pytest
import trimesh
from PIL import Image

from assetfactory.algorithms.gltf import pow2_at_most
from assetfactory.algorithms.unwrap import apply_unwrap, unwrap
from assetfactory.core.artifacts import read_bytes, save_image, save_mesh
from assetfactory.core.errors import OptionsError, ValidationFailed
from assetfactory.core.mesh import MeshData
from assetfactory.core.paths import asset_dir
from assetfactory.core.types import AssetState, SkuSpec, StageResult
from assetfactory.tasks.export import ExportOptions, export, gltf_name
from assetfactory.tasks.uv import UVOptions
from tests.tools import skip_without_gltf_validator

NAME_RE = re.compile(r"[a-z][a-z0-9_-]*")
SKU = "Mug 42/Blue"


@pytest.fixture(scope="module", autouse=True)
def need_validator():
    skip_without_gltf_validator()


@pytest.fixture(scope="module")
def uv_mesh() -> MeshData:
    """A placed (bottom at y=0), unwrapped sphere of 10 cm."""
    s = trimesh.creation.icosphere(3, radius=0.05)
    mesh = MeshData(s.vertices + [0.0, 0.05, 0.0], s.faces)
    return apply_unwrap(mesh, unwrap(mesh, UVOptions(resolution=256)))


def make_state(tmp_path, mesh: MeshData, texture: np.ndarray | None = None) -> AssetState:
    state = AssetState(sku=SKU, spec=SkuSpec(sku=SKU), store_uri=str(tmp_path))
    arts = {"mesh": save_mesh(state, mesh)}
    if texture is not None:
        arts["texture/base_color"] = save_image(state, texture)
    return state.apply(StageResult(artifacts=arts))


def checker(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = 255 * (((yy // 16) + (xx // 16)) % 2)
    img[..., 2] = 128
    return img


def glb_parts(glb: bytes) -> tuple[dict, bytes]:
    """The JSON chunk and the BIN chunk of a GLB."""
    json_len = struct.unpack_from("<I", glb, 12)[0]
    doc = json.loads(glb[20:20 + json_len])
    bin_start = 20 + json_len
    bin_len = struct.unpack_from("<I", glb, bin_start)[0]
    return doc, glb[bin_start + 8:bin_start + 8 + bin_len]


def accessor(doc: dict, blob: bytes, index: int) -> np.ndarray:
    acc = doc["accessors"][index]
    view = doc["bufferViews"][acc["bufferView"]]
    width = {"VEC2": 2, "VEC3": 3, "VEC4": 4, "SCALAR": 1}[acc["type"]]
    dtype = {5126: np.float32, 5121: np.uint8, 5125: np.uint32}[acc["componentType"]]
    start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
    return np.frombuffer(blob, dtype, acc["count"] * width, start).reshape(-1, width)


def test_textured_glb_is_valid_and_follows_conventions(tmp_path, uv_mesh):
    state = make_state(tmp_path, uv_mesh, checker(300, 200))
    result = export(state, ExportOptions(texture_size=512, poster_size=64))
    glb = read_bytes(state.apply(result), "glb")
    assert result.artifacts["glb"].uri.endswith(f"{asset_dir(SKU)}/Mug_42_Blue.glb")
    m = result.metrics
    assert m["gltf_errors"] == 0 and m["export_glb_bytes"] == len(glb)
    assert m["gltf_warnings"] == 0
    doc, blob = glb_parts(glb)
    # names derived from the SKU
    names = [doc["nodes"][0]["name"], doc["meshes"][0]["name"], doc["materials"][0]["name"]]
    assert all(NAME_RE.fullmatch(n) for n in names) and names[0] == "mug-42-blue"
    # PBR metal/rough, texture a power of two on each side
    pbr = doc["materials"][0]["pbrMetallicRoughness"]
    assert pbr["metallicFactor"] == 0.0 and pbr["roughnessFactor"] == pytest.approx(0.6)
    view = doc["bufferViews"][doc["images"][0]["bufferView"]]
    png = blob[view.get("byteOffset", 0):view.get("byteOffset", 0) + view["byteLength"]]
    with Image.open(io.BytesIO(png)) as im:
        assert im.size == (256, 256)
    assert m["export_texture_px"] == 256
    # glTF's V points down: the exporter flips the mesh's V-up coordinates
    attrs = doc["meshes"][0]["primitives"][0]["attributes"]
    tex = accessor(doc, blob, attrs["TEXCOORD_0"])
    np.testing.assert_allclose(tex[:, 1], 1.0 - uv_mesh.uv[:, 1], atol=1e-6)
    normals = accessor(doc, blob, attrs["NORMAL"])
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-5)
    # loads back in trimesh, unmoved: bottom at y = 0, centred in x and z
    loaded = trimesh.load(io.BytesIO(glb), file_type="glb", force="mesh")
    lo, hi = loaded.bounds
    assert lo[1] == pytest.approx(0.0, abs=1e-6)
    np.testing.assert_allclose(hi - lo, uv_mesh.bounds()[1] - uv_mesh.bounds()[0], atol=1e-6)
    assert len(loaded.faces) == uv_mesh.n_faces


def test_poster_is_rgb_on_white_and_shows_the_object(tmp_path, uv_mesh):
    state = make_state(tmp_path, uv_mesh, checker(64, 64))
    result = export(state, ExportOptions(poster_size=96))
    assert result.artifacts["poster"].uri.endswith(f"{asset_dir(SKU)}/poster.png")
    with Image.open(io.BytesIO(read_bytes(state.apply(result), "poster"))) as im:
        assert im.mode == "RGB" and im.size == (96, 96)
        px = np.asarray(im)
    assert np.all(px[0, 0] == 255) and np.all(px[-1, -1] == 255)  # white background
    covered = np.any(px < 250, axis=2)
    assert 0.2 < covered.mean() < 0.9  # framed: fills much of the frame, touches no border
    assert not covered[0].any() and not covered[-1].any()
    assert not covered[:, 0].any() and not covered[:, -1].any()


def test_without_texture_uses_vertex_colours_or_grey(tmp_path, uv_mesh):
    colors = np.tile(np.array([255, 0, 0, 255], np.uint8), (uv_mesh.n_vertices, 1))
    state = make_state(tmp_path / "c", uv_mesh.replace(vertex_colors=colors))
    result = export(state, ExportOptions(write_poster=False))
    doc, _ = glb_parts(read_bytes(state.apply(result), "glb"))
    attrs = doc["meshes"][0]["primitives"][0]["attributes"]
    assert "COLOR_0" in attrs and "images" not in doc
    assert result.metrics["export_texture_px"] == 0 and result.metrics["gltf_errors"] == 0
    assert "poster" not in result.artifacts

    state = make_state(tmp_path / "g", uv_mesh)
    result = export(state, ExportOptions(write_poster=False))
    doc, _ = glb_parts(read_bytes(state.apply(result), "glb"))
    factor = doc["materials"][0]["pbrMetallicRoughness"]["baseColorFactor"]
    assert factor[:3] == pytest.approx([0.8, 0.8, 0.8]) and result.metrics["gltf_errors"] == 0


def test_over_budget_fails_with_a_fix(tmp_path, uv_mesh):
    state = make_state(tmp_path, uv_mesh, checker(512, 512))
    with pytest.raises(ValidationFailed) as info:
        export(state, ExportOptions(max_glb_mb=0.01, write_poster=False))
    assert "MB" in info.value.message and info.value.fix and info.value.stage == "export"
    # the message says how far over, at what texture size, and what geometry alone takes
    msg = info.value.message
    assert "256 px textures" in msg and "over the 0.01 MB budget" in msg
    assert "MB of geometry" in msg and "0.0 MB" not in msg


def test_texture_shrinks_to_meet_the_budget(tmp_path, uv_mesh):
    noise = np.random.default_rng(0).integers(0, 255, (1024, 1024, 3), dtype=np.uint8)
    state = make_state(tmp_path, uv_mesh, noise)
    result = export(state, ExportOptions(max_glb_mb=1.5, write_poster=False))
    assert result.metrics["export_texture_px"] == 512
    assert result.metrics["export_glb_bytes"] <= 1.5e6


def test_names_and_sizes():
    assert gltf_name("SKU-001") == "sku-001"
    assert gltf_name("42 Chair") == "chair"
    assert gltf_name("!!!") == "asset"
    assert pow2_at_most(1000, 1024) == 1024
    assert pow2_at_most(300, 1024) == 256
    assert pow2_at_most(4000, 1000) == 512


def test_options_are_validated():
    with pytest.raises(OptionsError):
        ExportOptions(max_glb_mb=0)


def test_contract_input_unchanged_and_record(tmp_path, uv_mesh):
    state = make_state(tmp_path, uv_mesh, checker(64, 64))
    before = dict(state.artifacts), read_bytes(state, "mesh")
    result = export(state, ExportOptions(write_poster=False))
    assert (dict(state.artifacts), read_bytes(state, "mesh")) == before
    assert result.record is not None and result.record.stage == "export"
    assert set(result.artifacts) == {"glb"}


# ---------------------------------------------------------------- PBR maps, materials, LODs, USDZ

def full_state(tmp_path, uv_mesh: MeshData, collision_json: bool = False) -> AssetState:
    """An asset as the game/ar profiles hand it over: two parts with different materials,
    base colour + normal + ORM maps and two collision hulls (export makes the LODs)."""
    from assetfactory.core.artifacts import save_json

    labels = (uv_mesh.vertices[uv_mesh.faces].mean(1)[:, 1] > 0.05).astype(np.int32)
    mesh = uv_mesh.replace(face_labels=labels)
    state = make_state(tmp_path, mesh, checker(256, 256))
    box = trimesh.creation.box((0.1, 0.05, 0.1))
    hulls = MeshData(np.r_[box.vertices + [0, 0.025, 0], box.vertices + [0, 0.075, 0]],
                     np.r_[box.faces, box.faces + 8], np.repeat([0, 1], 12).astype(np.int32))
    table = {"parts": {
        "0": {"material": "metal", "metallic": 1.0, "roughness": 0.35, "name": "x-metal"},
        "1": {"material": "plastic", "metallic": 0.0, "roughness": 0.45, "name": "x-plastic"}}}
    arts = {"texture/orm": save_image(state, np.full((256, 256, 3), 200, np.uint8)),
            "texture/normal": save_image(state, np.tile(np.array([128, 128, 255], np.uint8),
                                                        (256, 256, 1))),
            "materials": save_json(state, table)}
    if collision_json:
        arts["collision"] = save_json(state, {"hulls": [
            {"vertices": box.vertices.tolist(), "faces": box.faces.tolist()}]})
    else:
        arts["collision"] = save_mesh(state, hulls)
    return state.apply(StageResult(artifacts=arts))


def test_pbr_maps_materials_lods_and_hulls_in_a_valid_glb(tmp_path, uv_mesh):
    state = full_state(tmp_path, uv_mesh)
    result = export(state, ExportOptions(write_poster=False, lods=(80,)))
    m = result.metrics
    assert m["gltf_errors"] == 0 and m["export_maps"] == "base_color,normal,orm"
    assert (m["export_materials"], m["export_lods"], m["export_collision_hulls"]) == (2, 1, 2)
    doc, blob = glb_parts(read_bytes(state.apply(result), "glb"))
    names = [x["name"] for k in ("nodes", "meshes", "materials", "textures") for x in doc[k]]
    assert all(NAME_RE.fullmatch(n) for n in names), names
    mats = {x["name"]: x for x in doc["materials"]}
    assert {"mug-42-blue-metal", "mug-42-blue-plastic"} <= set(mats)
    metal = mats["mug-42-blue-metal"]
    orm = metal["pbrMetallicRoughness"]["metallicRoughnessTexture"]["index"]
    assert metal["occlusionTexture"]["index"] == orm            # one ORM image for both
    assert metal["pbrMetallicRoughness"]["metallicFactor"] == 1.0
    assert "normalTexture" in metal
    # every embedded map is a power of two
    for img in doc["images"]:
        view = doc["bufferViews"][img["bufferView"]]
        data = blob[view["byteOffset"]:view["byteOffset"] + view["byteLength"]]
        with Image.open(io.BytesIO(data)) as im:
            assert all(s & (s - 1) == 0 for s in im.size)
    # one mesh, two primitives (one per material) sharing the vertex accessors
    prims = doc["meshes"][0]["primitives"]
    assert len(prims) == 2 and prims[0]["attributes"] == prims[1]["attributes"]
    # LOD sibling through MSFT_lod, collision hulls without material
    root = doc["nodes"][0]
    (lod_id,) = root["extensions"]["MSFT_lod"]["ids"]
    assert doc["nodes"][lod_id]["name"] == "mug-42-blue_lod1" and "MSFT_lod" in doc["extensionsUsed"]
    hulls = [n for n in doc["nodes"] if n["name"].startswith("mug-42-blue_collision_")]
    assert len(hulls) == 2 and all(n["extras"]["collision"] for n in hulls)
    assert all("material" not in p for n in hulls for p in doc["meshes"][n["mesh"]]["primitives"])


def test_normal_mapped_glb_carries_tangents_and_textured_lods(tmp_path, uv_mesh):
    from assetfactory.core.validate import validate_gltf

    state = full_state(tmp_path, uv_mesh)
    result = export(state, ExportOptions(write_poster=False, lods=(80,)))
    glb = read_bytes(state.apply(result), "glb")
    doc, blob = glb_parts(glb)
    main = doc["meshes"][doc["nodes"][0]["mesh"]]
    attrs = main["primitives"][0]["attributes"]
    assert {"POSITION", "NORMAL", "TANGENT", "TEXCOORD_0"} <= set(attrs)
    normal = accessor_array(doc, blob, attrs["NORMAL"])
    tangent = accessor_array(doc, blob, attrs["TANGENT"])
    assert tangent.shape == (len(normal), 4) and set(np.unique(tangent[:, 3])) <= {-1.0, 1.0}
    assert np.allclose(np.linalg.norm(tangent[:, :3], axis=1), 1, atol=1e-4)
    assert np.abs(np.einsum("ij,ij->i", tangent[:, :3], normal)).max() < 1e-4
    # the LOD is textured: it indexes the main vertex accessors (UVs included) and uses the
    # main materials, with fewer triangles
    (lod_id,) = doc["nodes"][0]["extensions"]["MSFT_lod"]["ids"]
    lod_prims = doc["meshes"][doc["nodes"][lod_id]["mesh"]]["primitives"]
    assert all(p["attributes"] == attrs for p in lod_prims)
    assert {p["material"] for p in lod_prims} <= {p["material"] for p in main["primitives"]}
    lod_tris = sum(doc["accessors"][p["indices"]]["count"] for p in lod_prims) // 3
    main_tris = sum(doc["accessors"][p["indices"]]["count"] for p in main["primitives"]) // 3
    assert lod_tris <= 80 < main_tris and result.metrics["export_lod_tris"] == str(lod_tris)
    # the validator no longer has to make up a tangent space
    report = validate_gltf(glb)
    assert report.errors == 0
    codes = {m["code"] for m in report.messages}
    assert "MESH_PRIMITIVE_GENERATED_TANGENT_SPACE" not in codes and report.warnings == 0, codes


def accessor_array(doc: dict, blob: bytes, index: int) -> np.ndarray:
    acc = doc["accessors"][index]
    view = doc["bufferViews"][acc["bufferView"]]
    width = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}[acc["type"]]
    assert acc["componentType"] == 5126
    start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
    return np.frombuffer(blob, np.float32, acc["count"] * width, start).reshape(-1, width)


def test_collision_hulls_from_json(tmp_path, uv_mesh):
    state = full_state(tmp_path, uv_mesh, collision_json=True)
    result = export(state, ExportOptions(write_poster=False, lods=()))
    assert result.metrics["export_collision_hulls"] == 1 and result.metrics["export_lods"] == 0
    assert result.metrics["gltf_errors"] == 0


def test_jpeg_base_colour_keeps_full_size_under_budget(tmp_path, uv_mesh):
    photo_like = np.asarray(Image.fromarray(checker(1024, 1024)).resize((1024, 1024)))
    photo_like = (photo_like.astype(float) * np.linspace(0.5, 1, 1024)[None, :, None]
                  + np.random.default_rng(1).normal(0, 6, (1024, 1024, 3)))
    img = np.clip(photo_like, 0, 255).astype(np.uint8)
    state = make_state(tmp_path, uv_mesh, img)
    png_only = export(state, ExportOptions(max_glb_mb=1.0, allow_jpeg=False, write_poster=False))
    with_jpeg = export(state, ExportOptions(max_glb_mb=1.0, write_poster=False))
    assert png_only.metrics["export_texture_px"] < 1024
    assert with_jpeg.metrics["export_texture_px"] == 1024
    assert with_jpeg.metrics["export_base_color_format"] == "jpeg"
    assert with_jpeg.metrics["gltf_errors"] == 0 and with_jpeg.metrics["export_glb_bytes"] <= 1e6
    doc, _ = glb_parts(read_bytes(state.apply(with_jpeg), "glb"))
    assert doc["images"][0]["mimeType"] == "image/jpeg"


def test_usdz_for_ar_is_written_and_valid(tmp_path, uv_mesh):
    pytest.importorskip("pxr")
    import zipfile

    from pxr import Usd, UsdGeom, UsdShade

    state = full_state(tmp_path, uv_mesh)
    result = export(state, ExportOptions(write_usdz=True, write_poster=False))
    m = result.metrics
    assert m["usd_errors"] == 0 and m["export_usdz_bytes"] > 1000
    ref = result.artifacts["usdz"]
    assert ref.uri.endswith(f"{asset_dir(SKU)}/Mug_42_Blue.usdz")
    path = tmp_path / "check.usdz"
    path.write_bytes(read_bytes(state.apply(result), "usdz"))
    names = zipfile.ZipFile(path).namelist()
    assert names[0].endswith(".usdc") and sum(n.endswith(".png") for n in names) == 3
    stage = Usd.Stage.Open(str(path))
    assert UsdGeom.GetStageUpAxis(stage) == "Y" and UsdGeom.GetStageMetersPerUnit(stage) == 1.0
    mesh = UsdGeom.Mesh(stage.GetDefaultPrim().GetChild("geom"))
    st = np.asarray(UsdGeom.PrimvarsAPI(mesh).GetPrimvar("st").Get())
    np.testing.assert_allclose(st, uv_mesh.uv, atol=1e-6)     # USD's t is up, like ours
    subsets = UsdGeom.Subset.GetGeomSubsets(mesh)
    assert len(subsets) == 2
    shaders = [UsdShade.Shader(p).GetIdAttr().Get() for p in stage.Traverse()
               if p.IsA(UsdShade.Shader)]
    assert shaders.count("UsdPreviewSurface") == 2


def test_usdz_validation_failure_fails_the_stage(tmp_path, uv_mesh, monkeypatch):
    pytest.importorskip("pxr")
    from assetfactory.core import validate

    bad = validate.UsdReport(1, 0, ["ERROR usdGeomValidators:StageMetadataChecker: no upAxis"])
    monkeypatch.setattr(validate, "validate_usdz", lambda path: bad)
    with pytest.raises(ValidationFailed) as info:
        export(make_state(tmp_path, uv_mesh), ExportOptions(write_usdz=True, write_poster=False))
    assert "StageMetadataChecker" in info.value.message and info.value.stage == "export"


# ---------------------------------------------------------------------------- meshopt


def meshopt_decode(view: dict, blob: bytes) -> bytes:
    """The uncompressed bytes of an ``EXT_meshopt_compression`` bufferView, decoded by the
    meshoptimizer package's own decoders."""
    import meshoptimizer as mo

    ext = view["extensions"]["EXT_meshopt_compression"]
    assert ext["buffer"] == 0 and ext.get("filter", "NONE") == "NONE"
    data = blob[ext["byteOffset"]:ext["byteOffset"] + ext["byteLength"]]
    stride, count = ext["byteStride"], ext["count"]
    if ext["mode"] == "TRIANGLES":
        assert data[0] == 0xE1 and count % 3 == 0
        out = mo.decode_index_buffer(count, stride, data)   # writes `stride`-byte indices
        return out.view(np.uint8)[:count * stride].tobytes()
    assert ext["mode"] == "ATTRIBUTES" and data[0] == 0xA0   # codec version 0, as EXT needs
    return mo.decode_vertex_buffer(count, stride, data, dtype=np.dtype((np.void, stride))
                                   ).tobytes()


def assert_same_triangles(decoded: np.ndarray, original: np.ndarray) -> None:
    """meshopt's triangle codec may start a triangle at another corner (b, c, a): the same
    triangle with the same winding. Everything else must match exactly."""
    d, o = decoded.reshape(-1, 3), original.reshape(-1, 3)
    assert d.shape == o.shape
    same = np.zeros(len(o), bool)
    for shift in range(3):
        same |= (np.roll(o, -shift, axis=1) == d).all(1)
    assert same.all()


def plain_index_size(doc: dict, view: dict) -> int:
    acc = next(a for a in doc["accessors"] if doc["bufferViews"][a["bufferView"]] is view)
    return {5123: 2, 5125: 4}[acc["componentType"]]


def test_meshopt_glb_is_valid_and_decodes_to_the_plain_buffers(tmp_path, uv_mesh):
    state = full_state(tmp_path, uv_mesh)
    plain_res = export(state, ExportOptions(write_poster=False))
    plain_doc, plain_bin = glb_parts(read_bytes(state.apply(plain_res), "glb"))  # same key:
    packed_res = export(state, ExportOptions(write_poster=False, meshopt=True))  # read first
    packed_doc, packed_bin = glb_parts(read_bytes(state.apply(packed_res), "glb"))
    m, p = packed_res.metrics, plain_res.metrics
    assert m["gltf_errors"] == 0 and m["export_meshopt"] is True and p["export_meshopt"] is False
    assert m["export_geometry_bytes"] < p["export_geometry_bytes"]
    assert m["export_glb_bytes"] < p["export_glb_bytes"]
    # used but not required: the fallback buffer declares the plain size and holds no data
    assert "EXT_meshopt_compression" in packed_doc["extensionsUsed"]
    assert "EXT_meshopt_compression" not in packed_doc.get("extensionsRequired", [])
    assert "EXT_meshopt_compression" not in plain_doc.get("extensionsUsed", [])
    fallback = packed_doc["buffers"][1]
    assert "uri" not in fallback
    assert fallback["extensions"]["EXT_meshopt_compression"]["fallback"] is True
    assert packed_doc["buffers"][0]["byteLength"] == len(packed_bin)
    # same document apart from the views; every geometry view decodes to the plain bytes
    assert packed_doc["accessors"] == plain_doc["accessors"]
    compressed = 0
    for pv, qv in zip(plain_doc["bufferViews"], packed_doc["bufferViews"], strict=True):
        start = pv["byteOffset"]
        original = plain_bin[start:start + pv["byteLength"]]
        if "target" not in pv:                       # images stay as they are
            assert "extensions" not in qv
            assert packed_bin[qv["byteOffset"]:qv["byteOffset"] + qv["byteLength"]] == original
            continue
        assert qv["buffer"] == 1 and qv["byteLength"] == pv["byteLength"]
        assert qv["byteOffset"] + qv["byteLength"] <= fallback["byteLength"]
        decoded = meshopt_decode(qv, packed_bin)
        if qv["target"] == 34963:
            dtype = {2: np.uint16, 4: np.uint32}[plain_index_size(plain_doc, pv)]
            assert_same_triangles(np.frombuffer(decoded, dtype), np.frombuffer(original, dtype))
        else:
            assert decoded == original
        compressed += 1
    # main mesh (POSITION, NORMAL, TEXCOORD_0, 2 index sets), LOD and hulls all compressed
    assert compressed == sum("target" in v for v in plain_doc["bufferViews"]) >= 5
    # index views carry no stride, vertex views the element size
    for acc in packed_doc["accessors"]:
        if "bufferView" not in acc:
            continue
        view = packed_doc["bufferViews"][acc["bufferView"]]
        if view.get("target") == 34963:
            assert "byteStride" not in view
        elif view.get("target") == 34962:
            assert view["byteStride"] == view["extensions"]["EXT_meshopt_compression"][
                "byteStride"]


def test_meshopt_encode_round_trips_uint16_and_uint32_indices_and_colours():
    import meshoptimizer as mo

    from assetfactory.algorithms.gltf import meshopt_encode

    faces = trimesh.creation.icosphere(2).faces.reshape(-1)
    for dtype in (np.uint16, np.uint32):
        data, mode, stride = meshopt_encode(faces.astype(dtype), 34963)
        assert (mode, stride) == ("TRIANGLES", np.dtype(dtype).itemsize)
        out = mo.decode_index_buffer(len(faces), stride, data).view(dtype)[:len(faces)]
        assert_same_triangles(out, faces)
    rgba = np.random.default_rng(0).integers(0, 256, (50, 4), dtype=np.uint8)
    data, mode, stride = meshopt_encode(rgba, 34962)
    assert (mode, stride) == ("ATTRIBUTES", 4)
    out = mo.decode_vertex_buffer(50, 4, data, dtype=np.dtype((np.void, 4)))
    assert out.tobytes() == rgba.tobytes()


def test_meshopt_is_off_by_default_and_in_every_profile():
    from assetfactory.flows.recipe import PROFILES, build_recipe

    assert ExportOptions().meshopt is False
    for profile in PROFILES:
        (call,) = [c for c in build_recipe(profile).calls if c.name == "export"]
        assert call.options.meshopt is False, profile
    on = build_recipe(next(iter(PROFILES)), overrides={"export": {"meshopt": True}})
    assert next(c for c in on.calls if c.name == "export").options.meshopt is True


def test_transferred_materials_keep_alpha_emission_and_unlit(tmp_path, uv_mesh):
    """A vendor's materials (``"source": "mesh"``): one glTF material per source material, with
    its alpha mode, cut-off, double-sidedness and unlit flag; an RGBA base colour stays PNG;
    the emissive map is embedded; both validators pass."""
    from assetfactory.core.artifacts import save_bytes, save_json

    base = np.dstack([checker(256, 256), np.where(checker(256, 256)[..., :1] > 0, 255, 0)
                      ]).astype(np.uint8)
    state = make_state(tmp_path, uv_mesh, base)
    faces = (np.arange(uv_mesh.n_faces) % 2).astype(np.int32)
    buf = io.BytesIO()
    np.save(buf, faces)
    table = {"source": "mesh", "materials": [
        {"source": 0, "name": "mug-42-blue-glaze", "source_name": "glaze", "alpha_mode": "MASK",
         "alpha_cutoff": 0.4, "double_sided": True, "unlit": False, "metallic": 1.0,
         "roughness": 1.0},
        {"source": 1, "name": "mug-42-blue-label", "source_name": "label", "alpha_mode": "BLEND",
         "alpha_cutoff": 0.5, "double_sided": False, "unlit": True, "metallic": 1.0,
         "roughness": 1.0}]}
    glow = np.zeros((64, 64, 3), np.uint8)
    glow[..., 1] = 200
    state = state.apply(StageResult(artifacts={
        "materials": save_json(state, table), "material_faces": save_bytes(state, buf.getvalue(),
                                                                           ".npy"),
        "texture/emissive": save_image(state, glow)}))
    res = export(state, ExportOptions(texture_size=256, write_usdz=True, write_poster=False))
    assert res.metrics["gltf_errors"] == 0 and res.metrics["usd_errors"] == 0
    doc, _ = glb_parts(read_bytes(state.apply(res), "glb"))
    mats = {m["name"]: m for m in doc["materials"]}
    glaze, label = mats["mug-42-blue-glaze"], mats["mug-42-blue-label"]
    assert (glaze["alphaMode"], glaze["alphaCutoff"], glaze["doubleSided"]) == ("MASK", 0.4, True)
    assert label["alphaMode"] == "BLEND" and "KHR_materials_unlit" in label["extensions"]
    assert "KHR_materials_unlit" in doc["extensionsUsed"]
    assert glaze["emissiveFactor"] == [1.0, 1.0, 1.0] and "emissiveTexture" in glaze
    base_img = doc["images"][doc["textures"][glaze["pbrMetallicRoughness"]["baseColorTexture"][
        "index"]]["source"]]
    assert base_img["mimeType"] == "image/png"
    assert res.metrics["export_materials"] == 2
    assert sorted(res.metrics["export_maps"].split(",")) == ["base_color", "emissive"]


def test_budget_shrinks_the_data_maps_before_the_base_colour(tmp_path, uv_mesh):
    rng = np.random.default_rng(0)
    state = make_state(tmp_path, uv_mesh, rng.integers(0, 255, (512, 512, 3), dtype=np.uint8))
    state = state.apply(StageResult(artifacts={"texture/normal": save_image(
        state, rng.integers(0, 255, (512, 512, 3), dtype=np.uint8))}))
    res = export(state, ExportOptions(texture_size=512, max_glb_mb=1.2, allow_jpeg=False,
                                      write_poster=False))
    assert res.metrics["export_glb_bytes"] <= 1.2e6 and res.metrics["gltf_errors"] == 0
    assert (res.metrics["export_texture_px"], res.metrics["export_data_texture_px"]) == (512, 256)


@pytest.mark.parametrize("bad", [(30000, 40000), (500, 800), (3,), (1.5,)])
def test_bad_lods_are_rejected_naming_export(bad):
    with pytest.raises(OptionsError, match="export options: lods"):
        ExportOptions(lods=bad)


def embedded_images(glb: bytes) -> list[bytes]:
    doc, blob = glb_parts(glb)
    out = []
    for image in doc["images"]:
        view = doc["bufferViews"][image["bufferView"]]
        start = view.get("byteOffset", 0)
        out.append(blob[start:start + view["byteLength"]])
    return out


def test_a_map_that_fits_goes_in_as_stored_and_a_resized_one_is_encoded(tmp_path, uv_mesh):
    """The texture stage's PNG is embedded byte for byte when its pixels go in unchanged (no
    second encode); a map the budget resizes, or one whose channels change, is encoded anew."""
    from assetfactory.core.artifacts import encode_png, save_bytes

    img = checker(256, 256)
    state = make_state(tmp_path, uv_mesh)
    stored = encode_png(img, level=9)   # not what export would write: the bytes tell
    assert stored != encode_png(img)
    state = state.apply(StageResult(artifacts={
        "texture/base_color": save_bytes(state, stored, ".png")}))
    opts = {"poster_size": 64, "write_usdz": False}
    same = export(state, ExportOptions(texture_size=512, **opts))
    [png] = embedded_images(read_bytes(state.apply(same), "glb"))
    assert png == stored
    smaller = export(state, ExportOptions(texture_size=128, **opts))
    [png] = embedded_images(read_bytes(state.apply(smaller), "glb"))
    with Image.open(io.BytesIO(png)) as im:
        assert im.size == (128, 128)
    rgba = np.dstack([img, np.full(img.shape[:2], 255, np.uint8)])
    state = state.apply(StageResult(artifacts={
        "texture/base_color": save_bytes(state, encode_png(rgba), ".png")}))
    dropped = export(state, ExportOptions(texture_size=512, **opts))
    [png] = embedded_images(read_bytes(state.apply(dropped), "glb"))
    with Image.open(io.BytesIO(png)) as im:
        assert im.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(im), img)

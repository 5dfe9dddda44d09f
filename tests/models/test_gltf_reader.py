"""The glTF reader: compressed and quantised geometry, every material field, every image kind.

Files are made here with the real encoders (DracoPy, meshoptimizer, Pillow, zstandard) and the
factory's own exporter; the shared data's Draco and KTX2 files are read where present.
"""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import numpy as np
import pytest

from assetfactory.core.errors import InputError
from assetfactory.models.mesh import import_mesh, import_with_appearance

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"

# a unit quad in the XY plane, two triangles, with UVs and normals
QUAD_V = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], np.float32)
QUAD_F = np.array([[0, 1, 2], [0, 2, 3]], np.uint32)
QUAD_UV = np.array([[0, 1], [1, 1], [1, 0], [0, 0]], np.float32)
QUAD_N = np.tile(np.array([0, 0, 1], np.float32), (4, 1))


class Doc:
    """A tiny glTF builder: buffer views and accessors over one BIN chunk."""

    def __init__(self) -> None:
        self.doc: dict = {"asset": {"version": "2.0"}, "scene": 0,
                          "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0}],
                          "meshes": [{"primitives": []}], "bufferViews": [], "accessors": []}
        self.bin = bytearray()

    def view(self, data: bytes, **extra) -> int:
        while len(self.bin) % 4:
            self.bin.append(0)
        self.doc["bufferViews"].append({"buffer": 0, "byteOffset": len(self.bin),
                                        "byteLength": len(data), **extra})
        self.bin += data
        return len(self.doc["bufferViews"]) - 1

    def accessor(self, a: np.ndarray, ctype: int, kind: str, view: int | None = None,
                 **extra) -> int:
        a = np.ascontiguousarray(a)
        if view is None:
            view = self.view(a.tobytes())
        item = {"bufferView": view, "componentType": ctype, "count": len(a), "type": kind,
                **extra}
        self.doc["accessors"].append(item)
        return len(self.doc["accessors"]) - 1

    def use(self, *names: str, required: bool = False) -> None:
        self.doc.setdefault("extensionsUsed", []).extend(names)
        if required:
            self.doc.setdefault("extensionsRequired", []).extend(names)

    def glb(self) -> bytes:
        while len(self.bin) % 4:
            self.bin.append(0)
        self.doc.setdefault("buffers", [{}])[0]["byteLength"] = len(self.bin)
        js = json.dumps(self.doc).encode()
        js += b" " * (-len(js) % 4)
        body = (struct.pack("<II", len(js), 0x4E4F534A) + js
                + struct.pack("<II", len(self.bin), 0x004E4942) + bytes(self.bin))
        return b"glTF" + struct.pack("<II", 2, 12 + len(body)) + body


def _plain_quad(d: Doc) -> dict:
    return {"attributes": {
        "POSITION": d.accessor(QUAD_V, 5126, "VEC3", min=[0, 0, 0], max=[1, 1, 0]),
        "NORMAL": d.accessor(QUAD_N, 5126, "VEC3"),
        "TEXCOORD_0": d.accessor(QUAD_UV, 5126, "VEC2")},
        "indices": d.accessor(QUAD_F.reshape(-1), 5125, "SCALAR")}


def _png(rgba: np.ndarray, fmt: str = "PNG") -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgba).save(buf, format=fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    return buf.getvalue()


def _checker(n: int = 8) -> np.ndarray:
    img = np.zeros((n, n, 4), np.uint8)
    img[..., 3] = 255
    img[(np.arange(n)[:, None] + np.arange(n)[None]) % 2 == 0, :3] = (200, 30, 40)
    img[(np.arange(n)[:, None] + np.arange(n)[None]) % 2 == 1, :3] = (20, 90, 220)
    return img


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


def _surface(path: Path):
    _, _, app = import_with_appearance(str(path), normalise=False)
    assert app is not None
    return app


# ---------------------------------------------------------------- compressed geometry


def test_draco_primitive_decodes_like_the_plain_one(tmp_path):
    import DracoPy

    blob = DracoPy.encode(QUAD_V.astype(np.float64), QUAD_F, quantization_bits=14,
                          tex_coord=QUAD_UV.astype(np.float64),
                          normals=QUAD_N.astype(np.float64), preserve_order=True)
    ids = {a["attribute_type"]: a["unique_id"] for a in DracoPy.decode(blob).attributes}
    d = Doc()
    view = d.view(blob)
    prim = {"attributes": {"POSITION": d.accessor(np.zeros((4, 3), np.float32), 5126, "VEC3",
                                                  min=[0, 0, 0], max=[1, 1, 0]),
                           "NORMAL": d.accessor(np.zeros((4, 3), np.float32), 5126, "VEC3"),
                           "TEXCOORD_0": d.accessor(np.zeros((4, 2), np.float32), 5126,
                                                    "VEC2")},
            "indices": d.accessor(np.zeros(6, np.uint32), 5125, "SCALAR"),
            "material": 0,
            "extensions": {"KHR_draco_mesh_compression": {"bufferView": view, "attributes": {
                "POSITION": ids[0], "NORMAL": ids[1], "TEXCOORD_0": ids[3]}}}}
    # the accessors' own data is unused when Draco is present: drop their views
    for k in list(prim["attributes"].values()) + [prim["indices"]]:
        d.doc["accessors"][k].pop("bufferView")
    d.doc["meshes"][0]["primitives"].append(prim)
    d.doc["materials"] = [{"pbrMetallicRoughness": {"baseColorFactor": [0.2, 0.4, 0.6, 1]}}]
    d.use("KHR_draco_mesh_compression", required=True)
    app = _surface(_write(tmp_path, "draco.glb", d.glb()))
    s = app.surface
    assert s.n_faces == 2
    got = s.vertices[s.faces]
    want = QUAD_V[QUAD_F].astype(np.float64)
    assert np.allclose(got, want, atol=1e-3)
    assert np.allclose(s.texcoords[0][s.faces], QUAD_UV[QUAD_F], atol=1e-3)
    assert app.materials[0].base_color_factor == pytest.approx((0.2, 0.4, 0.6, 1.0))


def test_meshopt_from_the_factorys_own_exporter_round_trips(tmp_path):
    """The exporter's EXT_meshopt_compression output (attribute + triangle codecs) reads back
    as the same geometry."""
    from assetfactory.algorithms.gltf import build_glb
    from assetfactory.core.mesh import MeshData

    rng = np.random.default_rng(0)
    v = rng.random((300, 3))
    f = np.stack([np.arange(0, 297), np.arange(1, 298), np.arange(2, 299)], 1)
    mesh = MeshData(v, f, uv=rng.random((300, 2)).astype(np.float32),
                    vertex_normals=np.tile([0, 0, 1.0], (300, 1)).astype(np.float32))
    tex = np.full((4, 4, 3), 128, np.uint8)
    plain = import_mesh(str(_write(tmp_path, "plain.glb", build_glb(mesh, "m", tex))))[0]
    glb = build_glb(mesh, "m", tex, meshopt=True)
    assert b"EXT_meshopt_compression" in glb
    packed = import_mesh(str(_write(tmp_path, "packed.glb", glb)))[0]
    assert np.array_equal(plain.vertices, packed.vertices)

    def canonical(f: np.ndarray) -> np.ndarray:  # the triangle codec may rotate corners
        k = f.argmin(axis=1)
        return np.stack([f[np.arange(len(f)), (k + i) % 3] for i in range(3)], axis=1)

    assert np.array_equal(canonical(plain.faces), canonical(packed.faces))


def test_meshopt_exponential_filter_and_index_sequence(tmp_path):
    """A hand-packed file: positions through the EXPONENTIAL filter (mantissa, exponent),
    indices through the INDICES (sequence) codec."""
    import meshoptimizer as mo

    exp = -4
    mant = np.round(QUAD_V * 16).astype(np.int32) * 3          # value = 3 * v, exactly
    packed = ((np.int32(exp) << 24) | (mant & 0xFFFFFF)).astype(np.int32)
    mo.encode_vertex_version(0)
    vbuf = mo.encode_vertex_buffer(packed, 4, 12)
    ibuf = mo.encode_index_sequence(QUAD_F.reshape(-1).astype(np.uint32), 6, 4)
    d = Doc()
    d.doc["buffers"] = [{}, {"byteLength": 48 + 24,
                             "extensions": {"EXT_meshopt_compression": {"fallback": True}}}]
    vv = d.view(bytes(vbuf))
    iv = d.view(bytes(ibuf))
    d.doc["bufferViews"].append({"buffer": 1, "byteOffset": 0, "byteLength": 48, "byteStride": 12,
                                 "extensions": {"EXT_meshopt_compression": {
                                     "buffer": 0, "byteOffset": d.doc["bufferViews"][vv][
                                         "byteOffset"], "byteLength": len(vbuf),
                                     "byteStride": 12, "count": 4, "mode": "ATTRIBUTES",
                                     "filter": "EXPONENTIAL"}}})
    d.doc["bufferViews"].append({"buffer": 1, "byteOffset": 48, "byteLength": 24,
                                 "extensions": {"EXT_meshopt_compression": {
                                     "buffer": 0, "byteOffset": d.doc["bufferViews"][iv][
                                         "byteOffset"], "byteLength": len(ibuf),
                                     "byteStride": 4, "count": 6, "mode": "INDICES"}}})
    pos = d.accessor(np.zeros((4, 3), np.float32), 5126, "VEC3", view=2, min=[0, 0, 0],
                     max=[3, 3, 0])
    idx = d.accessor(np.zeros(6, np.uint32), 5125, "SCALAR", view=3)
    d.doc["meshes"][0]["primitives"].append({"attributes": {"POSITION": pos}, "indices": idx})
    d.use("EXT_meshopt_compression", required=True)
    mesh, info = import_mesh(str(_write(tmp_path, "filtered.glb", d.glb())))
    assert mesh.n_faces == 2
    assert info["source_extent_m"] == pytest.approx(3.0)


def test_quantised_attributes_read_as_the_spec_says(tmp_path):
    """KHR_mesh_quantization: int16 positions (not normalised) scaled by the node, int8
    normalised normals, uint16 normalised texture coordinates."""
    d = Doc()
    q = np.round(QUAD_V * 1000).astype(np.int16)
    n = np.tile(np.array([0, 0, 127], np.int8), (4, 1))
    n = np.concatenate([n, np.zeros((4, 1), np.int8)], axis=1)  # 4-byte aligned VEC3 rows
    uv = np.round(QUAD_UV * 65535).astype(np.uint16)
    prim = {"attributes": {
        "POSITION": d.accessor(np.concatenate([q, np.zeros((4, 1), np.int16)], 1), 5122,
                               "VEC3", view=None, min=[0, 0, 0], max=[1000, 1000, 0]),
        "NORMAL": d.accessor(n, 5120, "VEC3", normalized=True),
        "TEXCOORD_0": d.accessor(uv, 5123, "VEC2", normalized=True)},
        "indices": d.accessor(QUAD_F.reshape(-1).astype(np.uint16), 5123, "SCALAR"),
        "material": 0}
    # strided views: 8 bytes per position row (3 x int16 + pad), 4 per normal row
    d.doc["bufferViews"][d.doc["accessors"][prim["attributes"]["POSITION"]]["bufferView"]][
        "byteStride"] = 8
    d.doc["bufferViews"][d.doc["accessors"][prim["attributes"]["NORMAL"]]["bufferView"]][
        "byteStride"] = 4
    d.doc["meshes"][0]["primitives"].append(prim)
    d.doc["nodes"][0]["scale"] = [0.001, 0.001, 0.001]
    d.doc["materials"] = [{"pbrMetallicRoughness": {"baseColorFactor": [1, 0, 0, 1]}}]
    d.use("KHR_mesh_quantization", required=True)
    app = _surface(_write(tmp_path, "quantised.glb", d.glb()))
    s = app.surface
    assert np.allclose(s.vertices[s.faces], QUAD_V[QUAD_F], atol=1e-6)
    assert np.allclose(s.normals, [0, 0, 1], atol=1e-6)
    assert np.allclose(s.texcoords[0][s.faces], QUAD_UV[QUAD_F], atol=1e-4)


def test_sparse_accessor_overrides_values(tmp_path):
    d = Doc()
    prim = _plain_quad(d)
    iv = d.view(np.array([2], np.uint32).tobytes())
    vv = d.view(np.array([[1, 1, 0.5]], np.float32).tobytes())
    d.doc["accessors"][prim["attributes"]["POSITION"]]["sparse"] = {
        "count": 1, "indices": {"bufferView": iv, "componentType": 5125},
        "values": {"bufferView": vv}}
    d.doc["meshes"][0]["primitives"].append(prim)
    _, info = import_mesh(str(_write(tmp_path, "sparse.glb", d.glb())))
    assert info["source_size_z"] == pytest.approx(0.5)


# ---------------------------------------------------------------- materials and images


def _textured(d: Doc, images: list[dict], material: dict, uv1: bool = False) -> None:
    prim = _plain_quad(d)
    if uv1:
        prim["attributes"]["TEXCOORD_1"] = d.accessor(QUAD_UV[:, ::-1].copy(), 5126, "VEC2")
    prim["attributes"]["COLOR_0"] = d.accessor(np.tile([1.0, 0.5, 0.25, 1.0], (4, 1)).astype(
        np.float32), 5126, "VEC4")
    prim["material"] = 0
    d.doc["meshes"][0]["primitives"].append(prim)
    d.doc["images"] = images
    d.doc["textures"] = [{"source": i, "sampler": 0} for i in range(len(images))]
    d.doc["samplers"] = [{"magFilter": 9728, "wrapS": 33071, "wrapT": 33648}]
    d.doc["materials"] = [material]


def test_every_material_field_is_read(tmp_path):
    d = Doc()
    png = _png(_checker())
    _textured(d, [{"bufferView": d.view(png), "mimeType": "image/png"}], {
        "name": "wicker", "alphaMode": "MASK", "alphaCutoff": 0.3, "doubleSided": True,
        "pbrMetallicRoughness": {
            "baseColorFactor": [0.5, 0.5, 0.5, 0.8], "metallicFactor": 0.25,
            "roughnessFactor": 0.75,
            "baseColorTexture": {"index": 0, "extensions": {"KHR_texture_transform": {
                "offset": [0.5, 0.25], "scale": [2, 2], "rotation": 0.0, "texCoord": 1}}},
            "metallicRoughnessTexture": {"index": 0}},
        "normalTexture": {"index": 0, "scale": 0.5, "texCoord": 1},
        "occlusionTexture": {"index": 0, "strength": 0.7},
        "emissiveTexture": {"index": 0}, "emissiveFactor": [1, 0.5, 0],
        "extensions": {"KHR_materials_emissive_strength": {"emissiveStrength": 2.0},
                       "KHR_materials_unlit": {}}}, uv1=True)
    d.use("KHR_texture_transform", "KHR_materials_emissive_strength", "KHR_materials_unlit")
    app = _surface(_write(tmp_path, "all.glb", d.glb()))
    m = app.materials[0]
    assert (m.name, m.alpha_mode, m.alpha_cutoff, m.double_sided, m.unlit) == (
        "wicker", "MASK", 0.3, True, True)
    assert m.base_color_factor == pytest.approx((0.5, 0.5, 0.5, 0.8))
    assert (m.metallic_factor, m.roughness_factor) == (0.25, 0.75)
    assert m.base_color.texcoord == 1 and m.base_color.transform == pytest.approx(
        (2, 0, 0.5, 0, 2, 0.25))
    assert m.base_color.nearest and m.base_color.wrap_s == 33071 and m.base_color.wrap_t == 33648
    assert m.normal.scale == 0.5 and m.normal.texcoord == 1
    assert m.occlusion.scale == pytest.approx(0.7)
    assert m.emissive_factor == pytest.approx((2.0, 1.0, 0.0))
    assert len(app.surface.texcoords) == 2
    assert np.allclose(app.surface.colors, [1.0, 0.5, 0.25, 1.0])
    assert app.images[0].mime == "image/png" and app.images[0].data == png


def test_external_images_with_spaces_folders_jpeg_and_webp(tmp_path):
    d = Doc()
    jpg = _png(_checker()[..., :3], "JPEG")
    webp = _png(_checker(), "WEBP")
    _write(tmp_path, "tex maps/wood grain.jpg", jpg)
    _write(tmp_path, "tex maps/cat.webp", webp)
    _textured(d, [{"uri": "tex%20maps/wood%20grain.jpg"}, {"uri": "tex maps/cat.webp"}], {
        "pbrMetallicRoughness": {"baseColorTexture": {"index": 1}},
        "normalTexture": {"index": 0}})
    d.doc["textures"][1] = {"extensions": {"EXT_texture_webp": {"source": 1}}}
    d.use("EXT_texture_webp", required=True)
    app = _surface(_write(tmp_path, "model.glb", d.glb()))
    assert app.images[0].mime == "image/jpeg" and app.images[0].data == jpg
    assert app.images[1].mime == "image/webp" and app.materials[0].base_color.image == 1


def test_missing_texture_and_escaping_path_name_the_file(tmp_path):
    d = Doc()
    _textured(d, [{"uri": "textures/nope.png"}],
              {"pbrMetallicRoughness": {"baseColorTexture": {"index": 0}}})
    with pytest.raises(InputError, match="nope.png.*missing") as err:
        import_mesh(str(_write(tmp_path, "a.glb", d.glb())))
    assert err.value.fix
    d.doc["images"][0]["uri"] = "../../etc/passwd"
    with pytest.raises(InputError, match="outside the model's folder"):
        import_mesh(str(_write(tmp_path, "b.glb", d.glb())))


def test_bytes_given_alone_never_read_files_beside_them(tmp_path, monkeypatch):
    """A model given as bytes (a generator service's answer) has no folder: an external image
    is refused by name even when a file of that name sits in the working directory."""
    from assetfactory.models.mesh import import_mesh_bytes

    d = Doc()
    _textured(d, [{"uri": "secret.png"}],
              {"pbrMetallicRoughness": {"baseColorTexture": {"index": 0}}})
    _write(tmp_path, "secret.png", _png(_checker()))
    monkeypatch.chdir(tmp_path)
    assert _surface(_write(tmp_path, "beside.glb", d.glb())).images[0].data  # as a file: read
    with pytest.raises(InputError, match="secret.png.*no folder") as err:
        import_mesh_bytes(d.glb(), "service-answer.glb")
    assert "embed" in err.value.fix


def _ktx2(rgba: np.ndarray, vk_format: int = 37, zstd: bool = True) -> bytes:
    """A minimal KTX2 file: one level of uncompressed RGBA8 texels."""
    import zstandard

    h, w = rgba.shape[:2]
    raw = np.ascontiguousarray(rgba).tobytes()
    data = zstandard.ZstdCompressor().compress(raw) if zstd else raw
    header = (b"\xabKTX 20\xbb\r\n\x1a\n" + struct.pack("<9I", vk_format, 1, w, h, 0, 0, 1, 1,
                                                        2 if zstd else 0)
              + struct.pack("<4I2Q", 0, 0, 0, 0, 0, 0))
    off = len(header) + 24
    return header + struct.pack("<3Q", off, len(data), len(raw)) + data


def test_ktx2_uncompressed_is_decoded_and_gpu_blocks_are_a_clear_error(tmp_path):
    from assetfactory.core.appearance import decode_image

    img = _checker()
    for zstd in (True, False):
        d = Doc()
        _textured(d, [{"bufferView": d.view(_ktx2(img, zstd=zstd)), "mimeType": "image/ktx2"}],
                  {"pbrMetallicRoughness": {"baseColorTexture": {"index": 0}}})
        app = _surface(_write(tmp_path, f"k{zstd}.glb", d.glb()))
        assert np.array_equal(decode_image(app.images[0].data), img)
    d = Doc()
    _textured(d, [{"bufferView": d.view(_ktx2(img, vk_format=145)), "name": "albedo bc7",
                   "mimeType": "image/ktx2"}],
              {"pbrMetallicRoughness": {"baseColorTexture": {"index": 0}}})
    with pytest.raises(InputError, match="albedo bc7.*GPU-compressed") as err:
        import_mesh(str(_write(tmp_path, "bc7.glb", d.glb())))
    assert "PNG" in err.value.fix


@pytest.mark.parametrize("codec", ["uastc", "etc1s"])
def test_basis_universal_ktx2_is_transcoded(tmp_path, codec):
    """KHR_texture_basisu textures made with a Basis Universal encoder (alktx2) come back as
    the image they encode, cut-outs included; a corrupt payload names the texture."""
    import alktx2

    from assetfactory.core.appearance import decode_image

    img = np.zeros((32, 32, 4), np.uint8)
    img[..., 0] = np.arange(32)[None, :] * 8
    img[..., 1] = 200
    img[..., 3] = 255
    img[8:16, 8:16, 3] = 0                                   # a cut-out
    ktx = alktx2.encode_bytes_to_ktx2(_png(img), mime="image/png", codec=codec, quality=90,
                                      effort=2)
    d = Doc()
    _textured(d, [{"bufferView": d.view(ktx), "name": "albedo basis",
                   "mimeType": "image/ktx2"}],
              {"pbrMetallicRoughness": {"baseColorTexture": {"index": 0}}})
    d.doc["textures"][0] = {"extensions": {"KHR_texture_basisu": {"source": 0}}}
    d.use("KHR_texture_basisu", required=True)
    app = _surface(_write(tmp_path, "basis.glb", d.glb()))
    out = decode_image(app.images[0].data).astype(int)
    assert out.shape == img.shape and app.images[0].mime == "image/png"
    assert np.abs(out[..., :3] - img[..., :3]).mean() < 6            # lossy, not garbage
    assert (out[8:16, 8:16, 3] < 128).all() and (out[20:, 20:, 3] > 128).all()
    d = Doc()                                                # the file cut in half
    _textured(d, [{"bufferView": d.view(ktx[:len(ktx) // 2]), "name": "albedo basis",
                   "mimeType": "image/ktx2"}],
              {"pbrMetallicRoughness": {"baseColorTexture": {"index": 0}}})
    with pytest.raises(InputError, match="albedo basis.*Basis Universal") as err:
        import_mesh(str(_write(tmp_path, "broken.glb", d.glb())))
    assert "PNG" in err.value.fix


# ---------------------------------------------------------------- real files


def _shared(sub: str) -> Path:
    path = SHARED / sub
    if not path.exists():
        pytest.skip(f"shared test data not found at {path.resolve()}")
    return path


def test_shared_draco_files_decode():
    mesh, info = import_mesh(str(_shared("broken/auditor_cube-draco.glb")))
    assert mesh.n_faces == 12 and info["source_extent_m"] == pytest.approx(2.0, abs=1e-3)
    _, info, app = import_with_appearance(str(_shared("broken/pc_chess-board.glb")))
    assert info["source_faces"] > 100_000 and app is not None and app.textured


def test_shared_ktx2_textures_decode():
    _, _, app = import_with_appearance(
        str(_shared("broken/bevy_AnisotropyBarnLamp/AnisotropyBarnLamp.gltf")))
    from assetfactory.core.appearance import decode_image

    used = {s.image for m in app.materials for s in m.slots().values()}
    names = {app.images[i].name for i in used}
    assert any(n.endswith(".ktx2") for n in names)
    for i in used:
        assert decode_image(app.images[i].data).shape[0] >= 512


def test_shared_textured_models_keep_their_materials():
    _, _, app = import_with_appearance(str(_shared("models/3dc_TennisRacquet/TennisRacquet.gltf")))
    assert [m.alpha_mode for m in app.materials].count("BLEND") == 1
    assert all(m.normal is not None for m in app.materials)
    _, _, app = import_with_appearance(str(_shared("models/pc_EgyptianCatStatue.glb")))
    assert app.images[app.materials[0].base_color.image].mime == "image/webp"
    _, _, app = import_with_appearance(
        str(_shared("models/kenney_vehicle-truck-red/vehicle-truck-red.glb")))
    assert app.textured and app.materials[0].double_sided

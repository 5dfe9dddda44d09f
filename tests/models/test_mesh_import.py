"""Importing provided meshes: every format, every way a merchant's file can be broken."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import trimesh

from assetfactory.core.camera import orbit_camera
from assetfactory.core.errors import InputError, OptionsError
from assetfactory.models.base import GenerateRequest
from assetfactory.models.mesh import MeshImportConfig, import_mesh

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
EXTENTS = (0.2, 0.4, 0.1)  # a box, in metres: 0.4 high along +Y


def _box() -> trimesh.Trimesh:
    return trimesh.creation.box(extents=EXTENTS)


def _write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    p = tmp_path / name
    p.write_bytes(data.encode() if isinstance(data, str) else data)
    return p


def _check_normalised(mesh) -> None:
    lo, hi = mesh.bounds()
    assert np.allclose((lo + hi) / 2, 0, atol=1e-9)
    assert (hi - lo).max() == pytest.approx(1.0)
    assert np.isfinite(mesh.vertices).all()
    assert mesh.faces.min() >= 0 and mesh.faces.max() < mesh.n_vertices


# ---------------------------------------------------------------- formats

@pytest.mark.parametrize("ext", ["glb", "obj", "stl", "ply"])
def test_each_format_imports_normalised_with_its_real_size(tmp_path, ext):
    path = _write(tmp_path, f"box.{ext}", _box().export(file_type=ext))
    mesh, info = import_mesh(str(path))
    _check_normalised(mesh)
    assert mesh.n_faces == 12 and mesh.n_vertices == 8  # STL's triangle soup is welded
    assert info["source_extent_m"] == pytest.approx(0.4)
    # +Y stays up: no axis is swapped on import.
    size = mesh.bounds()[1] - mesh.bounds()[0]
    assert np.allclose(size, np.array(EXTENTS) / 0.4)
    assert info["source_units"] == ("m" if ext == "glb" else "unknown")
    assert info["method"] == "import" and info["source_format"] == ext


def test_ascii_stl_and_file_without_extension(tmp_path):
    ascii_stl = trimesh.exchange.stl.export_stl_ascii(_box())
    mesh, _ = import_mesh(str(_write(tmp_path, "box.stl", ascii_stl)))
    assert mesh.n_faces == 12
    mesh, info = import_mesh(str(_write(tmp_path, "download", _box().export(file_type="glb"))))
    assert mesh.n_faces == 12 and info["source_format"] == "glb"


def test_gltf_with_external_buffer_reads_its_folder(tmp_path):
    files = trimesh.Scene(_box()).export(file_type="gltf")
    for name, data in files.items():
        _write(tmp_path, name, data)
    assert any(n.endswith(".bin") for n in files)
    mesh, info = import_mesh(str(tmp_path / "model.gltf"))
    assert mesh.n_faces == 12 and info["source_format"] == "gltf"
    for name in files:
        if name.endswith(".bin"):
            (tmp_path / name).unlink()
    with pytest.raises(InputError, match="missing next to it"):
        import_mesh(str(tmp_path / "model.gltf"))


def test_node_transforms_are_baked_and_nodes_become_parts(tmp_path):
    scene = trimesh.Scene()
    scene.add_geometry(_box(), node_name="body")
    moved = np.eye(4)
    moved[:3, 3] = [1.0, 0.0, 0.0]
    scene.add_geometry(_box(), node_name="wheel", transform=moved)
    path = _write(tmp_path, "two.glb", scene.export(file_type="glb"))
    mesh, info = import_mesh(str(path))
    assert info["parts"] == 2 and set(np.unique(mesh.face_labels)) == {0, 1}
    assert info["source_extent_m"] == pytest.approx(1.2)  # 0.2 + 1.0 apart along X


def test_vertex_colours_are_kept(tmp_path):
    box = _box()
    box.visual = trimesh.visual.ColorVisuals(box, vertex_colors=np.tile([200, 10, 20, 255], (8, 1)))
    for ext in ("ply", "glb"):
        path = _write(tmp_path, f"c.{ext}", box.export(file_type=ext))
        mesh, _ = import_mesh(str(path))
        assert mesh.vertex_colors is not None, ext
        assert (mesh.vertex_colors[:, :3] == [200, 10, 20]).all(), ext


def test_backend_passes_cameras_through(tmp_path):
    path = _write(tmp_path, "box.glb", _box().export(file_type="glb"))
    cam = orbit_camera("front", 0, 15, 2.5)
    view = type("V", (), {"label": "front", "camera": cam})()
    out = MeshImportConfig().build().generate(
        GenerateRequest(sku="t", views=[view], mesh_uri=str(path)))
    assert out.cameras == [cam] and out.mesh.n_faces == 12
    with pytest.raises(InputError, match="mesh_uri"):
        MeshImportConfig().build().generate(GenerateRequest(sku="t"))


# ---------------------------------------------------------------- broken files (made here)

def _glb(doc: dict, tail: bytes = b"") -> bytes:
    js = json.dumps(doc).encode()
    js += b" " * (-len(js) % 4)
    body = struct.pack("<II", len(js), 0x4E4F534A) + js + tail
    return b"glTF" + struct.pack("<II", 2, 12 + len(body)) + body


BROKEN = {
    "garbage.glb": (bytes(range(256)) * 4, "not a GLB"),
    "empty.obj": (b"", "empty"),
    "page.obj": ("<!DOCTYPE html><html><body>Sign in</body></html>", "HTML"),
    "lfs.glb": ("version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 10\n",
                "git lfs pull"),
    "chair.fbx": (b"Kaydara FBX Binary  \x00", "unsupported"),
    "photo.jpg": (b"\xff\xd8\xff\xe0", "image, not a mesh"),
    "points.obj": ("v 0 0 0\nv 1 0 0\nv 0 1 0\n", "no triangle faces|point"),
    "nan.obj": ("v nan 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n", "non-finite"),
    "flat.obj": ("v 0 0 0\nv 0 0 0\nv 0 0 0\nf 1 2 3\n", "one point"),
    "line.obj": ("v 0 0 0\nv 1 0 0\nv 2 0 0\nf 1 2 3\n", "degenerate"),
    "draco.glb": (_glb({"asset": {"version": "2.0"}, "meshes": [{"primitives": [
        {"attributes": {"POSITION": 0}}]}], "extensionsUsed": ["KHR_draco_mesh_compression"],
        "extensionsRequired": ["KHR_draco_mesh_compression"]}), "does not exist"),
    "meshopt.glb": (_glb({"asset": {"version": "2.0"}, "meshes": [],
                          "extensionsRequired": ["EXT_meshopt_compression"]}), "no meshes"),
    "v1.glb": (b"glTF" + struct.pack("<II", 1, 12), "version 1"),
    "cut.glb": (_box().export(file_type="glb")[:-40], "truncated"),
    "nomesh.glb": (_glb({"asset": {"version": "2.0"}}), "no meshes"),
    "gltf1.gltf": (json.dumps({"asset": {"version": "1.0"}}), "only 2.0"),
    "bad.gltf": ("{not json", "not valid JSON"),
    "bad.stl": (b"solid x\nfacet normal 0 0 1\nouter loop\nvertex 0 0", "could not be read|no tri"),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_files_raise_a_specific_input_error(tmp_path, name):
    data, expected = BROKEN[name]
    path = _write(tmp_path, name, data)
    with pytest.raises(InputError, match=expected) as err:
        import_mesh(str(path))
    assert err.value.fix, "every input error says what to do"


def test_limits(tmp_path):
    path = _write(tmp_path, "box.glb", _box().export(file_type="glb"))
    with pytest.raises(InputError, match="more than 5 faces"):
        import_mesh(str(path), MeshImportConfig(max_faces=5))
    with pytest.raises(InputError, match="over the"):
        import_mesh(str(path), MeshImportConfig(max_bytes=100))
    with pytest.raises(InputError, match="does not exist"):
        import_mesh(str(tmp_path / "nope.glb"))
    with pytest.raises(InputError, match="folder"):
        import_mesh(str(tmp_path))
    with pytest.raises(OptionsError):
        MeshImportConfig(max_faces=0)


def test_out_of_range_indices(tmp_path):
    doc = {"asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": [0]}],
           "nodes": [{"mesh": 0}], "meshes": [{"primitives": [
               {"attributes": {"POSITION": 1}, "indices": 0}]}],
           "buffers": [{"byteLength": 48}],
           "bufferViews": [{"buffer": 0, "byteOffset": 0, "byteLength": 12},
                           {"buffer": 0, "byteOffset": 12, "byteLength": 36}],
           "accessors": [{"bufferView": 0, "componentType": 5125, "count": 3, "type": "SCALAR"},
                         {"bufferView": 1, "componentType": 5126, "count": 3, "type": "VEC3",
                          "min": [0, 0, 0], "max": [1, 1, 0]}]}
    idx = struct.pack("<3I", 0, 1, 7)
    pos = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32).tobytes()
    blob = idx + pos
    js = json.dumps(doc).encode()
    js += b" " * (-len(js) % 4)
    body = (struct.pack("<II", len(js), 0x4E4F534A) + js
            + struct.pack("<II", len(blob), 0x004E4942) + blob)
    path = _write(tmp_path, "oob.glb", b"glTF" + struct.pack("<II", 2, 12 + len(body)) + body)
    with pytest.raises(InputError, match="out of range"):
        import_mesh(str(path))


# ---------------------------------------------------------------- shared data

def _shared(sub: str) -> Path:
    folder = SHARED / sub
    if not folder.is_dir():
        pytest.skip(f"shared test data not found at {folder.resolve()}")
    return folder


def test_every_broken_file_imports_or_raises_input_error():
    folder = _shared("broken")
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    assert files
    outcomes = {}
    for p in files + sorted(p for p in folder.iterdir() if p.is_dir()):
        try:
            mesh, _ = import_mesh(str(p))
        except InputError as exc:
            assert p.name in exc.message or "mesh_uri" in exc.message, exc.message
            assert exc.fix
            outcomes[p.name] = "error"
            continue
        _check_normalised(mesh)
        assert mesh.n_faces > 0
        outcomes[p.name] = "ok"
    # Compressed geometry is decoded, not refused.
    for name in ("auditor_cube-draco.glb", "pc_chess-board.glb"):
        assert outcomes.get(name) == "ok", name
    # The obviously broken ones must not slip through as meshes.
    for name in ("lfs_pointer_Shoe.glb", "trimesh_empty.stl", "trimesh_obj_points.obj", "index_buffer_oob.gltf",
                 "truncated_basemesh_deck_chair.glb", "val_glb_empty_file.glb"):
        assert outcomes.get(name) == "error", name


def test_lfs_message_says_what_to_do():
    folder = _shared("broken")
    with pytest.raises(InputError, match="Git LFS pointer, not the model: run git lfs pull"):
        import_mesh(str(folder / "lfs_pointer_Shoe.glb"))


def test_real_models_import():
    folder = _shared("models")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".glb", ".gltf", ".obj"))
    assert len(files) >= 10
    for p in files:
        mesh, info = import_mesh(str(p))
        _check_normalised(mesh)
        assert mesh.n_faces > 100, p.name
        assert info["source_extent_m"] > 0
    _, info = import_mesh(str(folder / "3dc_Mixer.glb"))
    assert info["source_extent_m"] == pytest.approx(0.319, abs=0.001)  # glTF is metres

"""cleanup: repairs (floaters, degenerate/duplicate faces, winding) and placement."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from assetfactory.core.artifacts import (
    load_cameras,
    load_json,
    load_mesh,
    read_bytes,
    save_cameras,
    save_mesh,
)
from assetfactory.core.camera import orbit_camera
from assetfactory.core.errors import OptionsError, ProcessingError
from assetfactory.core.mesh import MeshData
from assetfactory.core.types import AssetState, SkuSpec, StageResult
from assetfactory.tasks.cleanup import CleanupOptions, clean_mesh, cleanup, orient_faces


def make_state(tmp_path, mesh: MeshData, metrics=None, **spec) -> AssetState:
    state = AssetState(sku="t", spec=SkuSpec(sku="t", **spec), store_uri=str(tmp_path),
                       metrics=metrics or {})
    return state.apply(StageResult(artifacts={"dense_mesh": save_mesh(state, mesh)}))


def sphere(subdiv: int = 3, radius: float = 1.0, centre=(0, 0, 0), label: int = 0) -> MeshData:
    s = trimesh.creation.icosphere(subdiv, radius)
    return MeshData(s.vertices + np.asarray(centre, float), s.faces,
                    np.full(len(s.faces), label, np.int32))


def concat(*meshes: MeshData) -> MeshData:
    verts, faces, labels, offset = [], [], [], 0
    for m in meshes:
        verts.append(m.vertices)
        faces.append(m.faces + offset)
        labels.append(m.face_labels)
        offset += m.n_vertices
    return MeshData(np.vstack(verts), np.vstack(faces), np.concatenate(labels))


def volume(mesh: MeshData) -> float:
    return float(mesh.to_trimesh().volume)


def test_floaters_removed_and_labels_kept(tmp_path):
    body = sphere(3, 1.0, label=1)
    debris = sphere(1, 0.02, centre=(3, 0, 0), label=2)
    state = make_state(tmp_path, concat(body, debris))
    result = cleanup(state)
    out = load_mesh(state.apply(result), "clean_mesh")
    assert result.metrics["cleanup_floaters_removed"] == 1
    assert result.metrics["cleanup_components"] == 1
    assert out.n_faces == body.n_faces
    assert set(np.unique(out.face_labels)) == {1}


def test_largest_component_always_kept(tmp_path):
    # ten equal spheres: each has a 10% share, under a 50% threshold; the largest must stay
    parts = [sphere(1, 1.0, centre=(3 * i, 0, 0)) for i in range(10)]
    out, counts = clean_mesh(concat(*parts), CleanupOptions(min_component_area_share=0.5))
    assert out.n_faces == parts[0].n_faces
    assert counts["floaters"] == 9


def test_duplicate_and_degenerate_faces_removed(tmp_path):
    box = trimesh.creation.box()
    v = np.vstack([box.vertices, [[0.0, 0.0, 0.0], [0.1, 0.0, 0.0], [0.2, 0.0, 0.0]]])
    extra = np.array([
        box.faces[0],             # exact duplicate
        box.faces[1][::-1],       # duplicate with the opposite winding
        [8, 9, 10],               # collinear: zero area
        [0, 0, 1],                # repeated vertex
    ])
    mesh = MeshData(v, np.vstack([box.faces, extra]))
    result = cleanup(make_state(tmp_path, mesh))
    m = result.metrics
    assert m["cleanup_duplicate_faces_removed"] == 2
    assert m["cleanup_degenerate_removed"] == 2
    assert m["cleanup_tris_out"] == 12
    out = load_mesh(make_state(tmp_path, mesh).apply(result), "clean_mesh")
    tm = out.to_trimesh()
    assert tm.is_watertight and tm.is_winding_consistent and tm.volume > 0


def test_split_vertices_are_welded(tmp_path):
    box = trimesh.creation.box()
    box.unmerge_vertices()  # 36 vertices, one per corner of each face
    out, _ = clean_mesh(MeshData(box.vertices, box.faces), CleanupOptions())
    assert out.n_vertices == 8
    assert out.to_trimesh().is_watertight


def test_inverted_and_inconsistent_winding_fixed():
    s = sphere(3)
    rng = np.random.default_rng(1)
    flip = rng.random(s.n_faces) < 0.3
    faces = np.where(flip[:, None], s.faces[:, ::-1], s.faces)[:, ::-1]  # then invert all
    out, flipped = orient_faces(s.replace(faces=faces))
    np.testing.assert_array_equal(out.faces, s.faces)
    assert flipped == int((~flip).sum())
    assert volume(out) > 0


def test_each_closed_body_faces_out():
    a, b = sphere(2), sphere(2, centre=(3, 0, 0))
    b = b.replace(faces=b.faces[:, ::-1])  # only the second body inside out
    out, flipped = orient_faces(concat(a, b))
    assert flipped == b.n_faces
    tm = out.to_trimesh()
    assert all(body.volume > 0 for body in tm.split(only_watertight=False))


def test_open_patch_keeps_majority_orientation():
    s = sphere(3)
    dome = s.subset_faces(s.vertices[s.faces].mean(axis=1)[:, 2] > 0.2)  # open, outward
    faces = dome.faces.copy()
    faces[::5] = faces[::5, ::-1]  # 20% flipped
    out, flipped = orient_faces(dome.replace(faces=faces))
    np.testing.assert_array_equal(out.faces, dome.faces)
    assert flipped == len(faces[::5])


def test_placement_from_catalog_dims_and_cameras_follow(tmp_path):
    box = trimesh.creation.box(extents=(2.0, 1.0, 3.0))
    mesh = MeshData(box.vertices + [5.0, 7.0, -2.0], box.faces)
    state = make_state(tmp_path, mesh, width_mm=200, height_mm=100, depth_mm=300)
    cam = orbit_camera("front", 30, 10, 10.0, target=(5.0, 7.0, -2.0))
    state = state.apply(StageResult(artifacts={"cameras": save_cameras(state, [cam])}))
    result = cleanup(state)
    after = state.apply(result)
    out = load_mesh(after, "clean_mesh")
    lo, hi = out.bounds()
    np.testing.assert_allclose(hi - lo, [0.2, 0.1, 0.3], atol=1e-9)
    assert lo[1] == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose((lo + hi)[[0, 2]] / 2, [0.0, 0.0], atol=1e-12)
    m = result.metrics
    assert m["cleanup_scale_source"] == "catalog"
    assert m["cleanup_scale"] == pytest.approx(0.1)
    assert m["cleanup_dims_error_max"] == pytest.approx(0.0, abs=1e-9)
    placement = load_json(after, "placement")
    assert placement["scale_source"] == "catalog"
    T = np.asarray(placement["matrix"])
    np.testing.assert_allclose(mesh.vertices @ T[:3, :3].T + T[:3, 3], out.vertices, atol=1e-12)
    # a world point and its placed copy land on the same pixel
    new_cam = load_cameras(after)[0]
    uv_old, _ = cam.project(mesh.vertices)
    uv_new, _ = new_cam.project(out.vertices)
    np.testing.assert_allclose(uv_old, uv_new, atol=1e-6)


def test_catalog_dims_least_squares_and_mismatch(tmp_path):
    box = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    state = make_state(tmp_path, MeshData(box.vertices, box.faces), width_mm=100, height_mm=400)
    m = cleanup(state).metrics
    assert m["cleanup_scale"] == pytest.approx(0.2)  # geometric mean of 0.1 and 0.4
    assert m["cleanup_dims_error_x"] == pytest.approx(1.0)
    assert m["cleanup_dims_error_y"] == pytest.approx(0.5)
    assert m["cleanup_dims_error_z"] is None
    assert m["cleanup_dims_error_max"] == pytest.approx(1.0)


def test_scale_from_source_then_assumed(tmp_path):
    box = trimesh.creation.box(extents=(4.0, 2.0, 1.0))
    mesh = MeshData(box.vertices, box.faces)
    m = cleanup(make_state(tmp_path / "a", mesh, {"generate_source_extent_m": 0.8})).metrics
    assert (m["cleanup_scale_source"], m["cleanup_scale"]) == ("source", pytest.approx(0.2))
    m = cleanup(make_state(tmp_path / "b", mesh), CleanupOptions(default_extent_m=0.5)).metrics
    assert (m["cleanup_scale_source"], m["cleanup_scale"]) == ("assumed", pytest.approx(0.125))
    assert m["cleanup_dims_error_max"] is None


def test_z_up_source_becomes_y_up(tmp_path):
    box = trimesh.creation.box(extents=(1.0, 2.0, 3.0))  # tall along Z
    state = make_state(tmp_path, MeshData(box.vertices, box.faces))
    result = cleanup(state, CleanupOptions(up_axis="z", default_extent_m=3.0))
    out = load_mesh(state.apply(result), "clean_mesh")
    lo, hi = out.bounds()
    np.testing.assert_allclose(hi - lo, [1.0, 3.0, 2.0], atol=1e-9)
    assert volume(out) > 0


def test_nothing_left_raises_processing_error(tmp_path):
    v = np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0], [3, 0, 0]], float)
    mesh = MeshData(v, [[0, 1, 2], [1, 2, 3]])
    with pytest.raises(ProcessingError) as info:
        cleanup(make_state(tmp_path, mesh))
    assert info.value.fix and info.value.stage == "cleanup" and info.value.sku == "t"


def test_options_are_validated():
    with pytest.raises(OptionsError):
        CleanupOptions(up_axis="x")
    with pytest.raises(OptionsError):
        CleanupOptions(min_component_area_share=1.5)


def test_contract_input_unchanged_and_record(tmp_path):
    state = make_state(tmp_path, sphere(2))
    before = dict(state.artifacts), read_bytes(state, "dense_mesh"), dict(state.metrics)
    result = cleanup(state)
    assert (dict(state.artifacts), read_bytes(state, "dense_mesh"), dict(state.metrics)) == before
    assert result.record is not None and result.record.stage == "cleanup"
    assert set(result.artifacts) == {"clean_mesh", "placement"}
    assert all(k.startswith("cleanup_") for k in result.metrics)


MODEL_GLOBS = ("*.glb", "*/*.glb", "*/*.gltf", "*.obj", "*/*.obj")


def test_real_models_do_not_crash(tmp_path, shared_data):
    paths = sorted(p for g in MODEL_GLOBS for p in (shared_data / "models").glob(g))
    if not paths:
        pytest.skip(f"no models under {shared_data / 'models'}")
    for i, path in enumerate(paths):
        tm = trimesh.load(path, force="mesh", skip_materials=True)
        state = make_state(tmp_path / str(i), MeshData(tm.vertices, tm.faces))
        result = cleanup(state)
        out = load_mesh(state.apply(result), "clean_mesh")
        assert 0 < out.n_faces <= tm.faces.shape[0], path.name
        lo, hi = out.bounds()
        assert lo[1] == pytest.approx(0.0, abs=1e-9), path.name
        assert max(hi - lo) == pytest.approx(0.3), path.name  # the assumed extent
        assert len(out.face_labels) == out.n_faces

"""cleanup: repairs (floaters, degenerate/duplicate faces, winding) and placement."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh
from scipy.spatial import cKDTree

from assetfactory.algorithms.holes import boundary_loops, fill_holes
from assetfactory.algorithms.orientation import orient_faces
from assetfactory.algorithms.repair import collapse_needles, flip_caps, sliver_faces
from assetfactory.core.artifacts import (
    load_cameras,
    load_json,
    load_mesh,
    read_bytes,
    save_cameras,
)
from assetfactory.core.camera import orbit_camera
from assetfactory.core.errors import InputError, OptionsError, ProcessingError
from assetfactory.core.mesh import MeshData
from assetfactory.core.types import StageResult
from assetfactory.geometry.closed import part_report
from assetfactory.geometry.topology import edge_table, vertex_fans
from assetfactory.geometry.weld import merge_vertices
from assetfactory.models.mesh import import_mesh
from assetfactory.tasks.cleanup import CleanupOptions, clean_mesh, cleanup, visibility_views
from tests.builders import concat, sphere
from tests.builders import state_with_mesh as _with_mesh


def make_state(tmp_path, mesh, metrics=None, **spec):
    return _with_mesh(tmp_path, mesh, "dense_mesh", metrics, **spec)


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


def test_faces_with_a_non_finite_corner_are_dropped_as_degenerate():
    body = sphere(3)
    n = body.n_vertices
    v = np.vstack([body.vertices, [[np.nan, 0.0, 0.0], [0.0, np.inf, 0.0]]])
    stray = np.array([[0, 1, n], [2, n + 1, 3], [n, n + 1, 4]])
    out, counts = clean_mesh(MeshData(v, np.vstack([body.faces, stray])), CleanupOptions())
    assert counts["degenerate"] == 3
    assert np.isfinite(out.vertices).all()
    assert out.n_faces == body.n_faces
    assert out.to_trimesh().is_watertight


def test_zero_merge_tolerance_welds_exact_duplicates_only():
    box = trimesh.creation.box()
    box.unmerge_vertices()
    v = box.vertices.copy()
    v[0] += 1e-9  # one corner copy a hair away from the others
    welded = merge_vertices(MeshData(v, box.faces), 0.0)
    assert welded.n_vertices == 9
    assert merge_vertices(MeshData(v, box.faces), 1e-6).n_vertices == 8


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
    # cleanup renumbers vertices (first use by the faces): match them up by position
    placed = mesh.vertices @ T[:3, :3].T + T[:3, 3]
    dist, match = cKDTree(placed).query(out.vertices)
    assert dist.max() < 1e-12 and len(set(match.tolist())) == mesh.n_vertices
    # a world point and its placed copy land on the same pixel
    new_cam = load_cameras(after)[0]
    uv_old, _ = cam.project(mesh.vertices[match])
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


def closed_and_manifold(mesh: MeshData) -> bool:
    _, _, counts = edge_table(mesh.faces)
    _, fan_vertex = vertex_fans(mesh.faces, mesh.n_vertices)
    return bool((counts == 2).all() and (np.bincount(fan_vertex) <= 1).all())


# ---------------------------------------------------------------------------- hidden faces


def test_cube_with_enclosed_inner_shell_loses_every_inner_face_and_no_outer_face(tmp_path):
    outer = trimesh.creation.box(extents=(2.0, 2.0, 2.0)).subdivide().subdivide()  # 192 faces
    inner = sphere(2, 0.5, label=0)
    mesh = concat(MeshData(outer.vertices, outer.faces), inner)
    state = make_state(tmp_path, mesh)
    result = cleanup(state)
    out = load_mesh(state.apply(result), "clean_mesh")
    m = result.metrics
    assert m["cleanup_interior_faces_removed"] == inner.n_faces
    assert m["cleanup_floaters_removed"] == 0  # the shell is big: only visibility finds it
    assert out.n_faces == len(outer.faces)
    # every outer face is still there (compare placed centroids, as sorted rows)
    T = np.asarray(load_json(state.apply(result), "placement")["matrix"])
    want = outer.vertices[outer.faces].mean(axis=1) @ T[:3, :3].T + T[:3, 3]
    got = out.vertices[out.faces].mean(axis=1)
    np.testing.assert_allclose(np.sort(got, axis=0), np.sort(want, axis=0), atol=1e-9)


def test_inner_shell_behind_a_hole_removed_once_the_hole_is_filled():
    outer = sphere(3, 1.0)
    c = outer.vertices[outer.faces].mean(axis=1)
    holed = outer.subset_faces(c[:, 2] < 0.95)  # a window onto the inner shell
    inner = sphere(2, 0.5)
    out, counts = clean_mesh(concat(holed, inner), CleanupOptions())
    assert counts["holes"] == 1 and counts["interior"] == inner.n_faces
    assert out.n_faces == holed.n_faces + counts["hole_faces"]
    assert closed_and_manifold(out)


@pytest.mark.parametrize("flip", [False, True])
def test_scene_built_ahead_on_a_second_cpu_gives_the_same_mesh(monkeypatch, flip):
    """With two CPUs the hidden-face test's BVH is built beside the orient step; it is used
    only when the mesh came through unchanged (else built again), and the result is the same
    as with one CPU either way."""
    import assetfactory.tasks.cleanup as cleanup_module
    from assetfactory.core.stage import cpu_budget
    from assetfactory.geometry import derived

    outer = sphere(3, 1.0)
    if flip:  # orienting changes the faces: the scene built ahead is not the mesh's
        faces = outer.faces.copy()
        faces[::7] = faces[::7, ::-1]
        outer = MeshData(outer.vertices, faces)
    mesh = concat(outer, sphere(2, 0.5))
    options = CleanupOptions(visibility_views=8, visibility_resolution=64)
    adopted = []
    adopt = derived.adopt_ray_scene
    monkeypatch.setattr(derived, "adopt_ray_scene", lambda *a: adopted.append(adopt(*a)))
    with cpu_budget(1):
        one, c1 = clean_mesh(mesh, options)
    assert adopted == []
    monkeypatch.setattr(cleanup_module, "AHEAD_FACES", 0)
    with cpu_budget(2):
        two, c2 = clean_mesh(mesh, options)
    assert adopted == [not flip]
    assert c1 == c2 and c2["interior"] == 320
    for a, b in ((one.vertices, two.vertices), (one.faces, two.faces),
                 (one.face_labels, two.face_labels)):
        np.testing.assert_array_equal(a, b)


def test_interior_removal_can_be_disabled():
    mesh = concat(sphere(2, 1.0), sphere(1, 0.3))
    out, counts = clean_mesh(mesh, CleanupOptions(remove_interior=False,
                                                  min_component_area_share=0.0))
    assert out.n_faces == mesh.n_faces and counts["interior"] == 0


def test_rendered_views_shrink_for_huge_meshes_but_not_below_16():
    opts = CleanupOptions(visibility_method="render")
    assert visibility_views(20_000, opts) == 64
    assert visibility_views(1_000_000, opts) == 20
    assert visibility_views(50_000_000, opts) == 16
    assert visibility_views(50_000_000, CleanupOptions(visibility_method="render",
                                                       visibility_views=8)) == 8
    # ray casting pays per ray, not per face x view: every mesh gets all the views
    assert visibility_views(50_000_000, CleanupOptions()) == 64


# ---------------------------------------------------------------------------- floaters


def test_imported_mesh_keeps_small_parts_but_drops_tiny_debris(tmp_path):
    body = sphere(3, 1.0, label=0)
    string = sphere(1, 0.05, centre=(2, 0, 0), label=1)     # ~0.3% of the area: a real part
    dust = sphere(0, 0.002, centre=(-2, 0, 0), label=2)    # ~4e-6: debris
    mesh = concat(body, string, dust)
    state = make_state(tmp_path, mesh, metrics={"generate_backend": "mesh"})
    result = cleanup(state)
    out = load_mesh(state.apply(result), "clean_mesh")
    assert result.metrics["cleanup_floaters_removed"] == 1
    assert set(np.unique(out.face_labels)) == {0, 1}
    generated = cleanup(make_state(tmp_path / "gen", mesh)).metrics
    assert generated["cleanup_floaters_removed"] == 2  # from a generator: both are floaters


# ---------------------------------------------------------------------------- holes


def test_holes_filled_closed_and_labelled(tmp_path):
    s = sphere(3, 1.0, label=4)
    c = s.vertices[s.faces].mean(axis=1)
    holed = s.subset_faces((c[:, 1] < 0.8) & ~(c[:, 0] > 0.85))  # a cap and a side hole
    box = trimesh.creation.box(extents=(1, 1, 1))
    open_box = MeshData(box.vertices + [3, 0, 0], box.faces[2:], np.full(10, 9, np.int32))
    mesh = concat(holed, open_box)
    assert len(boundary_loops(mesh.faces)) == 3
    state = make_state(tmp_path, mesh)
    result = cleanup(state)
    out = load_mesh(state.apply(result), "clean_mesh")
    m = result.metrics
    assert m["cleanup_holes_filled"] == 3
    assert m["cleanup_hole_faces_added"] == out.n_faces - mesh.n_faces
    assert m["cleanup_watertight"] is True and m["cleanup_manifold"] is True
    assert m["cleanup_parts"] == 2 and m["cleanup_parts_watertight"] == 2
    assert set(np.unique(out.face_labels)) == {4, 9}
    assert closed_and_manifold(out)
    for body in out.to_trimesh().split(only_watertight=False):
        assert body.is_winding_consistent and body.volume > 0
    kept = cleanup(make_state(tmp_path / "no", mesh), CleanupOptions(fill_holes=False)).metrics
    assert kept["cleanup_holes_filled"] == 0 and kept["cleanup_watertight"] is False


def test_planar_hole_is_ear_clipped_without_new_vertices():
    grid = trimesh.creation.box(extents=(2, 1, 1)).subdivide()
    c = grid.vertices[grid.faces].mean(axis=1)
    top = c[:, 1] > 0.49
    mesh = MeshData(grid.vertices, grid.faces[~top])
    out, holes, _added = fill_holes(mesh)
    assert holes == 1 and out.n_vertices == mesh.n_vertices
    assert closed_and_manifold(out)
    assert out.to_trimesh().volume == pytest.approx(2.0)


def test_require_closed_rejects_what_cannot_be_closed(tmp_path):
    # an open band: left open it is refused with a reason; with hole filling it passes
    s = sphere(2, 1.0)
    c = s.vertices[s.faces].mean(axis=1)
    band = s.subset_faces(np.abs(c[:, 1]) < 0.3)
    state = make_state(tmp_path, band)
    with pytest.raises(ProcessingError) as info:
        cleanup(state, CleanupOptions(fill_holes=False, require_closed=True))
    assert "open" in info.value.message and info.value.fix
    assert cleanup(state, CleanupOptions(require_closed=True)).metrics["cleanup_watertight"]


# ---------------------------------------------------------------------------- non-manifold


def test_non_manifold_edge_becomes_manifold(tmp_path):
    box = trimesh.creation.box(extents=(1, 1, 1))
    a, b = box.faces[0, 0], box.faces[0, 1]
    mid = (box.vertices[a] + box.vertices[b]) / 2
    fin_tip = mid + 0.3 * np.sign(mid)  # a third face on that edge, sticking out of the box
    v = np.vstack([box.vertices, fin_tip])
    mesh = MeshData(v, np.vstack([box.faces, [[a, b, 8]]]))
    state = make_state(tmp_path, mesh)
    result = cleanup(state)
    m = result.metrics
    assert m["cleanup_non_manifold_edges"] == 1
    assert m["cleanup_non_manifold_faces_removed"] == 1
    out = load_mesh(state.apply(result), "clean_mesh")
    assert closed_and_manifold(out) and out.n_faces == 12


def test_bow_tie_vertex_is_split(tmp_path):
    t = trimesh.Trimesh([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]],
                        [[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    v = np.vstack([t.vertices, -t.vertices[1:]])
    f = np.vstack([t.faces, np.where(t.faces == 0, 0, t.faces + 3)[:, ::-1]])
    out, counts = clean_mesh(MeshData(v, f, np.repeat([0, 1], 4)), CleanupOptions())
    assert counts["non_manifold_vertices"] == 1
    assert out.n_vertices == 8 and out.n_faces == 8
    assert closed_and_manifold(out)
    assert part_report(out) == {"parts": 2, "parts_watertight": 2, "parts_manifold": 2}


# ---------------------------------------------------------------------------- slivers


def test_needle_sliver_collapsed_and_surface_closed():
    box = trimesh.creation.box(extents=(1, 1, 1))
    u, w = box.faces[0, 0], box.faces[0, 1]
    # split edge (u, w) with a vertex 1e-5 from u: both faces on it become a needle + a good one
    x = box.vertices[u] + 1e-5 * (box.vertices[w] - box.vertices[u])
    faces = []
    for f in box.faces:
        if u in f and w in f:
            k = next(i for i in range(3) if {f[i], f[(i + 1) % 3]} == {u, w})
            p, q, r = f[k], f[(k + 1) % 3], f[(k + 2) % 3]
            faces += [[p, 8, r], [8, q, r]]
        else:
            faces.append(list(f))
    mesh = MeshData(np.vstack([box.vertices, x]), np.array(faces))
    assert sliver_faces(mesh, 1e-3).sum() == 2
    out, collapsed = collapse_needles(mesh, 1e-3)
    assert collapsed == 1 and out.n_faces == 12 and out.n_vertices == 8
    assert closed_and_manifold(out)


def test_cap_sliver_flipped_without_opening_a_hole():
    # a flat quad a-d-b-c whose diagonal a-b runs past c at 1e-6: (a, b, c) is a cap
    v = np.array([[0.0, 0, 0], [2, 0, 0], [1, 1e-6, 0], [1, -1, 0]])
    mesh = MeshData(v, [[0, 1, 2], [1, 0, 3]])
    assert sliver_faces(mesh, 1e-3).tolist() == [True, False]
    out, flipped = flip_caps(mesh, 1e-3)
    assert flipped == 1 and not sliver_faces(out, 1e-3).any()
    assert sorted(map(sorted, out.faces.tolist())) == [[0, 2, 3], [1, 2, 3]]
    area = out.to_trimesh().area_faces
    assert area.sum() == pytest.approx(mesh.to_trimesh().area)
    n = out.to_trimesh().face_normals
    assert (n[:, 2] < 0).all() == (mesh.to_trimesh().face_normals[1, 2] < 0)


def test_metrics_before_and_after_each_step(tmp_path):
    m = cleanup(make_state(tmp_path, concat(sphere(2), sphere(0, 0.01, centre=(3, 0, 0))))).metrics
    for step in ("weld", "degenerate", "slivers", "non_manifold", "floaters", "holes",
                 "interior"):
        assert m[f"cleanup_tris_after_{step}"] > 0 and m[f"cleanup_verts_after_{step}"] > 0
    assert m["cleanup_tris_after_floaters"] < m["cleanup_tris_after_non_manifold"]
    assert m["cleanup_tris_after_interior"] == m["cleanup_tris_out"]
    assert m["cleanup_verts_in"] > 0 and m["cleanup_verts_out"] > 0


# ---------------------------------------------------------------------------- real data


MODEL_GLOBS = ("*.glb", "*/*.glb", "*/*.gltf", "*.obj", "*/*.obj")
BROKEN_GLOBS = ("*", "*/*.gltf")


def _clean_or_reject(tmp_path, path) -> str:
    """Import like the mesh backend, clean for the print profile: closed parts or a reason."""
    try:
        mesh, info = import_mesh(str(path))
    except InputError as exc:
        assert exc.message and exc.fix, path.name
        return "rejected at import"
    state = make_state(tmp_path, mesh, {"generate_backend": "mesh",
                                        "generate_source_extent_m": info["source_extent_m"]})
    try:
        result = cleanup(state, CleanupOptions(require_closed=True))
    except (InputError, ProcessingError) as exc:
        assert exc.message and exc.fix and exc.stage == "cleanup", path.name
        return "rejected"
    out = load_mesh(state.apply(result), "clean_mesh")
    m = result.metrics
    assert out.n_faces > 0 and len(out.face_labels) == out.n_faces, path.name
    assert m["cleanup_parts"] == m["cleanup_parts_watertight"] == m["cleanup_parts_manifold"]
    assert 1 <= m["cleanup_parts"] <= 8, path.name
    assert closed_and_manifold(out), path.name
    lo, hi = out.bounds()
    assert lo[1] == pytest.approx(0.0, abs=1e-9), path.name
    np.testing.assert_allclose((lo + hi)[[0, 2]], 0.0, atol=1e-9)
    return "cleaned"


def test_real_models_cleaned_to_contract_or_rejected(tmp_path, shared_data):
    paths = sorted(p for g in MODEL_GLOBS for p in (shared_data / "models").glob(g))
    if not paths:
        pytest.skip(f"no models under {shared_data / 'models'}")
    outcome = {p.name: _clean_or_reject(tmp_path / str(i), p) for i, p in enumerate(paths)}
    assert "rejected at import" not in outcome.values(), outcome
    assert sum(v == "cleaned" for v in outcome.values()) >= len(paths) - 2, outcome


def test_broken_files_cleaned_or_rejected_with_a_reason(tmp_path, shared_data):
    paths = sorted(p for g in BROKEN_GLOBS for p in (shared_data / "broken").glob(g)
                   if p.is_file())
    if not paths:
        pytest.skip(f"no files under {shared_data / 'broken'}")
    outcome = {p.name: _clean_or_reject(tmp_path / str(i), p) for i, p in enumerate(paths)}
    assert outcome.get("auditor_cube-non-manifold.glb") == "cleaned", outcome
    assert outcome.get("trimesh_empty.stl") == "rejected at import", outcome


def test_steps_are_an_explicit_list_each_logging_before_and_after(caplog):
    from assetfactory.tasks.cleanup import STEPS

    names = [s.name for s in STEPS]
    assert names == ["non_finite", "weld", "degenerate", "slivers", "non_manifold", "orient",
                     "floaters", "holes", "interior", "parts", "normals"]
    mesh = concat(sphere(2), sphere(1, radius=0.05, centre=(3, 0, 0)))  # one floater
    with caplog.at_level("INFO", logger="assetfactory.tasks.cleanup"):
        out, counts = clean_mesh(mesh, CleanupOptions(remove_interior=False), sku="s1")
    lines = {r.getMessage().split(":")[0]: r.getMessage() for r in caplog.records}
    assert set(lines) == {f"s1 cleanup {n}" for n in names}
    assert lines["s1 cleanup floaters"].endswith(
        f"tris {mesh.n_faces} -> {out.n_faces}, verts {mesh.n_vertices} -> {out.n_vertices}")
    assert counts["floaters"] == 1 and list(counts["steps"]) == [
        "weld", "degenerate", "slivers", "non_manifold", "floaters", "holes", "interior"]

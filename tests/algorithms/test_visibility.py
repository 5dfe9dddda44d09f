"""visibility: Fibonacci-sphere face-id renders + normal-gated flood fill (hidden faces)."""

from __future__ import annotations

import numpy as np
import open3d as o3d
import pytest
import trimesh

from assetfactory.algorithms.visibility import (
    camera_rays,
    fibonacci_directions,
    hidden_faces,
    sphere_cameras,
    visible_faces,
)
from assetfactory.core.mesh import MeshData
from assetfactory.geometry.components import flood_from_seeds
from assetfactory.geometry.derived import hull_points
from assetfactory.geometry.render import get_renderer
from assetfactory.geometry.topology import edge_face_pairs
from tests.builders import concat as _concat


def test_fibonacci_directions_are_unit_and_spread():
    d = fibonacci_directions(64)
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1.0)
    assert abs(d.mean(axis=0)).max() < 0.05            # no side favoured
    cos = d @ d.T - 2 * np.eye(64)
    assert cos.max() < 0.97                             # no two views almost the same
    np.testing.assert_array_equal(d, fibonacci_directions(64))  # deterministic


def test_cameras_frame_the_whole_mesh():
    box = trimesh.creation.box(extents=(3.0, 1.0, 0.5))
    mesh = MeshData(box.vertices + [10.0, -4.0, 2.0], box.faces)
    for cam in sphere_cameras(mesh, 12, 64):
        uv, depth = cam.project(mesh.vertices)
        assert (depth > 0).all()
        assert (uv >= 0).all() and (uv <= 63).all()


def test_enclosed_shell_hidden_and_every_outer_face_kept():
    outer = trimesh.creation.icosphere(3, 1.0)
    inner = trimesh.creation.box(extents=(0.6, 0.6, 0.6))
    mesh = _concat(outer, inner)
    hidden = hidden_faces(mesh)
    n = len(outer.faces)
    assert not hidden[:n].any()
    assert hidden[n:].all()


@pytest.mark.parametrize("method", ["raycast", "render"])
def test_both_methods_hide_the_inner_shell(method):
    outer = trimesh.creation.icosphere(3, 1.0)
    inner = trimesh.creation.icosphere(2, 0.5)
    mesh = _concat(outer, inner)
    hidden = hidden_faces(mesh, n_views=16, resolution=128, method=method)
    n = len(outer.faces)
    assert not hidden[:n].any() and hidden[n:].all()


def test_rays_and_renders_see_the_same_faces():
    # the first face along each pixel-centre ray is the face the rasteriser draws there
    s = trimesh.creation.icosphere(3)
    box = trimesh.creation.box(extents=(0.5, 2.5, 0.5))
    mesh = _concat(s, box)
    cams = sphere_cameras(mesh, 1, 96)
    ids = get_renderer().face_ids(mesh, cams[0]).reshape(-1)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(mesh.vertices.astype(np.float32)),
                        o3d.core.Tensor(mesh.faces.astype(np.uint32)))
    hit = scene.cast_rays(o3d.core.Tensor(camera_rays(cams[0])))["primitive_ids"].numpy()
    hit = np.where(hit == o3d.t.geometry.RaycastingScene.INVALID_ID, -1, hit.astype(np.int64))
    assert (ids >= 0).sum() > 1500
    assert np.mean(hit == ids) > 0.99   # pixels on an edge between two faces may differ
    seen_r = visible_faces(mesh, 8, 96, method="render")
    seen_c = visible_faces(mesh, 8, 96, method="raycast")
    assert np.mean(seen_r == seen_c) > 0.98


def test_rays_outside_the_outline_miss_and_kept_rays_are_unchanged():
    # a long, thin box seen from the sphere cameras covers a small part of each image: the
    # pixels outside its projected hull are left out, every one of them a miss, and the
    # rays kept are the full image's rays (same values, same row order)
    box = trimesh.creation.box(extents=(4.0, 0.3, 0.3))
    mesh = _concat(box, trimesh.creation.icosphere(2, 0.1))
    outline = hull_points(mesh)
    assert 8 <= len(outline) <= mesh.n_vertices
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(mesh.vertices.astype(np.float32)),
                        o3d.core.Tensor(mesh.faces.astype(np.uint32)))
    dropped = 0
    for cam in sphere_cameras(mesh, 12, 96):
        full, part = camera_rays(cam), camera_rays(cam, outline)
        rows = {r.tobytes() for r in part}
        kept = np.array([r.tobytes() in rows for r in full])
        assert kept.sum() == len(part)
        np.testing.assert_array_equal(full[kept], part)  # in order
        hit = scene.cast_rays(o3d.core.Tensor(full[~kept]))["primitive_ids"].numpy()
        assert (hit == o3d.t.geometry.RaycastingScene.INVALID_ID).all()
        dropped += int((~kept).sum())
    assert dropped > 0.5 * 12 * 96 * 96
    seen = visible_faces(mesh, 12, 96)
    assert seen[:len(box.faces)].all()


def test_flood_fill_recovers_faces_no_view_saw():
    # one view sees about half of a sphere; the smooth surface carries the fill around it
    s = trimesh.creation.icosphere(3)
    mesh = MeshData(s.vertices, s.faces)
    seen = visible_faces(mesh, n_views=1, resolution=64)
    assert 0.2 < seen.mean() < 0.6
    assert not hidden_faces(mesh, n_views=1, resolution=64).any()
    # a gate stricter than the angle between neighbouring faces stops the fill at once
    strict = hidden_faces(mesh, n_views=1, resolution=64, normal_dot=0.9999)
    assert strict.sum() == (~seen).sum()


def test_interior_sheet_hidden_open_sheet_inside_open_box_seen():
    box = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    wall = trimesh.Trimesh([[-0.4, -0.4, 0.0], [0.4, -0.4, 0.0], [0.4, 0.3, 0.0],
                            [-0.4, 0.3, 0.0]], [[0, 1, 2], [0, 2, 3]])
    hidden = hidden_faces(_concat(box, wall))
    assert not hidden[:12].any() and hidden[12:].all()
    top = box.vertices[box.faces].mean(axis=1)[:, 1] > 0.49
    lidless = trimesh.Trimesh(box.vertices, box.faces[~top])
    hidden = hidden_faces(_concat(lidless, wall))
    assert not hidden.any()  # looking in from above, the sheet is in plain view


def test_edge_face_pairs_match_trimesh():
    s = trimesh.creation.icosphere(2)
    pairs, edges = edge_face_pairs(s.faces)
    assert {tuple(p) for p in np.sort(pairs, 1)} == {tuple(p) for p in np.sort(
        s.face_adjacency, 1)}
    for (f, g), (a, b) in zip(pairs[:20], edges[:20]):
        assert {a, b} <= set(s.faces[f]) and {a, b} <= set(s.faces[g])


def test_flood_from_seeds_components():
    pairs = np.array([[0, 1], [1, 2], [3, 4]])
    np.testing.assert_array_equal(flood_from_seeds(6, pairs, np.array([2])),
                                  [True, True, True, False, False, False])
    with pytest.raises(ValueError):
        fibonacci_directions(0)

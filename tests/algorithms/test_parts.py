"""parts: edge/fan topology, concave-crease segmentation, label keeping and merging."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from assetfactory.algorithms.orientation import orient_faces
from assetfactory.algorithms.parts import segment_parts
from assetfactory.core.mesh import MeshData
from assetfactory.geometry.closed import part_report
from assetfactory.geometry.topology import edge_table, vertex_fans
from tests.builders import concat as _concat
from tests.builders import from_trimesh as _mesh


def _tower() -> MeshData:
    """A block with a thinner post on top: one closed surface, a concave crease between."""
    base = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    post = trimesh.creation.box(extents=(0.4, 1.0, 0.4))
    post.apply_translation((0.0, 0.9, 0.0))
    mesh, _ = orient_faces(_mesh(base.union(post)))
    return mesh


def test_edge_table_counts_border_manifold_and_non_manifold():
    box = trimesh.creation.box()
    edges, face_edge, counts = edge_table(box.faces)
    assert len(edges) == 18 and (counts == 2).all()
    assert face_edge.shape == (12, 3)
    e = edges[face_edge[0, 0]]
    assert set(e) == {box.faces[0, 0], box.faces[0, 1]}
    fin = np.vstack([box.faces, [[box.faces[0, 0], box.faces[0, 1], 8]]])
    _, _, counts = edge_table(fin)
    assert (counts == 3).sum() == 1 and (counts == 1).sum() == 2


def test_vertex_fans_find_a_bow_tie():
    # two tetrahedra touching at vertex 0 only
    t = trimesh.Trimesh([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]],
                        [[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    v = np.vstack([t.vertices, -t.vertices[1:]])
    f = np.vstack([t.faces, np.where(t.faces == 0, 0, t.faces + 3)[:, ::-1]])
    fan, fan_vertex = vertex_fans(f, len(v))
    per_vertex = np.bincount(fan_vertex, minlength=len(v))
    assert per_vertex[0] == 2 and (per_vertex[1:] == 1).all()
    assert fan.shape == f.shape


def test_concave_crease_splits_a_tower_in_two():
    mesh = _tower()
    labels = segment_parts(mesh)
    assert len(np.unique(labels)) == 2
    y = mesh.vertices[mesh.faces].mean(axis=1)[:, 1]
    assert len(np.unique(labels[y > 0.55])) == 1 and len(np.unique(labels[y < 0.45])) == 1
    assert labels[y > 0.55][0] != labels[y < 0.45][0]
    np.testing.assert_array_equal(labels, segment_parts(mesh))  # deterministic


def test_convex_shapes_stay_one_part_and_keep_their_label():
    sphere = _mesh(trimesh.creation.icosphere(3), label=5)
    np.testing.assert_array_equal(segment_parts(sphere), sphere.face_labels)
    box = _mesh(trimesh.creation.box(), label=2)
    assert set(segment_parts(box)) == {2}


def _smooth_sdf_mesh(sdf, n: int = 90) -> MeshData:
    """Marching cubes of an SDF over [-0.7, 0.7]^3, outward winding."""
    from skimage.measure import marching_cubes

    g = np.linspace(-0.7, 0.7, n)
    v, f, _, _ = marching_cubes(sdf(*np.meshgrid(g, g, g, indexing="ij")), 0.0,
                                spacing=(g[1] - g[0],) * 3)
    return MeshData(v - 0.7, f.astype(np.int64))


def _rounded_box(q: list) -> np.ndarray:
    q = np.stack(q)
    return np.linalg.norm(np.maximum(q, 0), axis=0) + np.minimum(q.max(0), 0)


def _stool(X, Y, Z):
    """A thick seat and three thin legs fused by a smooth blend: no concave crease anywhere."""
    d = _rounded_box([np.sqrt(X ** 2 + Z ** 2) - 0.45, np.abs(Y - 0.3) - 0.1]) - 0.03
    for a in (0.0, 2.1, 4.2):
        leg = _rounded_box([np.sqrt((X - 0.3 * np.cos(a)) ** 2 + (Z - 0.3 * np.sin(a)) ** 2)
                            - 0.035, np.abs(Y + 0.2) - 0.45])
        h = np.clip(0.5 + 0.5 * (leg - d) / 0.06, 0, 1)          # polynomial smooth minimum
        d = leg * (1 - h) + d * h - 0.06 * h * (1 - h)
    return d


def test_shape_diameter_splits_a_smooth_stool_into_seat_and_legs():
    mesh = _smooth_sdf_mesh(_stool)
    assert len(set(segment_parts(mesh, diameter_split=False))) == 1   # no crease to cut
    labels = segment_parts(mesh)
    y = mesh.vertices[mesh.faces].mean(axis=1)[:, 1]
    parts = sorted(set(labels.tolist()))
    assert len(parts) == 4                                            # seat + 3 legs
    seat = max(parts, key=lambda p: y[labels == p].mean())
    assert y[labels == seat].min() > 0.05                             # the seat and its blend
    for p in set(parts) - {seat}:
        assert y[labels == p].max() < 0.2 and y[labels == p].min() < -0.6
    np.testing.assert_array_equal(labels, segment_parts(mesh))        # deterministic


def test_shape_diameter_leaves_slabs_and_smooth_shapes_whole():
    # a phone-like slab: its rim is "thick" against its "thin" faces, but across sharp edges
    slab = _smooth_sdf_mesh(lambda X, Y, Z: _rounded_box(
        [np.abs(X) - 0.5, np.abs(Y) - 0.03, np.abs(Z) - 0.25]) - 0.005)
    capsule = trimesh.creation.capsule(height=1.0, radius=0.3, count=[32, 32])
    for mesh in (slab, _mesh(capsule), _mesh(trimesh.creation.icosphere(4))):
        assert len(set(segment_parts(mesh))) == 1


def test_input_labels_kept_when_few():
    a = _mesh(trimesh.creation.icosphere(2), label=3)
    b = _mesh(trimesh.creation.icosphere(2).apply_translation((3, 0, 0)), label=7)
    mesh = _concat(a, b)
    np.testing.assert_array_equal(segment_parts(mesh), mesh.face_labels)


def test_too_many_labels_merge_down_to_max_parts_by_area():
    spheres = [_mesh(trimesh.creation.icosphere(1, radius=1.0 + 0.1 * i)
                     .apply_translation((3 * i, 0, 0)), label=10 + i) for i in range(12)]
    mesh = _concat(*spheres)
    labels = segment_parts(mesh, max_parts=8)
    kept = set(np.unique(labels).tolist())
    assert len(kept) == 8
    assert kept <= set(range(10, 22))
    assert {21, 20, 19, 18} <= kept  # the largest parts survive under their own labels
    # every input part moved as a whole
    for s in range(12):
        assert len(np.unique(labels[mesh.face_labels == 10 + s])) == 1


def test_many_components_of_one_label_merge_to_max_parts():
    spheres = [_mesh(trimesh.creation.icosphere(1).apply_translation((3 * i, 0, 0)))
               for i in range(11)]
    labels = segment_parts(_concat(*spheres), max_parts=4)
    assert len(np.unique(labels)) == 4
    with pytest.raises(ValueError):
        segment_parts(spheres[0], max_parts=0)


def test_part_report_counts_closed_and_manifold_parts():
    closed = _mesh(trimesh.creation.box(), label=0)
    s = trimesh.creation.icosphere(2)
    dome = _mesh(s, label=1).subset_faces(s.vertices[s.faces].mean(axis=1)[:, 2] > 0)
    dome = dome.replace(vertices=dome.vertices + [4, 0, 0])
    rep = part_report(_concat(closed, dome))
    assert rep == {"parts": 2, "parts_watertight": 1, "parts_manifold": 2}
    tower = _tower()
    tower = tower.replace(face_labels=segment_parts(tower))
    assert part_report(tower) == {"parts": 2, "parts_watertight": 2, "parts_manifold": 2}


def test_shape_diameter_through_a_kept_scene_equals_a_fresh_one():
    """cleanup hands the hidden-face test's scene on to the parts (less the hidden faces):
    rays that hit a removed face go on through it, so the diameters are those of a scene
    built for the smaller mesh (here an inner shell the outer sphere's rays would hit)."""
    from assetfactory.algorithms.parts import shape_diameter
    from assetfactory.geometry import derived
    from tests.builders import sphere

    outer, inner = sphere(3, 1.0), sphere(2, 0.5)
    both = _concat(outer, inner)
    derived.ray_scene(both)  # built for the mesh with the shell, as the hidden-face test does
    kept = np.arange(outer.n_faces)
    shell_gone = both.subset_faces(np.isin(np.arange(both.n_faces), kept))
    derived.keep_ray_scene(both, shell_gone, kept)
    assert shell_gone.cached("ray_scene").face_of_prim is not None
    faces = np.arange(0, outer.n_faces, 7)
    got = shape_diameter(shell_gone, faces)
    want = shape_diameter(MeshData(outer.vertices, outer.faces), faces)
    assert np.isfinite(want).all() and 1.5 < np.median(want) < 2.0  # chords of the sphere
    np.testing.assert_allclose(got, want, rtol=1e-5)
    # the shell is in the kept scene: a ray inward from the outer sphere hits it first there,
    # and goes on through it for the mesh that no longer has it
    centre = outer.vertices[outer.faces[faces]].mean(axis=1)
    rays = np.concatenate([centre * 0.999, -centre], axis=1).astype(np.float32)
    _, first, _ = derived.ray_scene(both).first_hits(rays)
    assert (first >= outer.n_faces).all()
    t, through, _ = shell_gone.cached("ray_scene").first_hits(rays)
    assert (through >= 0).all() and (through < outer.n_faces).all()
    np.testing.assert_allclose(t, 1.998, atol=0.02)  # the far side of the unit sphere


def test_split_bow_tie_hands_on_fans_that_match_a_fresh_count():
    """``split_nonmanifold_vertices`` caches the output's fans (the metrics ask again): the
    same grouping of corners and one fan per vertex, as computing them anew gives."""
    from assetfactory.algorithms.repair import split_nonmanifold_vertices
    from assetfactory.geometry import derived

    t = trimesh.Trimesh([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]],
                        [[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    v = np.vstack([t.vertices, -t.vertices[1:]])
    f = np.vstack([t.faces, np.where(t.faces == 0, 0, t.faces + 3)[:, ::-1]])
    out, bad = split_nonmanifold_vertices(MeshData(v, f))
    assert bad == 1
    fan, fan_vertex = derived.vertex_fans(out)  # the cached answer
    fresh, fresh_vertex = vertex_fans(out.faces, out.n_vertices)
    assert (np.bincount(fan_vertex, minlength=out.n_vertices) == 1).all()
    assert (fan_vertex[fan] == out.faces).all() and (fresh_vertex[fresh] == out.faces).all()
    # the same partition of corners into fans, whatever the numbering
    pairs = {(a, b) for a, b in zip(fan.ravel(), fresh.ravel())}
    assert len(pairs) == len(set(fan.ravel())) == len(set(fresh.ravel()))

"""Derived data is cached on the mesh by content, like trimesh's cache."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from assetfactory.geometry import derived
from tests.builders import sphere


def test_computed_once_per_content():
    mesh = sphere(2)
    calls = []
    value = mesh.derived("x", lambda: calls.append(1) or np.arange(3))
    assert mesh.derived("x", lambda: calls.append(1) or None) is value
    assert len(calls) == 1
    mesh.vertices[0] += 1.0          # changed in place: the cache must notice
    mesh.derived("x", lambda: calls.append(1) or 0)
    assert len(calls) == 2


def test_accessors_share_and_protect_their_arrays():
    mesh = sphere(2)
    assert derived.face_areas(mesh) is derived.face_areas(mesh)
    assert derived.edge_table(mesh) is derived.edge_table(mesh)
    with pytest.raises(ValueError):
        derived.face_normals(mesh)[0] = 0.0  # read-only: no caller changes the shared copy
    pairs, _ = derived.manifold_pairs(mesh)
    assert len(pairs) == 3 * mesh.n_faces // 2
    faces = mesh.faces.copy()
    faces[0] = faces[0, ::-1]
    assert mesh.replace(faces=faces).derived("edge_table", lambda: None) is None  # new mesh


def test_the_cache_is_not_pickled_or_saved():
    mesh = sphere(1)
    derived.face_areas(mesh)
    assert "_derived" in mesh.__dict__
    back = pickle.loads(pickle.dumps(mesh))
    assert "_derived" not in back.__dict__
    np.testing.assert_array_equal(back.faces, mesh.faces)
    assert type(mesh).from_bytes(mesh.to_bytes()).n_faces == mesh.n_faces


def test_entries_of_the_faces_alone_survive_a_move_and_the_others_do_not():
    mesh = sphere(2)
    table = derived.edge_table(mesh)
    areas = derived.face_areas(mesh)
    T = np.diag([2.0, 2.0, 2.0, 1.0])
    moved = mesh.transformed(T)
    assert derived.edge_table(moved) is table          # same faces: served from the cache
    np.testing.assert_allclose(derived.face_areas(moved), 4 * areas)  # vertices changed
    assert derived.face_areas(mesh) is areas           # the original's entry is untouched
    relabelled = mesh.replace(face_labels=np.ones(mesh.n_faces, np.int32))
    assert derived.edge_table(relabelled) is table



def test_vertex_fans_reuse_the_cached_manifold_pairs():
    """The fans are built from the mesh's cached edge table and manifold pairs (one table
    and one pair list per mesh content, whichever step asks first), and equal a fresh build."""
    from assetfactory.geometry import topology

    mesh = sphere(2)
    pairs = derived.manifold_pairs(mesh)
    calls = []
    real = topology.manifold_pairs
    topology.manifold_pairs = lambda *a: calls.append(1) or real(*a)
    try:
        fans = derived.vertex_fans(mesh)
    finally:
        topology.manifold_pairs = real
    assert calls == [] and derived.manifold_pairs(mesh) is pairs
    for got, want in zip(fans, topology.vertex_fans(mesh.faces)):
        np.testing.assert_array_equal(got, want)

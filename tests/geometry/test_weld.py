"""Welding: the 1-d key sorts give the groups of the row-wise np.unique."""

from __future__ import annotations

import numpy as np

from assetfactory.core.mesh import MeshData
from assetfactory.geometry.closed import signed_volume
from assetfactory.geometry.weld import merge_vertices, weld, weld_ids
from tests.builders import sphere, unit_cube


def test_weld_matches_unique_axis0():
    cube = unit_cube(split_seams=True)
    v, f = weld(cube.vertices, cube.faces, 1e-7)
    assert len(v) == 8 and len(f) == 12
    diag = float(np.linalg.norm(np.ptp(cube.vertices, axis=0)))
    key = np.round(cube.vertices / (1e-7 * diag)).astype(np.int64)
    _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    assert sorted(map(tuple, v)) == sorted(map(tuple, cube.vertices[first]))
    ref = inverse.reshape(-1)[cube.faces]
    assert abs(signed_volume(v, f) - signed_volume(cube.vertices[first], ref)) < 1e-15
    assert abs(signed_volume(v, f) - 1.0) < 1e-12


def test_weld_ids_groups_equal_positions_including_signed_zero():
    v = np.array([[0.0, 1, 2], [-0.0, 1, 2], [0, 1, 2.0000001], [0, 1, 2]])
    ids = weld_ids(v)
    assert ids[0] == ids[1] == ids[3] != ids[2]
    assert len(weld_ids(np.zeros((0, 3)))) == 0


def test_merge_vertices_keeps_uv_seams_and_drops_unused():
    mesh = sphere(1)
    soup = MeshData(mesh.vertices[mesh.faces.reshape(-1)],
                    np.arange(mesh.n_faces * 3).reshape(-1, 3))
    assert merge_vertices(soup, 1e-6).n_vertices == mesh.n_vertices
    uv = np.zeros((soup.n_vertices, 2), np.float32)
    uv[::2] = 0.5   # corners at one position with two UVs stay two vertices
    assert merge_vertices(soup.replace(uv=uv), 1e-6).n_vertices > mesh.n_vertices

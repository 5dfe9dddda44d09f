"""The numba topology/geometry kernels give exactly what the numpy formulations they replace
give (written out here as the reference), on meshes with every defect cleanup meets."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh
from scipy import sparse
from scipy.sparse import csgraph

from assetfactory.geometry import topology as kernels
from assetfactory.geometry.normals import face_areas, face_normals


def ref_edge_table(faces):
    a, b = faces.ravel(), faces[:, [1, 2, 0]].ravel()
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    n = int(faces.max()) + 1
    keys, inverse, counts = np.unique(lo * n + hi, return_inverse=True, return_counts=True)
    return np.stack([keys // n, keys % n], axis=1), inverse.reshape(-1, 3), counts


def ref_manifold_pairs(face_edge, counts):
    flat = face_edge.ravel()
    two = np.flatnonzero(counts[flat] == 2)
    order = two[np.argsort(flat[two], kind="stable")]
    first, second = order[0::2], order[1::2]
    return np.stack([first // 3, second // 3], axis=1), flat[first]


def ref_vertex_fans(faces):
    m = len(faces)
    edges, face_edge, counts = ref_edge_table(faces)
    pairs, e = ref_manifold_pairs(face_edge, counts)
    f, g = pairs[:, 0], pairs[:, 1]
    rows, cols = [], []
    for end in range(2):
        v = edges[e, end]
        rows.append(3 * f + np.argmax(faces[f] == v[:, None], axis=1))
        cols.append(3 * g + np.argmax(faces[g] == v[:, None], axis=1))
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    graph = sparse.coo_matrix((np.ones(len(rows), np.int8), (rows, cols)), shape=(3 * m, 3 * m))
    n_fans, fan = csgraph.connected_components(graph, directed=False)
    fan_vertex = np.zeros(n_fans, np.int64)
    fan_vertex[fan] = faces.ravel()
    return fan.reshape(-1, 3), fan_vertex


def defective_meshes():
    """An icosphere, a random soup, and a sphere with a bow-tie, a fin (an edge with three
    faces), duplicate and degenerate faces, a flipped face and a vertex of huge valence."""
    s = trimesh.creation.icosphere(3)
    rng = np.random.default_rng(3)
    soup = rng.integers(0, 60, (400, 3))
    v = np.vstack([s.vertices, s.vertices + [3, 0, 0], [[0, 0, 2], [9, 9, 9]]])
    n = len(s.vertices)
    f = np.vstack([s.faces, s.faces + n])
    bowtie = f[0].copy()
    f[len(s.faces):][f[len(s.faces):] == bowtie[0] + n] = bowtie[0]  # two spheres share a vertex
    extra = [[s.faces[5, 0], s.faces[5, 1], 2 * n],               # a fin on face 5's first edge
             s.faces[7], s.faces[7][::-1],                         # duplicates, either winding
             [s.faces[9, 0], s.faces[9, 0], s.faces[9, 1]]]        # a repeated vertex
    hub = np.array([[2 * n + 1, i, i + 1] for i in range(80)])  # one vertex on 80 faces
    f = np.vstack([f, extra, hub])
    f[11] = f[11][::-1]
    return [("icosphere", s.faces.astype(np.int64), s.vertices),
            ("soup", soup, rng.random((60, 3))),
            ("defects", f.astype(np.int64), v)]


@pytest.mark.parametrize("name,faces,vertices", defective_meshes(), ids=lambda x: x
                         if isinstance(x, str) else "")
def test_topology_kernels_match_numpy(name, faces, vertices):
    edges, face_edge, counts = kernels.edge_table(faces)
    r_edges, r_face_edge, r_counts = ref_edge_table(faces)
    np.testing.assert_array_equal(edges, r_edges)
    np.testing.assert_array_equal(face_edge, r_face_edge)
    np.testing.assert_array_equal(counts, r_counts)

    pairs, e = kernels.manifold_pairs(face_edge, counts)
    r_pairs, r_e = ref_manifold_pairs(r_face_edge, r_counts)
    np.testing.assert_array_equal(pairs, r_pairs)
    np.testing.assert_array_equal(e, r_e)

    fan, fan_vertex = kernels.vertex_fans(faces)
    r_fan, r_fan_vertex = ref_vertex_fans(faces)
    np.testing.assert_array_equal(fan, r_fan)
    np.testing.assert_array_equal(fan_vertex, r_fan_vertex)
    if name == "defects":  # the shared vertex of the two spheres is a bow-tie: two fans
        assert (np.bincount(fan_vertex) > 1).any()


@pytest.mark.parametrize("name,faces,vertices", defective_meshes(), ids=lambda x: x
                         if isinstance(x, str) else "")
def test_geometry_kernels_match_numpy(name, faces, vertices):
    v = vertices[faces]
    cross = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
    area = 0.5 * np.linalg.norm(cross, axis=1)
    np.testing.assert_allclose(face_areas(vertices, faces), area, rtol=1e-12, atol=1e-15)
    length = np.linalg.norm(cross, axis=1, keepdims=True)
    normals = cross / np.where(length > 0, length, 1.0)
    np.testing.assert_allclose(face_normals(vertices, faces), normals, atol=1e-12)

    lengths, longest, shortest, height = kernels.sliver_shape(vertices, faces)
    r_lengths = np.linalg.norm(v[:, [1, 2, 0]] - v, axis=2)
    np.testing.assert_allclose(lengths, r_lengths, rtol=1e-12)
    np.testing.assert_array_equal(longest, r_lengths.argmax(axis=1))
    np.testing.assert_array_equal(shortest, r_lengths.argmin(axis=1))
    top = r_lengths.max(axis=1)
    np.testing.assert_allclose(height, 2 * area / np.where(top > 0, top, 1.0), rtol=1e-9,
                               atol=1e-15)


def test_empty_mesh():
    edges, face_edge, counts = kernels.edge_table(np.zeros((0, 3), np.int64))
    assert edges.shape == (0, 2) and face_edge.shape == (0, 3) and counts.shape == (0,)
    fan, fan_vertex = kernels.vertex_fans(np.zeros((0, 3), np.int64))
    assert fan.shape == (0, 3) and len(fan_vertex) == 0


@pytest.mark.parametrize("name,faces,vertices", defective_meshes(), ids=lambda x: x
                         if isinstance(x, str) else "")
def test_slot_kernels_match_numpy(name, faces, vertices):
    edges, face_edge, counts = kernels.edge_table(faces)
    flat = face_edge.ravel()
    ptr, slots = kernels.edge_slots(face_edge, len(edges))
    np.testing.assert_array_equal(slots, np.argsort(flat, kind="stable"))
    np.testing.assert_array_equal(np.diff(ptr), counts)
    pair_slots, e = kernels.manifold_slots(face_edge, counts)
    np.testing.assert_array_equal(flat[pair_slots[:, 0]], e)  # both slots lie on the edge
    np.testing.assert_array_equal(flat[pair_slots[:, 1]], e)
    np.testing.assert_array_equal(pair_slots // 3, ref_manifold_pairs(face_edge, counts)[0])


def test_first_use_renumbering():
    faces = np.array([[7, 3, 5], [3, 7, 9], [9, 1, 5]])
    rank, order = kernels.first_use(faces, 11)
    np.testing.assert_array_equal(order, [7, 3, 5, 9, 1])
    np.testing.assert_array_equal(rank[faces], [[0, 1, 2], [1, 0, 3], [3, 4, 2]])
    assert (rank[[0, 2, 4, 6, 8, 10]] == -1).all()


def test_patch_volumes_match_numpy():
    a = trimesh.creation.icosphere(3, 1.0)
    b = trimesh.creation.box(extents=(1, 2, 3))
    v = np.vstack([a.vertices, b.vertices + 5])
    f = np.vstack([a.faces, b.faces[:, ::-1] + len(a.vertices)])  # the box inside out
    patch = np.r_[np.zeros(len(a.faces), np.int64), np.ones(len(b.faces), np.int64)]
    vol = kernels.patch_volumes(v, f, patch, 2)
    np.testing.assert_allclose(vol, [a.volume, -6.0], rtol=1e-9)

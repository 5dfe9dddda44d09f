"""edge_ops: the sliver flip (numba kernel) against its plain-Python formulation."""

from __future__ import annotations

import numpy as np
import trimesh

from assetfactory.algorithms import decimate as Q
from assetfactory.algorithms.edge_ops import flip_slivers, sliver_candidates
from assetfactory.core.mesh import MeshData


def _flip_slivers_python(vertices, faces, labels, ratio=1e-3, rounds=4):
    """The flip as it was first written (a dict of directed edges, a Python loop), on the
    same candidates."""
    faces = faces.copy()
    total = 0
    for _ in range(rounds):
        # which faces are slivers is shared; the flips are what is compared
        cand, k = sliver_candidates(vertices, faces, ratio)
        if not len(cand):
            break
        n = len(vertices)
        directed = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
        owner = dict(zip((directed[:, 0] * n + directed[:, 1]).tolist(),
                         np.repeat(np.arange(len(faces)), 3).tolist()))
        used = np.zeros(len(faces), bool)
        flips = 0
        for i in cand.tolist():
            a, b, c = (int(faces[i, (k[i] + j) % 3]) for j in range(3))
            g = owner.get(b * n + a)
            if g is None or used[i] or used[g] or labels[g] != labels[i]:
                continue
            d = int(next(x for x in faces[g] if x != a and x != b))
            if d == c or c * n + d in owner or d * n + c in owner:
                continue
            ng = np.cross(vertices[a] - vertices[b], vertices[d] - vertices[b])
            n1 = np.cross(vertices[a] - vertices[c], vertices[d] - vertices[c])
            n2 = np.cross(vertices[b] - vertices[d], vertices[c] - vertices[d])
            if n1 @ ng <= 0 or n2 @ ng <= 0:
                continue
            faces[i], faces[g] = (c, a, d), (d, b, c)
            owner[c * n + d] = owner[d * n + c] = -1
            used[i] = used[g] = True
            flips += 1
        total += flips
        if not flips:
            break
    return faces, total


def test_sliver_flipped_within_a_part_only():
    v = np.array([[0, 0, 0], [1, 0, 0], [0.5, 1e-5, 0], [0.5, -1, 0]], float)
    f = np.array([[0, 1, 2], [1, 0, 3]])
    out, flips = flip_slivers(v, f, np.zeros(2, np.int32))
    assert flips == 1 and out.tolist() == [[2, 0, 3], [3, 1, 2]]
    out, flips = flip_slivers(v, f, np.array([0, 1], np.int32))  # a part border: kept
    assert flips == 0 and out.tolist() == f.tolist()


def test_flips_match_the_python_formulation_on_a_faceted_collapse(monkeypatch):
    """Collapsing a faceted mesh (coplanar triangles on flat faces) leaves slivers on its
    flat fans; the kernel flips exactly the faces the plain loop does."""
    m = trimesh.creation.cylinder(0.5, 1.0, sections=24)
    v, f = m.vertices, m.faces
    for _ in range(2):
        v, f = trimesh.remesh.subdivide(v, f)
    pick = np.random.default_rng(0).choice(len(f), len(f) // 3, replace=False)  # split some
    c = np.arange(len(v), len(v) + len(pick))                                   # at centroids
    s = f[pick]
    f = np.concatenate([np.delete(f, pick, 0), np.stack([s[:, 0], s[:, 1], c], 1),
                        np.stack([s[:, 1], s[:, 2], c], 1), np.stack([s[:, 2], s[:, 0], c], 1)])
    v = np.concatenate([v, v[s].mean(1)])
    seen = []
    monkeypatch.setattr(Q, "flip_slivers",
                        lambda *a: seen.append([x.copy() for x in a]) or flip_slivers(*a))
    # the collapse without the flat sweep (the path of a mesh of several parts): a mesh
    # collapsed as one takes its flat collapses in bulk first and leaves no slivers to flip
    monkeypatch.setattr(Q, "flat_collapse", lambda *a, **k: None)
    Q.decimate(MeshData(v, f), 600)
    vertices, faces, labels = seen[0]
    labels = (vertices[faces].mean(1)[:, 2] > 0).astype(np.int32)  # two parts, to test both
    want, want_flips = _flip_slivers_python(vertices, faces, labels)
    got, flips = flip_slivers(vertices, faces, labels)
    assert flips == want_flips > 0
    np.testing.assert_array_equal(got, want)

"""Local edge operations on a decimated mesh: flipping slivers away and splitting edges to
reach an exact face count. Neither moves a vertex of the surface."""

from __future__ import annotations

import numpy as np


def sliver_candidates(vertices: np.ndarray, faces: np.ndarray,
                      ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """(slivers, longest): the faces whose twice-area is under ``ratio`` x their longest edge
    squared, in face order, and each face's longest edge k (corner k -> k+1)."""
    p = vertices[faces]
    edges = np.roll(p, -1, axis=1) - p
    length2 = np.einsum("fkd,fkd->fk", edges, edges)
    k = np.argmax(length2, axis=1)
    longest = np.sqrt(length2[np.arange(len(faces)), k])
    twice_area = np.linalg.norm(np.cross(edges[:, 0], -edges[:, 2]), axis=1)
    return np.flatnonzero((longest > 0) & (twice_area < ratio * longest ** 2)), k


def flip_slivers(vertices: np.ndarray, faces: np.ndarray, labels: np.ndarray,
                 ratio: float = 1e-3, rounds: int = 4) -> tuple[np.ndarray, int]:
    """Flip away slivers: faces whose third vertex lies (almost) on their longest edge.

    Collapses along straight borders and flat fans leave such zero-area faces, which carry no
    normal and trouble UV unwrapping and tangents. Each sliver (a, b, c), with c within
    ``ratio`` x |ab| of the edge ab, and its neighbour (b, a, d) across ab become (c, a, d)
    and (d, b, c): the same quad, split along cd. Only within one part (the neighbour's label
    must match, so part borders stay where they are), only where cd is not an edge yet (the
    mesh stays manifold and closed) and where both new faces keep the neighbour's
    orientation. Vertex positions and the face count do not change. Returns (faces, flips).
    """
    from ._edge_ops_numba import flip_round

    faces = np.array(faces, np.int64)  # a copy, changed in place by the rounds
    vertices = np.ascontiguousarray(vertices, np.float64)
    labels = np.ascontiguousarray(labels)
    total = 0
    n = len(vertices)
    for _ in range(rounds):
        cand, k = sliver_candidates(vertices, faces, ratio)
        if not len(cand):
            break
        directed = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
        keys = directed[:, 0] * n + directed[:, 1]
        order = np.argsort(keys, kind="stable")
        flips = flip_round(vertices, faces, labels, cand, k, keys[order], order // 3, n)
        total += flips
        if not flips:
            break
    return faces, total


def top_up(vertices: np.ndarray, faces: np.ndarray, labels: np.ndarray, wid: np.ndarray,
           missing: int, budgets: dict | None = None,
           fat: float = 0.05) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Add ``missing`` faces by splitting edges at their midpoints, so the count is exact.

    The collapse can end a few faces short of the target (a dropped pillow, an odd step at a
    border, a neighbour part's border collapses). The surface does not change: each split puts
    a vertex on an existing edge. Longest edges first (with ``budgets``, label -> faces, first
    in the parts below their budget, as far as each is below), each face split at most once,
    and only where both faces at the edge are well shaped (twice the area >= ``fat`` x the
    edge length squared, so no sliver is made). An edge inside a part (exactly two faces, over
    the same vertex copies) gives two faces more, with the mesh kept closed and manifold (a
    non-manifold edge is never split: its other faces would get a T-junction); an open border
    edge (one face also over welded positions ``wid``) gives one, which is used only for an odd
    remainder. Part borders are never split (their two sides use separate vertex copies, and
    splitting one side would crack the seam), and a closed mesh only has even face counts, so
    an odd remainder on it stays one short. Returns (vertices, faces, labels, mid_of): mid_of
    (k, 2) gives the end points of the k vertices appended.
    """
    none = np.zeros((0, 2), np.int64)
    if missing <= 0 or not len(faces):
        return vertices, faces, labels, none
    n = len(vertices)
    a, b = faces.ravel(), np.roll(faces, -1, axis=1).ravel()      # half-edge k: corner k -> k+1
    face_of = np.repeat(np.arange(len(faces)), 3)
    key, rkey = a * n + b, b * n + a
    order = np.argsort(key)
    pos = np.minimum(np.searchsorted(key[order], rkey), len(key) - 1)
    twin = np.where(key[order][pos] == rkey, order[pos], -1)      # opposite half-edge or -1
    edge = vertices[b] - vertices[a]
    length2 = np.einsum("ij,ij->i", edge, edge)
    p = vertices[faces]
    twice_area = np.linalg.norm(np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]), axis=1)
    ok = (length2 > 0) & (twice_area[face_of] >= fat * length2)
    # edges on exactly two faces (one half-edge each way), also over welded positions: a
    # split on a non-manifold edge would leave its other faces with a T-junction
    wkey = np.minimum(wid[a], wid[b]) * (int(wid.max()) + 1) + np.maximum(wid[a], wid[b])
    _, winv, wcount = np.unique(wkey, return_inverse=True, return_counts=True)
    wcount = wcount[winv.reshape(-1)]
    sorted_key = key[order]
    repeated = np.zeros(len(key), bool)
    repeated[order[1:][sorted_key[1:] == sorted_key[:-1]]] = True
    repeated[order[:-1][sorted_key[1:] == sorted_key[:-1]]] = True
    inner = ok & (twin >= 0) & (a < b) & (wcount == 2) & ~repeated
    inner[inner] &= ok[twin[inner]] & ~repeated[twin[inner]]
    # an open border: no twin among the vertex copies, nor among welded positions
    border = ok & (twin < 0) & (wcount == 1)
    by_length = np.argsort(-length2, kind="stable")
    inner_order, border_order = by_length[inner[by_length]], by_length[border[by_length]]
    room = None if budgets is None else {
        int(k): int(budgets.get(int(k), 0)) - int(c)
        for k, c in zip(*np.unique(labels, return_counts=True))}

    used = np.zeros(len(faces), bool)
    splits = []                                                    # (half-edge, twin or -1)
    left = missing
    for restricted in ((True, False) if room is not None else (False,)):
        for cand, gain in ((inner_order, 2), (border_order, 1)):
            for h in cand.tolist():
                if left < gain or (gain == 1 and left != 1):
                    break
                f = face_of[h]
                g = face_of[twin[h]] if gain == 2 else f
                if used[f] or used[g] or (restricted and room[int(labels[f])] < gain):
                    continue
                used[f] = used[g] = True
                splits.append((h, int(twin[h]) if gain == 2 else -1))
                left -= gain
                if room is not None:
                    room[int(labels[f])] -= gain
    if not splits:
        return vertices, faces, labels, none
    faces = faces.copy()
    new_faces, new_labels, mids = [faces], [labels], []
    for h, t in splits:
        m = n + len(mids)
        mids.append((a[h], b[h]))
        for half in (h, t):
            if half < 0:
                continue
            f, k = face_of[half], half % 3
            u, v, w = faces[f, k], faces[f, (k + 1) % 3], faces[f, (k + 2) % 3]
            faces[f] = (u, m, w)                                   # (u, v, w) split on uv
            new_faces.append(np.array([[m, v, w]]))
            new_labels.append(labels[f:f + 1])
    mid_of = np.asarray(mids, np.int64)
    vertices = np.concatenate([vertices, vertices[mid_of].mean(axis=1)])
    return vertices, np.concatenate(new_faces), np.concatenate(new_labels), mid_of

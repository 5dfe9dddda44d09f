"""Hole filling: every border loop of an edge-manifold mesh closed with new faces.

A planar loop is ear-clipped in its own plane (no diagonal may repeat an existing edge); a loop
that is not planar, too long, or that ear clipping cannot finish gets a fan around one new
vertex at its centroid. New faces take the most common label of the faces around the loop.
(trimesh fills only 3- and 4-edge holes.)
"""

from __future__ import annotations

import numpy as np

from ..core.mesh import MeshData
from ..geometry import derived
from ..geometry.topology import edge_table


def boundary_loops(faces: np.ndarray, table: tuple | None = None
                   ) -> list[tuple[list[int], list[int]]]:
    """Border loops, each as (vertices in fill order, the faces along it).

    "Fill order" runs opposite to the faces' own border edges, so a triangle (v[i], v[i+1], x)
    is wound like its neighbours. Expects an edge-manifold mesh; where a vertex still starts
    two border edges, the loop takes the first unused one. ``table``: ``edge_table(faces)``
    when the caller has it (``geometry.derived``).
    """
    _, face_edge, counts = table if table is not None else edge_table(faces)
    slot = np.flatnonzero(counts[face_edge.ravel()] == 1)
    if len(slot) == 0:
        return []
    f, k = slot // 3, slot % 3
    start = faces[f, (k + 1) % 3]  # border edge a -> b is filled as b -> a
    end = faces[f, k]
    by_start: dict[int, list[int]] = {}
    for i, s in enumerate(start.tolist()):
        by_start.setdefault(s, []).append(i)
    used = np.zeros(len(slot), bool)
    loops = []
    end_l, start_l, f_l = end.tolist(), start.tolist(), f.tolist()
    for i in range(len(slot)):
        if used[i]:
            continue
        verts, owners, cur, closed = [], [], i, False
        while cur is not None and not used[cur]:
            used[cur] = True
            verts.append(start_l[cur])
            owners.append(f_l[cur])
            if end_l[cur] == verts[0]:
                closed = True
                break
            cur = next((j for j in by_start.get(end_l[cur], ()) if not used[j]), None)
        if closed:  # an open chain means the winding flips along the border: leave it
            loops.extend(_simple_loops(verts, owners))
    return loops


def _simple_loops(verts: list[int], owners: list[int]) -> list[tuple[list[int], list[int]]]:
    """Cut a closed walk that passes a vertex twice (a figure eight) into simple loops."""
    out = []
    stack_v: list[int] = []
    stack_f: list[int] = []
    where: dict[int, int] = {}
    for v, f in zip(verts + [verts[0]], owners + [-1]):
        if v in where:
            k = where[v]
            loop_v, loop_f = stack_v[k:], stack_f[k:]
            del stack_v[k:], stack_f[k:]
            for u in loop_v:
                where.pop(u, None)
            if len(loop_v) >= 3:
                out.append((loop_v, loop_f))
        where[v] = len(stack_v)
        stack_v.append(v)
        stack_f.append(f)
    return out


def fill_holes(mesh: MeshData, max_ear_vertices: int = 256) -> tuple[MeshData, int, int]:
    """Close every border loop; returns (mesh, loops filled, faces added).

    A planar loop (and every loop of three) is ear-clipped in its own plane; a loop that is not
    planar, too long, or that ear clipping cannot finish without reusing an existing edge, gets
    a fan around one new vertex at its centroid. New faces take the most common label of the
    faces around the loop, so each part closes with its own label.
    """
    table = derived.edge_table(mesh)
    loops = boundary_loops(mesh.faces, table)
    if not loops:
        return mesh, 0, 0
    edges, _, _ = table
    n = mesh.n_vertices
    existing = np.sort(edges[:, 0] * n + edges[:, 1])
    new_faces, new_labels, centres, centre_src = [], [], [], []
    for verts, owners in loops:
        loop = np.asarray(verts, np.int64)
        label = int(np.bincount(mesh.face_labels[owners].astype(np.int64) -
                                int(mesh.face_labels.min())).argmax()) + int(mesh.face_labels.min())
        tris = None
        if len(loop) <= max_ear_vertices and len(np.unique(loop)) == len(loop):
            tris = _ear_clip_loop(mesh.vertices[loop], loop, existing, n)
        if tris is None:
            c = n + len(centres)
            centres.append(mesh.vertices[loop].mean(axis=0))
            centre_src.append(loop)
            tris = np.stack([loop, np.roll(loop, -1), np.full(len(loop), c)], axis=1)
        new_faces.append(tris)
        new_labels.append(np.full(len(tris), label, np.int32))
    faces = np.vstack([mesh.faces, *new_faces])
    labels = np.concatenate([mesh.face_labels, *new_labels])
    out = MeshData(np.vstack([mesh.vertices, *centres]) if centres else mesh.vertices, faces,
                   labels, _grow_mean(mesh.uv, centre_src), _grow_mean(mesh.vertex_colors, centre_src),
                   _grow_mean(mesh.vertex_normals, centre_src))
    return out, len(loops), int(sum(len(t) for t in new_faces))


def _grow_mean(attr: np.ndarray | None, sources: list[np.ndarray]) -> np.ndarray | None:
    """Append, per new vertex, the mean of an attribute over its source vertices."""
    if attr is None or not sources:
        return attr
    arr = np.asarray(attr)
    rows = [arr[s].astype(np.float64).mean(axis=0) for s in sources]
    return np.concatenate([arr, np.asarray(rows).astype(arr.dtype)])


def _ear_clip_loop(points: np.ndarray, loop: np.ndarray, existing: np.ndarray,
                   n_vertices: int) -> np.ndarray | None:
    """Ear clipping of a loop projected on its Newell plane; None if not planar or stuck."""
    m = len(loop)
    if m == 3:
        return loop[None, :].copy()
    centre = points.mean(axis=0)
    rel = points - centre
    normal = np.cross(rel, np.roll(rel, -1, axis=0)).sum(axis=0)
    size = float(np.linalg.norm(rel, axis=1).max())
    length = float(np.linalg.norm(normal))
    if length <= 1e-12 * max(size, 1e-300) ** 2:
        return None
    normal /= length
    if float(np.abs(rel @ normal).max()) > 0.2 * size:
        return None  # not planar enough: a flat triangulation would cut through the part
    u = np.cross(normal, [1.0, 0.0, 0.0] if abs(normal[0]) < 0.9 else [0.0, 1.0, 0.0])
    u /= np.linalg.norm(u)
    w = np.cross(normal, u)
    p2 = np.stack([rel @ u, rel @ w], axis=1)  # the loop is counter-clockwise in (u, w)
    idx = np.arange(m)
    tris = []
    while len(idx) > 3:
        ear = _find_ear(p2[idx], loop[idx], existing, n_vertices)
        if ear is None:
            return None
        j = len(idx)
        tris.append(loop[idx[[(ear - 1) % j, ear, (ear + 1) % j]]])
        idx = np.delete(idx, ear)
    tris.append(loop[idx])
    return np.asarray(tris, np.int64)


def _find_ear(p: np.ndarray, ids: np.ndarray, existing: np.ndarray, n: int) -> int | None:
    """Index of a convex vertex whose triangle holds no other loop vertex and whose diagonal
    is not already a mesh edge; the best-shaped such ear (largest smallest angle proxy)."""
    prev, nxt = np.roll(p, 1, axis=0), np.roll(p, -1, axis=0)
    e1, e2 = p - prev, nxt - p
    cross = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    scale = np.linalg.norm(e1, axis=1) * np.linalg.norm(e2, axis=1)
    cand = np.flatnonzero(cross > 1e-12 * np.maximum(scale, 1e-300))
    if len(cand) == 0:
        return None
    a, b, c = prev[cand], p[cand], nxt[cand]
    inside = np.ones((len(cand), len(p)), bool)
    for s, t in ((a, b), (b, c), (c, a)):  # on the left of (or on) every edge: inside
        d = t - s
        rel = p[None, :, :] - s[:, None, :]
        inside &= (d[:, None, 0] * rel[..., 1] - d[:, None, 1] * rel[..., 0]) >= 0
    j = len(p)
    inside[np.arange(len(cand)), cand] = False
    inside[np.arange(len(cand)), (cand - 1) % j] = False
    inside[np.arange(len(cand)), (cand + 1) % j] = False
    ok = ~inside.any(axis=1)
    lo, hi = np.minimum(ids[(cand - 1) % j], ids[(cand + 1) % j]), np.maximum(
        ids[(cand - 1) % j], ids[(cand + 1) % j])
    key = lo * n + hi
    pos = np.clip(np.searchsorted(existing, key), 0, max(len(existing) - 1, 0))
    if len(existing):
        ok &= existing[pos] != key
    if not ok.any():
        return None
    quality = cross[cand] / np.maximum(scale[cand], 1e-300)  # sine of the ear's angle
    best = np.flatnonzero(ok)[np.argmax(quality[ok])]
    return int(cand[best])

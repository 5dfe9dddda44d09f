"""Repair steps for a generated or scanned mesh: degenerate faces, floaters, slivers and
non-manifold edges and vertices.

Each function takes a ``MeshData`` and returns the repaired mesh (or a face mask) and what it
did; topology changes go through ``MeshData.subset_faces`` or remap ``face_labels``
explicitly, so per-face labels stay aligned. ``tasks.cleanup`` runs them in order.
"""

from __future__ import annotations

import numpy as np

from ..core.mesh import MeshData
from ..geometry import derived
from ..geometry.components import vertex_components
from ..geometry.derived import face_areas
from ..geometry.topology import sliver_shape


def degenerate_faces(mesh: MeshData, tolerance: float) -> np.ndarray:
    """Faces with a repeated vertex or (numerically) zero area."""
    f = mesh.faces
    repeated = (f[:, 0] == f[:, 1]) | (f[:, 1] == f[:, 2]) | (f[:, 0] == f[:, 2])
    lo, hi = mesh.bounds()
    diag = float(np.linalg.norm(hi - lo))
    eps = max(tolerance * diag, 1e-12 * diag) ** 2
    return repeated | (face_areas(mesh) <= eps)


def floater_faces(mesh: MeshData, min_share: float,
                  imported_min_share: float | None = None) -> tuple[np.ndarray, int, int]:
    """(faces to drop, components kept, components dropped) by area share.

    ``imported_min_share`` (given for imported meshes) replaces ``min_share``: there every
    component is a modelled piece, and only the tiny ones are debris.
    """
    count, comp = vertex_components(mesh)
    area = np.bincount(comp, weights=face_areas(mesh), minlength=count)
    total = float(area.sum())
    share = area / total if total > 0 else np.ones(count)
    small = share < (min_share if imported_min_share is None else imported_min_share)
    small[int(np.argmax(area))] = False
    return small[comp], int(count - small.sum()), int(small.sum())


def _sliver_shape(mesh: MeshData) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per face: edge lengths (M, 3) (edge k runs corner k -> k + 1), index of the longest
    and shortest edge, and height over the longest edge."""
    return sliver_shape(mesh.vertices, mesh.faces)


def sliver_faces(mesh: MeshData, ratio: float) -> np.ndarray:
    """Faces whose height over their longest edge is under ``ratio`` (needles and caps)."""
    lengths, _, _, height = _sliver_shape(mesh)
    top = lengths.max(axis=1)
    return (top > 0) & (height < ratio * top)


def collapse_needles(mesh: MeshData, ratio: float, needle_frac: float = 0.1,
                     passes: int = 3) -> tuple[MeshData, int]:
    """Collapse the short edge of every needle sliver (shortest edge under ``needle_frac`` of
    the longest) to its midpoint. Each pass collapses a matching (no vertex twice), so chains
    of short edges never snowball; faces left with a repeated vertex are dropped."""
    collapsed = 0
    for _ in range(passes):
        lengths, _, shortest, height = _sliver_shape(mesh)
        top = lengths.max(axis=1)
        short = lengths[np.arange(mesh.n_faces), shortest]
        needle = (top > 0) & (height < ratio * top) & (short < needle_frac * top)
        if not needle.any():
            break
        f = np.flatnonzero(needle)
        a = mesh.faces[f, shortest[f]]
        b = mesh.faces[f, (shortest[f] + 1) % 3]
        pairs = np.unique(np.stack([np.minimum(a, b), np.maximum(a, b)], 1), axis=0)
        uses = np.bincount(pairs.ravel(), minlength=mesh.n_vertices)
        pairs = pairs[(uses[pairs] == 1).all(axis=1)]
        if len(pairs) == 0:
            break
        remap = np.arange(mesh.n_vertices)
        remap[pairs[:, 1]] = pairs[:, 0]
        verts = mesh.vertices.copy()
        verts[pairs[:, 0]] = (verts[pairs[:, 0]] + verts[pairs[:, 1]]) / 2.0
        faces = remap[mesh.faces]
        keep = (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (
            faces[:, 0] != faces[:, 2])
        mesh = mesh.replace(vertices=verts, faces=faces).subset_faces(keep)
        collapsed += len(pairs)
    return mesh, collapsed


def flip_caps(mesh: MeshData, ratio: float, passes: int = 2) -> tuple[MeshData, int]:
    """Flip the long edge of every cap sliver (apex close to the long edge) with the face on
    the other side: (a, b, c) + (b, a, d) -> (a, d, c) + (d, b, c). Topology stays closed;
    a flip is skipped where the neighbour is a sliver too, the new edge exists already, the
    windings disagree or the new faces would turn against the neighbour's normal."""
    flipped = 0
    for _ in range(passes):
        sliver = sliver_faces(mesh, ratio)
        if not sliver.any():
            break
        _, longest, _, _ = _sliver_shape(mesh)
        edges, face_edge, _ = derived.edge_table(mesh)
        pairs, e = derived.manifold_pairs(mesh)
        other = np.full((len(edges), 2), -1, np.int64)
        other[e] = pairs
        f = np.flatnonzero(sliver)
        k = longest[f]
        ends = other[face_edge[f, k]]
        g = np.where(ends[:, 0] == f, ends[:, 1], ends[:, 0])
        ok = (g >= 0) & (ends[:, 1] >= 0)
        f, k, g = f[ok], k[ok], g[ok]
        ok = ~sliver[g]
        f, k, g = f[ok], k[ok], g[ok]
        a, b, c = (mesh.faces[f, (k + j) % 3] for j in range(3))
        gf = mesh.faces[g]
        d = gf.sum(axis=1) - a - b
        # g must run b -> a (consistent winding) for the quad a, d, b, c
        gb = np.argmax(gf == b[:, None], axis=1)
        ok = (gf[np.arange(len(g)), (gb + 1) % 3] == a) & (c != d)
        n = mesh.n_vertices
        existing = np.sort(edges[:, 0] * n + edges[:, 1])
        new_key = np.minimum(c, d) * n + np.maximum(c, d)
        pos = np.clip(np.searchsorted(existing, new_key), 0, len(existing) - 1)
        ok &= existing[pos] != new_key
        v = mesh.vertices
        ng = np.cross(v[gf[:, 1]] - v[gf[:, 0]], v[gf[:, 2]] - v[gf[:, 0]])
        n1 = np.cross(v[d] - v[a], v[c] - v[a])
        n2 = np.cross(v[b] - v[d], v[c] - v[d])
        ok &= (np.einsum("ij,ij->i", n1, ng) > 0) & (np.einsum("ij,ij->i", n2, ng) > 0)
        # independent flips only: no face in two of them
        both = np.concatenate([f[ok], g[ok]])
        once = np.bincount(both, minlength=mesh.n_faces)[both] == 1
        sel = np.flatnonzero(ok)[once[: ok.sum()] & once[ok.sum():]]
        if len(sel) == 0:
            break
        faces = mesh.faces.copy()
        faces[f[sel]] = np.stack([a[sel], d[sel], c[sel]], axis=1)
        faces[g[sel]] = np.stack([d[sel], b[sel], c[sel]], axis=1)
        mesh = mesh.replace(faces=faces)
        flipped += len(sel)
    return mesh, flipped


def remove_nonmanifold_edges(mesh: MeshData) -> tuple[MeshData, int, int]:
    """Keep the two largest faces on every edge used by more than two faces, drop the rest.

    Returns the mesh, the number of non-manifold edges and the number of faces dropped. A fin
    or a third sheet along the edge loses the row of faces on it and is then attached only at
    vertices, which ``split_nonmanifold_vertices`` separates.
    """
    if mesh.n_faces == 0:
        return mesh, 0, 0
    _, face_edge, counts = derived.edge_table(mesh)
    flat = face_edge.ravel()
    slots = np.flatnonzero(counts[flat] > 2)
    n_edges = int((counts > 2).sum())
    if len(slots) == 0:
        return mesh, 0, 0
    area = face_areas(mesh)
    owner = slots // 3
    order = np.lexsort((owner, -area[owner], flat[slots]))
    edge_sorted = flat[slots][order]
    start = np.searchsorted(edge_sorted, edge_sorted, side="left")
    rank = np.arange(len(order)) - start
    drop = np.zeros(mesh.n_faces, bool)
    drop[owner[order][rank >= 2]] = True
    return mesh.subset_faces(~drop), n_edges, int(drop.sum())


def split_nonmanifold_vertices(mesh: MeshData) -> tuple[MeshData, int]:
    """Give every fan of faces around a vertex its own copy of the vertex (bow-ties apart).

    Returns the mesh and the number of vertices that were non-manifold. Vertex attributes are
    copied to the new vertices; faces keep their order, so labels need no remapping.
    """
    if mesh.n_faces == 0:
        return mesh, 0
    fan, fan_vertex = derived.vertex_fans(mesh)
    fans_per_vertex = np.bincount(fan_vertex, minlength=mesh.n_vertices)
    n_bad = int((fans_per_vertex > 1).sum())
    if n_bad == 0:
        return mesh, 0
    order = np.lexsort((np.arange(len(fan_vertex)), fan_vertex))
    first = np.ones(len(order), bool)
    first[1:] = fan_vertex[order][1:] != fan_vertex[order][:-1]
    extra = order[~first]
    new_id = fan_vertex.copy()
    new_id[extra] = mesh.n_vertices + np.arange(len(extra))
    src = fan_vertex[extra]
    grow = lambda a: None if a is None else np.concatenate([a, np.asarray(a)[src]])
    out = MeshData(grow(mesh.vertices), new_id[fan], mesh.face_labels, grow(mesh.uv),
                   grow(mesh.vertex_colors), grow(mesh.vertex_normals))
    # the fans are unchanged, each now on a vertex of its own: the metrics' part report asks
    # for them again (a second pass over a dense mesh otherwise)
    out.derived("vertex_fans", lambda: (fan, new_id), ("faces",))
    return out, n_bad

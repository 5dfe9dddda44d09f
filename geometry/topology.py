"""Mesh topology: edges, face pairs, vertex fans, face graphs, as linear-time numba kernels.

Cleanup and part segmentation ask the same few questions of a ~1M-face mesh over and over:
which faces share each edge, which corners of a vertex form one fan, each face's area and
normal. In numpy these are sorts (``np.unique`` over 3M edge keys), 3M-node graph searches and
(M, 3, 3) gathers, each 0.1-0.6 s at a million faces; as single linear passes they take a few
tens of milliseconds. The results are exactly those of the numpy formulations they replace
(same edge order, same fan numbering), which ``tests/geometry/test_topology.py`` checks
against those formulations.

The kernels live in ``_topology_numba`` (imported on first use, compiled once and cached on
disk with ``cache=True``; ``assetfactory warmup`` compiles them at install time).
"""

from __future__ import annotations

import numpy as np


def kernels() -> dict:
    """The numba kernels of ``_topology_numba``, imported on first use (Python's import lock
    makes a first use from two threads safe)."""
    from . import _topology_numba

    return vars(_topology_numba)


def _ints(faces: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(faces, np.int64).reshape(-1, 3)


def _floats(vertices: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(vertices, np.float64)


def edge_table(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Undirected edges of a triangle list.

    Returns ``(edges (E, 2) sorted vertex pairs, face_edge (M, 3), counts (E,))`` where
    ``face_edge[f, k]`` is the edge from corner ``k`` to corner ``k + 1`` of face ``f`` and
    ``counts`` is how many faces use each edge (1: border, 2: manifold, >2: non-manifold).
    Edges are ordered by (low, high) vertex id.
    """
    faces = _ints(faces)
    if len(faces) == 0:
        return np.zeros((0, 2), np.int64), np.zeros((0, 3), np.int64), np.zeros(0, np.int64)
    return kernels()["edge_table"](faces, int(faces.max()) + 1)


def manifold_slots(face_edge: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(slot pairs (P, 2), edge (P,)): the two slots (3 * face + corner the edge starts at) of
    every edge exactly two faces use, in edge order, the lower slot first."""
    return kernels()["manifold_slots"](_ints(face_edge), np.ascontiguousarray(counts, np.int64))


def manifold_pairs(face_edge: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of faces sharing an edge that exactly two faces use, and that edge's index."""
    slots, edge = manifold_slots(face_edge, counts)
    return slots // 3, edge


def first_use(faces: np.ndarray, n_vertices: int) -> tuple[np.ndarray, np.ndarray]:
    return kernels()["first_use"](_ints(faces), int(n_vertices))


def edge_slots(face_edge: np.ndarray, n_edges: int) -> tuple[np.ndarray, np.ndarray]:
    return kernels()["edge_slots"](_ints(face_edge), int(n_edges))


def patch_volumes(vertices: np.ndarray, faces: np.ndarray, patch: np.ndarray,
                  n_patch: int) -> np.ndarray:
    return kernels()["patch_volumes"](_floats(vertices), _ints(faces),
                                      np.ascontiguousarray(patch, np.int64), int(n_patch))


def vertex_fans(faces: np.ndarray, n_vertices: int | None = None, table: tuple | None = None,
                pairs: tuple | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Group each vertex's face corners into fans (corners joined across manifold edges).

    A manifold vertex has one fan; a bow-tie (two cones touching at a point) or a vertex where
    sheets meet has several. Returns ``(fan id per corner (M, 3), vertex of each fan)``.
    ``n_vertices`` is accepted for symmetry with the other helpers; it is not needed.
    ``table``: ``edge_table(faces)`` when the caller has it already (``geometry.derived``);
    ``pairs``: likewise ``manifold_pairs`` of that table.
    """
    faces = _ints(faces)
    if len(faces) == 0:
        return np.zeros((0, 3), np.int64), np.zeros(0, np.int64)
    edges, face_edge, counts = table if table is not None else edge_table(faces)
    pair, edge = pairs if pairs is not None else manifold_pairs(face_edge, counts)
    return kernels()["vertex_fans"](faces, pair, edges, edge)


def sliver_shape(vertices: np.ndarray, faces: np.ndarray):
    return kernels()["sliver_shape"](_floats(vertices), _ints(faces))


def winding_patches(m: int, pairs: np.ndarray, disagree: np.ndarray
                    ) -> tuple[int, np.ndarray, np.ndarray]:
    return kernels()["winding_patches"](int(m), np.ascontiguousarray(pairs, np.int64),
                                        np.ascontiguousarray(disagree, np.bool_))


def face_adjacency(m: int, pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ptr, neighbours): the face graph of ``pairs`` in CSR form."""
    ptr, nbr, _ = kernels()["face_adjacency"](int(m), np.ascontiguousarray(pairs, np.int64))
    return ptr, nbr


def nearest_seed(ptr: np.ndarray, nbr: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    return kernels()["nearest_seed"](ptr, nbr, np.ascontiguousarray(seeds, np.int64))


def smooth(ptr: np.ndarray, nbr: np.ndarray, x: np.ndarray, steps: int) -> np.ndarray:
    return kernels()["smooth"](ptr, nbr, np.ascontiguousarray(x, np.float64), int(steps))


def row_keys(rows: np.ndarray) -> np.ndarray:
    """One sortable scalar per row of non-negative ints (int64 when it fits, else bytes):
    ``np.unique`` of it is a 1-d sort, several times faster than ``np.unique(axis=0)``."""
    rows = np.ascontiguousarray(rows, np.int64)
    base = int(rows.max()) + 1 if rows.size else 1
    if base ** rows.shape[1] < 2**62:
        key = np.zeros(len(rows), np.int64)
        for k in range(rows.shape[1]):
            key = key * base + rows[:, k]
        return key
    return rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel()


def edge_face_pairs(faces: np.ndarray, table: tuple | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of faces sharing an (undirected) edge, and that edge's two vertex ids.

    An edge used by k faces yields k - 1 pairs chaining them (enough for connectivity).
    Returns ``(pairs (P, 2), edges (P, 2))``.
    """
    faces = np.asarray(faces, np.int64)
    if len(faces) == 0:
        return np.zeros((0, 2), np.int64), np.zeros((0, 2), np.int64)
    edges, face_edge, _ = table if table is not None else edge_table(faces)
    _, order = edge_slots(face_edge, len(edges))  # slots grouped by edge
    key = face_edge.ravel()[order]
    same = np.flatnonzero(key[1:] == key[:-1])
    owner = order // 3
    pairs = np.stack([owner[same], owner[same + 1]], axis=1)
    keep = pairs[:, 0] != pairs[:, 1]
    return pairs[keep], edges[key[same]][keep]


def edge_keys(faces: np.ndarray) -> np.ndarray:
    """One int64 per corner edge (k -> k + 1) of every face: low * n + high."""
    e = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    e = np.sort(e, axis=1)
    n = int(faces.max()) + 1 if len(faces) else 1
    return e[:, 0] * n + e[:, 1]


def compact(faces: np.ndarray, n_vertices: int) -> tuple[np.ndarray, np.ndarray]:
    """(used vertex indices, faces re-indexed into them)."""
    mask = np.zeros(n_vertices, bool)
    mask[np.asarray(faces).ravel()] = True  # O(n), where np.unique would sort
    used = np.flatnonzero(mask)
    remap = np.full(n_vertices, -1, np.int64)
    remap[used] = np.arange(len(used))
    return used, remap[faces]


def drop_collapsed(faces: np.ndarray) -> np.ndarray:
    """The faces whose three corners are distinct."""
    f = np.asarray(faces, np.int64).reshape(-1, 3)
    ok = (f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2])
    return f[ok]


def duplicate_faces(faces: np.ndarray) -> np.ndarray:
    """True for every face that repeats an earlier face's vertex set (either winding)."""
    if len(faces) == 0:
        return np.zeros(0, bool)
    _, first = np.unique(row_keys(np.sort(faces, axis=1)), return_index=True)
    dup = np.ones(len(faces), bool)
    dup[first] = False
    return dup


def pillow_faces(faces: np.ndarray) -> np.ndarray:
    """Mask of faces whose three corners another face also has (either winding): two
    back-to-back triangles hanging off one edge, which makes that edge non-manifold and
    encloses nothing (meshoptimizer's collapse leaves one now and then)."""
    if len(faces) == 0:
        return np.zeros(0, bool)
    key = row_keys(np.sort(faces, axis=1))
    _, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    return counts[inverse.reshape(-1)] > 1

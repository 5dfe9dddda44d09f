"""numba kernels for the mesh topology and geometry every repair step asks for.

Cleanup and part segmentation ask the same few questions of a ~1M-face mesh over and over:
which faces share each edge, which corners of a vertex form one fan, each face's area and
normal. In numpy these are sorts (``np.unique`` over 3M edge keys), 3M-node graph searches and
(M, 3, 3) gathers, each 0.1-0.6 s at a million faces; as single linear passes they take a few
tens of milliseconds. The results are exactly those of the numpy formulations they replace
(same edge order, same fan numbering), which ``tests/tasks/test_kernels.py`` checks against
those formulations.

The kernels live in ``_kernels_numba`` (imported on first use, compiled once and cached on
disk with ``cache=True``), like the simplify stage's.
"""

from __future__ import annotations

import numpy as np


def kernels() -> dict:
    """The numba kernels of ``_kernels_numba``, imported on first use (Python's import lock
    makes a first use from two threads safe)."""
    from . import _kernels_numba

    return vars(_kernels_numba)


def _ints(faces: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(faces, np.int64).reshape(-1, 3)


def _floats(vertices: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(vertices, np.float64)


def edge_table(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    faces = _ints(faces)
    if len(faces) == 0:
        return np.zeros((0, 2), np.int64), np.zeros((0, 3), np.int64), np.zeros(0, np.int64)
    return kernels()["edge_table"](faces, int(faces.max()) + 1)


def manifold_slots(face_edge: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(slot pairs (P, 2), edge (P,)): the two slots (3 * face + corner the edge starts at) of
    every edge exactly two faces use, in edge order, the lower slot first."""
    return kernels()["manifold_slots"](_ints(face_edge), np.ascontiguousarray(counts, np.int64))


def manifold_pairs(face_edge: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


def vertex_fans(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    faces = _ints(faces)
    if len(faces) == 0:
        return np.zeros((0, 3), np.int64), np.zeros(0, np.int64)
    edges, face_edge, counts = edge_table(faces)
    pairs, edge = manifold_pairs(face_edge, counts)
    return kernels()["vertex_fans"](faces, pairs, edges, edge)


def face_areas(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    return kernels()["face_areas"](_floats(vertices), _ints(faces))


def face_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit geometric normals per face (zero for degenerate faces)."""
    return kernels()["face_normals"](_floats(vertices), _ints(faces))


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


def warm_up() -> float:
    """Compile the cleanup and simplify kernels into numba's on-disk cache (``make setup``
    runs this once, so the first asset in each worker does not pay ~10 s of compiling);
    returns the seconds it took."""
    import time

    import trimesh

    from ..core.mesh import MeshData
    from .cleanup import CleanupOptions, clean_mesh
    from .simplify import decimate

    t = time.perf_counter()
    s = trimesh.creation.icosphere(3)
    clean, _ = clean_mesh(MeshData(s.vertices, s.faces), CleanupOptions())
    decimate(clean, 200)
    y = clean.vertices[clean.faces].mean(axis=1)[:, 1]  # two parts: the per-part kernels
    decimate(clean.replace(face_labels=(y > 0).astype(np.int32)), 200)
    return time.perf_counter() - t


if __name__ == "__main__":
    print(f"numba kernels compiled and cached in {warm_up():.1f} s")

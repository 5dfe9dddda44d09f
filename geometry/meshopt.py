"""meshoptimizer's quadric half-edge collapse, including the vertex-locked variant through our
own ctypes binding.

Why our own binding: the Python wrapper of meshoptimizer 0.2.30a0 declares no signature for
``meshopt_simplifyWithAttributes``, so its size_t arguments past the sixth go on the stack as
32-bit ints and the call crashes (segfault) or fails to convert the float ``target_error``.
"""

from __future__ import annotations

import ctypes

import numpy as np

from .topology import compact, drop_collapsed


def meshopt_collapse(vertices: np.ndarray, faces: np.ndarray, target_tris: int,
                     lock_border: bool, lock: np.ndarray | None = None) -> np.ndarray:
    """meshoptimizer's quadric half-edge collapse to ``target_tris``; returns the kept faces
    (indices into ``vertices``). Vertices at equal positions but different indices are seams;
    vertices where ``lock`` is true are never collapsed away."""
    import meshoptimizer as mo

    if len(faces) and 3 * len(faces) < len(vertices):
        # meshoptimizer's set-up is linear in the vertex count: a few faces over a big vertex
        # buffer (a re-run from a coarse pass) pay for the whole buffer unless compacted
        used, local = compact(faces, len(vertices))
        kept = meshopt_collapse(vertices[used], local, target_tris, lock_border,
                                None if lock is None else lock[used])
        return used[kept]
    idx = np.ascontiguousarray(faces, np.uint32).ravel()
    out = np.zeros_like(idx)
    pos = np.ascontiguousarray(vertices, np.float32)
    options = mo.SIMPLIFY_LOCK_BORDER if lock_border else 0
    if lock is None:
        count = mo.simplify(out, idx, pos, target_index_count=3 * int(target_tris),
                            target_error=1.0, options=options)
    else:
        count = simplify_locked(out, idx, pos, lock, 3 * int(target_tris), options)
    return drop_collapsed(out[:count].astype(np.int64).reshape(-1, 3))


_LOCKED_FN = None


def simplify_locked(out: np.ndarray, idx: np.ndarray, pos: np.ndarray, lock: np.ndarray,
                    target_index_count: int, options: int) -> int:
    """meshopt_simplifyWithAttributes with a vertex lock and no attributes (see the module
    docstring for why it is called through our own ctypes handle)."""
    global _LOCKED_FN
    if _LOCKED_FN is None:
        from meshoptimizer._loader import find_library

        fn = ctypes.CDLL(find_library()).meshopt_simplifyWithAttributes
        u32p, f32p = ctypes.POINTER(ctypes.c_uint), ctypes.POINTER(ctypes.c_float)
        size = ctypes.c_size_t
        fn.argtypes = [u32p, u32p, size, f32p, size, size, f32p, size, f32p, size,
                       ctypes.POINTER(ctypes.c_ubyte), size, ctypes.c_float, ctypes.c_uint, f32p]
        fn.restype = size
        _LOCKED_FN = fn
    u32p, f32p = ctypes.POINTER(ctypes.c_uint), ctypes.POINTER(ctypes.c_float)
    attrs = np.zeros(len(pos), np.float32)
    weights = np.zeros(1, np.float32)
    lock8 = np.ascontiguousarray(lock, np.uint8)
    return int(_LOCKED_FN(
        out.ctypes.data_as(u32p), idx.ctypes.data_as(u32p), len(idx), pos.ctypes.data_as(f32p),
        len(pos), 12, attrs.ctypes.data_as(f32p), 4, weights.ctypes.data_as(f32p), 1,
        lock8.ctypes.data_as(ctypes.POINTER(ctypes.c_ubyte)), int(target_index_count), 1.0,
        int(options), None))

"""Collision hulls for physics engines: convex pieces of a mesh."""

from __future__ import annotations

import numpy as np

from ..core.mesh import MeshData
from .decimate import decimate

#: Hulls are taken from a copy of about this many faces: a hull of a coarse proxy has few
#: vertices (what physics engines want), and CoACD's time grows with the faces.
PROXY_TRIS = 3000


def _hull(points: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    import trimesh

    if len(points) < 4:
        return None
    try:
        h = trimesh.convex.convex_hull(points)
    except Exception:  # noqa: BLE001 - qhull on flat/degenerate input: no hull for that piece
        return None
    return (np.asarray(h.vertices), np.asarray(h.faces)) if len(h.faces) >= 4 else None


def collision_hulls(mesh: MeshData, max_hulls: int, method: str = "auto") -> MeshData:
    """Convex hulls for physics, from a copy of at most PROXY_TRIS faces: one per part when
    there are 2..max_hulls parts (or ``method`` is "parts"), else CoACD's approximate convex
    decomposition; hull index in ``face_labels``."""
    parts = np.unique(mesh.face_labels)
    small = mesh if mesh.n_faces <= PROXY_TRIS else decimate(mesh, PROXY_TRIS,
                                                             method="meshoptimizer")
    hulls = []
    if method == "parts" or (method == "auto" and 1 < len(parts) <= max_hulls):
        for p in parts[:max_hulls]:
            h = _hull(small.vertices[np.unique(small.faces[small.face_labels == p])])
            if h is not None:
                hulls.append(h)
    else:
        import coacd

        coacd.set_log_level("error")
        pieces = coacd.run_coacd(coacd.Mesh(small.vertices, small.faces), threshold=0.08,
                                 max_convex_hull=max_hulls, preprocess_mode="off",
                                 resolution=1000, mcts_iterations=60, mcts_max_depth=2,
                                 mcts_nodes=10, seed=0)
        hulls = [(np.asarray(v, np.float64), np.asarray(f, np.int64)) for v, f in pieces]
    if not hulls:
        hulls = [h for h in [_hull(small.vertices)] if h is not None]
    return MeshData.concatenate(MeshData(v, f, np.full(len(f), i, np.int32))
                                for i, (v, f) in enumerate(hulls))

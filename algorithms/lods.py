"""Levels of detail over one mesh's own vertex buffers."""

from __future__ import annotations

import numpy as np

from ..core.mesh import MeshData
from ..geometry.meshopt import meshopt_collapse
from ..geometry.topology import pillow_faces
from ..geometry.weld import weld_ids


def textured_lods(mesh: MeshData, counts: list[int]) -> tuple[np.ndarray, ...]:
    """LOD triangle lists over the final (UV-mapped, textured) mesh's own vertices.

    meshoptimizer's collapse keeps vertices where they are and only re-points corners, and it
    collapses a UV seam (vertices split at equal positions) only along itself, on both sides
    at once; so each LOD reuses the main mesh's positions, normals, UVs and tangents, and its
    atlas and materials, and costs the file only its index buffer. Each level chains from the
    previous one."""
    wid = weld_ids(mesh.vertices)
    out, prev = [], mesh.faces
    for n in counts:
        faces = prev if len(prev) <= n else meshopt_collapse(mesh.vertices, prev, int(n), False)
        faces = faces[~pillow_faces(wid[faces])]
        out.append(faces)
        prev = faces
    return tuple(out)

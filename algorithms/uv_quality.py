"""UV quality: utilisation, charts, seams, stretch, texel density, overlaps.

Utilisation (UV area share of the square), charts (UV-connected components), seam length (3D
length of cut edges / sqrt(surface area)), area and angle stretch (area-weighted mean and p95; 1
is ideal), texel-density spread (coefficient of variation), overlaps (texels whose centre two
triangles cover, from an exact rasterisation at the texture resolution; must be 0) and whether
all UVs lie in 0-1.
"""

from __future__ import annotations

import math

import numpy as np

from ..core.mesh import MeshData
from ..geometry.components import vertex_labels
from ..geometry.raster import coverage_counts
from ..geometry.topology import edge_table
from ..geometry.weld import weld_ids


def uv_areas(uv: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Signed area of each face's UV triangle (positive = counter-clockwise)."""
    t = np.asarray(uv, np.float64)[faces]
    a, b = t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]
    return 0.5 * (a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0])


def uv_face_areas(mesh: MeshData) -> np.ndarray:
    """Signed area of each face in UV space (positive = counter-clockwise)."""
    return uv_areas(mesh.uv, mesh.faces)


def singular_values(mesh: MeshData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per face: the 3D -> UV Jacobian's singular values (s1 >= s2 >= 0) and the 3D area.

    Faces with no 3D area get s1 = s2 = nan.
    """
    p = mesh.vertices[mesh.faces]
    t = np.asarray(mesh.uv, np.float64)[mesh.faces]
    e1, e2 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
    n = np.cross(e1, e2)
    area = 0.5 * np.linalg.norm(n, axis=1)
    l1 = np.linalg.norm(e1, axis=1)
    ok = (area > 0) & (l1 > 0)
    x = e1 / np.where(ok, l1, 1.0)[:, None]
    y = np.cross(n, x)
    y /= np.maximum(np.linalg.norm(y, axis=1), 1e-300)[:, None]
    # triangle in its own plane: q0 = 0, q1 = (l1, 0), q2 = (e2.x, e2.y)
    q2x, q2y = np.einsum("ij,ij->i", e2, x), np.einsum("ij,ij->i", e2, y)
    d1, d2 = t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]
    l1s = np.where(ok, l1, 1.0)
    q2ys = np.where(ok & (q2y != 0), q2y, 1.0)
    # J = [d1 d2] @ inv([[l1, q2x], [0, q2y]])
    a = d1[:, 0] / l1s
    c = d1[:, 1] / l1s
    b = (d2[:, 0] - a * q2x) / q2ys
    d = (d2[:, 1] - c * q2x) / q2ys
    # singular values of [[a, b], [c, d]] in closed form
    e, f = (a + d) / 2, (a - d) / 2
    g, h = (c + b) / 2, (c - b) / 2
    q, r = np.hypot(e, h), np.hypot(f, g)
    s1, s2 = q + r, np.abs(q - r)
    s1 = np.where(ok, s1, np.nan)
    s2 = np.where(ok, s2, np.nan)
    return s1, s2, area


def _weighted_stats(values: np.ndarray, weights: np.ndarray) -> tuple[float, float]:
    """Area-weighted mean and 95th percentile over the finite values."""
    ok = np.isfinite(values) & (weights > 0)
    if not ok.any():
        return float("nan"), float("nan")
    v, w = values[ok], weights[ok]
    order = np.argsort(v)
    cum = np.cumsum(w[order])
    p95 = v[order][min(int(np.searchsorted(cum, 0.95 * cum[-1])), len(v) - 1)]
    return float(np.sum(v * w) / np.sum(w)), float(p95)


def chart_count(mesh: MeshData) -> int:
    """UV-connected components: faces sharing a (seam-split) vertex belong to one chart."""
    comp = vertex_labels(mesh.faces, mesh.n_vertices)[1]
    return len(np.unique(comp[np.unique(mesh.faces)]))


def _boundary_length(vertices: np.ndarray, faces: np.ndarray) -> float:
    """Total length of edges used by exactly one face."""
    edges, _, counts = edge_table(faces)
    once = edges[counts == 1]
    return float(np.linalg.norm(vertices[once[:, 0]] - vertices[once[:, 1]], axis=1).sum())


def seam_length(mesh: MeshData) -> float:
    """3D length of the UV seams: edges open in the split mesh but not in the mesh welded by
    position (each seam edge is open twice, once per side)."""
    wid = weld_ids(mesh.vertices)
    positions = np.zeros((int(wid.max()) + 1 if len(wid) else 0, 3))
    positions[wid] = mesh.vertices
    split = _boundary_length(mesh.vertices, mesh.faces)
    return max(0.0, (split - _boundary_length(positions, wid[mesh.faces])) / 2.0)


def uv_metrics(mesh: MeshData, resolution: int) -> dict:
    """The per-asset UV quality metrics (see the module docstring); ``mesh`` has UVs."""
    uv_area = np.abs(uv_face_areas(mesh))
    s1, s2, area = singular_values(mesh)
    total_3d, total_uv = float(area.sum()), float(uv_area.sum())
    scale2 = total_uv / total_3d if total_3d > 0 else float("nan")
    ratio = (s1 * s2) / scale2
    area_stretch = np.where(ratio > 0, np.maximum(ratio, 1.0 / np.where(ratio > 0, ratio, 1)),
                            np.inf)
    angle_stretch = np.where(s2 > 0, s1 / np.where(s2 > 0, s2, 1.0), np.inf)
    area_mean, area_p95 = _weighted_stats(area_stretch, area)
    angle_mean, angle_p95 = _weighted_stats(angle_stretch, area)
    density = np.sqrt(np.where(area > 0, uv_area / np.where(area > 0, area, 1.0), np.nan))
    ok = np.isfinite(density)
    mean = float(np.sum(density[ok] * area[ok]) / max(np.sum(area[ok]), 1e-300))
    var = float(np.sum((density[ok] - mean) ** 2 * area[ok]) / max(np.sum(area[ok]), 1e-300))
    counts = coverage_counts(mesh.uv, mesh.faces, resolution)
    texel = 1.0 / resolution
    r = lambda x: round(float(x), 4)
    return {
        "uv_utilization": r(total_uv),
        "uv_charts": chart_count(mesh),
        "uv_seam_length": r(seam_length(mesh) / math.sqrt(total_3d)) if total_3d > 0 else 0.0,
        "uv_stretch_area_mean": r(area_mean),
        "uv_stretch_area_p95": r(area_p95),
        "uv_stretch_angle_mean": r(angle_mean),
        "uv_stretch_angle_p95": r(angle_p95),
        "uv_texel_density_cv": r(math.sqrt(var) / mean) if mean > 0 else 0.0,
        "uv_overlaps": int(np.sum(counts > 1)),
        "uv_inside_01": bool(np.all((mesh.uv >= 0.0) & (mesh.uv <= 1.0))),
        "uv_degenerate_faces": int(np.sum(uv_area < 1e-3 * texel * texel)),
    }

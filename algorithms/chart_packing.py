"""Chart packing: ready-made UV charts placed into one square atlas without overlaps.

Why our own: xatlas cannot re-pack charts unwrapped in separate processes without overlaps (fed
the charts back as a UV mesh, it merged touching charts and placed some over others). Each chart
is turned to its minimum-area rectangle, rasterised by its actual shape on a coarse cell grid
and placed first-fit, as xatlas packs: overlap-free by construction.
"""

from __future__ import annotations

import math
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..core.stage import beside, stage_cpus
from ..geometry.components import vertex_labels
from .uv_quality import uv_areas as _uv_areas


@dataclass(frozen=True)
class Unwrap:
    """xatlas's answer for one mesh, already in the unit square."""

    vmapping: np.ndarray   # (N',) input vertex of each output vertex
    faces: np.ndarray      # (M, 3) same order as the input faces
    uv: np.ndarray         # (N', 2) float32 in [0, 1]
    charts: int
    utilization: float
    packed: bool = False   # laid out by pack_charts (each chart turned to its rectangle)


class PackSettings(Protocol):
    """What packing reads of ``tasks.uv.UVOptions``."""

    resolution: int  # texture size (px) the atlas is packed for
    padding: int     # texels kept free around each chart


def chart_ids(faces: np.ndarray, n_vertices: int) -> np.ndarray:
    """Chart of each vertex: UV-connected components (charts never share a split vertex)."""
    return vertex_labels(faces, n_vertices)[1]


def _min_area_rotation(points: np.ndarray) -> np.ndarray:
    """2x2 rotation that puts the points' minimum-area bounding rectangle on the axes, wider
    than tall (rotating calipers over the convex hull's edges, all edge angles at once)."""
    from scipy.spatial import ConvexHull, QhullError

    hull = points
    if len(points) > 3:  # three points are their own hull (any order gives the same edges)
        try:
            hull = points[ConvexHull(points).vertices]
        except (QhullError, ValueError):  # collinear or too few points: any rotation will do
            pass
    edges = np.roll(hull, -1, axis=0) - hull
    angles = np.unique(np.round(np.arctan2(edges[:, 1], edges[:, 0]) % (np.pi / 2), 9))
    if len(angles) == 0:
        return np.eye(2)
    c, s_ = np.cos(angles)[:, None], np.sin(angles)[:, None]
    x, y = hull[:, 0][None, :], hull[:, 1][None, :]
    ext = np.stack([np.ptp(x * c + y * s_, axis=1), np.ptp(y * c - x * s_, axis=1)], axis=1)
    k = int(np.argmin(ext[:, 0] * ext[:, 1]))  # the first of equal areas, as a scan keeps
    rot = np.array([[c[k, 0], s_[k, 0]], [-s_[k, 0], c[k, 0]]])
    if ext[k, 1] > ext[k, 0]:
        rot = np.array([[0.0, 1.0], [-1.0, 0.0]]) @ rot
    return rot


_PACK_GRID = 512  # most cells along a side of the packing raster


def _pack_grid(options: PackSettings) -> tuple[int, int, int]:
    """(cells per side, texels per cell, padding in cells) of the packing raster: cells no
    coarser than the padding where possible, at most ``_PACK_GRID`` per side (speed)."""
    texels = max(1, math.ceil(options.resolution / _PACK_GRID))
    if options.padding:
        texels = min(texels, options.padding) if options.padding >= texels else texels
    grid = options.resolution // texels
    return grid, texels, math.ceil(options.padding / texels)


def pack_charts(uv: np.ndarray, faces: np.ndarray, options: PackSettings,
                as_turned: np.ndarray | None = None, start: float | None = None) -> Unwrap:
    """Pack ready-made charts (UV-connected components, any common scale) into the unit square.

    Each chart is turned to its minimum-area bounding rectangle (tall side up), rasterised
    conservatively on a coarse cell grid (its actual shape, row by row, not its rectangle)
    and placed first-fit, lowest row then leftmost column, biggest charts first, with
    ``padding`` texels (rounded up to whole cells) between charts and from the border, as
    xatlas's own packer does. The common scale is searched (shrink until it fits, then
    bisection) for the tightest fit. Disjoint cells cannot overlap, so the packing is
    overlap-free by construction, whatever the charts' shapes. (xatlas's own packer, fed the
    charts back as a UV mesh, merged touching charts and placed some over others here.)

    ``as_turned``: per vertex, True where the vertex's chart comes from an earlier packing
    unchanged (already on its minimum-area rectangle, taller than wide): such a chart keeps
    its orientation instead of being measured again (a re-pack's charts are mostly these).
    ``start``: the scale (cells per unit of ``uv``) to try first, e.g. a re-pack's earlier
    one: the search steps up from there instead of walking from a guess (half the packings).
    """
    uv = np.asarray(uv, np.float64)
    faces = np.asarray(faces, np.int64)
    comp = chart_ids(faces, len(uv))
    charts = np.unique(comp[np.unique(faces)])
    remap = np.full(comp.max() + 1, -1, np.int64)
    remap[charts] = np.arange(len(charts))
    chart_of_v = remap[comp]
    order_v = np.argsort(chart_of_v, kind="stable")
    vb = np.searchsorted(chart_of_v[order_v], np.arange(len(charts) + 1))
    placed = np.array(uv, copy=True)
    sizes = np.zeros((len(charts), 2))
    for c in range(len(charts)):
        vids = order_v[vb[c]:vb[c + 1]]
        if as_turned is not None and as_turned[vids].all():
            q = uv[vids].copy()
        else:
            q = uv[vids] @ _min_area_rotation(uv[vids]).T
            q = np.stack([-q[:, 1], q[:, 0]], axis=1)  # turned 90 deg, taller than wide
        q -= q.min(axis=0)
        placed[vids] = q
        sizes[c] = q.max(axis=0)
    fchart = chart_of_v[faces[:, 0]]
    forder = np.argsort(fchart, kind="stable")
    fstart = np.searchsorted(fchart[forder], np.arange(len(charts) + 1))
    sorted_faces = np.ascontiguousarray(faces[forder])
    areas = np.abs(_uv_areas(placed, faces))
    chart_area = np.bincount(fchart, weights=areas, minlength=len(charts))
    order = np.lexsort((np.arange(len(charts)), -chart_area, -sizes[:, 1]))
    grid, texels, d = _pack_grid(options)
    from ._packing_numba import pack
    total = max(float(chart_area.sum()), 1e-300)

    eps = 1e-9  # every point strictly inside its cells, whatever the rounding

    def run(k: float):
        extents = np.floor(sizes * k + eps).astype(np.int64) + 1
        return pack(placed * k + eps, sorted_faces, fstart, order, extents, grid, d)

    ahead: dict[float, Future] = {}

    def attempt(k: float, then: float | None = None):
        """``run(k)``; with a second granted CPU, ``run(then)`` (the scale the search will
        probably try next) starts beside it. The search is the same either way."""
        pending = ahead.pop(k, None)
        for stale in ahead.values():  # a wrong guess: let it end (never two at once)
            stale.result()
        ahead.clear()
        if then is not None and stage_cpus() >= 2:
            ahead[then] = beside(lambda: run(then))
        return pending.result() if pending is not None else run(k)

    hi = min(grid / math.sqrt(total), (grid - 2 * d - 1) / max(float(sizes.max()), 1e-300))
    lo, best = 0.0, None
    # xatlas-like packings fill 0.4-0.6 of the square: start a little above, or at the scale
    # the caller says (a re-pack: the earlier packing's, which nearly always fits again)
    k = 0.8 * hi if start is None else min(float(start), hi)
    up = start is not None  # the likely direction: a re-pack's start fits, a guess does not
    for _ in range(80):  # 4% steps: down until it fits, or up until it does not
        corners, ok = attempt(k, k * 1.04 if up else k * 0.96)
        up = ok or best is not None
        if ok:
            lo, best = k, corners
            if k * 1.04 >= hi:
                break
            k *= 1.04
        else:
            hi = k
            if best is not None:
                break
            k *= 0.96
    for i in range(3):  # then bisect the last step (to 0.5%)
        mid = (lo + hi) / 2
        # the next midpoint if this one fits (the scale is meant to fill the square)
        corners, ok = attempt(mid, (mid + hi) / 2 if i < 2 else None)
        if ok:
            lo, best = mid, corners
        else:
            hi = mid
    out = (placed * lo + eps + best[chart_of_v]) * (texels / options.resolution)
    out[chart_of_v < 0] = 0.0  # vertices no face uses
    area = float(np.abs(_uv_areas(out, faces)).sum())
    return Unwrap(np.arange(len(uv)), faces, np.clip(out, 0.0, 1.0).astype(np.float32),
                  len(charts), area, packed=True)


def folded_faces(uv: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(M,) bool: faces whose UV winding is opposite to their chart's (area-weighted) majority.

    A folded triangle always lies over its neighbours in the chart, so it is an overlap
    whatever the atlas resolution; zero-area UV faces cover nothing and are not folded.
    """
    comp = chart_ids(faces, len(uv))
    signed = _uv_areas(np.asarray(uv, np.float64), faces)
    fchart = comp[faces[:, 0]]
    majority = np.bincount(fchart, weights=signed, minlength=comp.max() + 1)[fchart]
    return (signed * majority) < 0


def detach_faces(unwrap: Unwrap, mask: np.ndarray) -> Unwrap:
    """The unwrap with every face in ``mask`` cut out of its chart into a chart of its own
    (three fresh vertex copies each; the face keeps its UVs, so its shape is unchanged)."""
    idx = np.flatnonzero(mask)
    if len(idx) == 0:
        return unwrap
    n = len(unwrap.uv)
    corners = unwrap.faces[idx].ravel()
    faces = unwrap.faces.copy()
    faces[idx] = (n + np.arange(3 * len(idx))).reshape(-1, 3)
    return Unwrap(np.concatenate([unwrap.vmapping, unwrap.vmapping[corners]]), faces,
                  np.concatenate([unwrap.uv, unwrap.uv[corners]]), unwrap.charts + len(idx),
                  unwrap.utilization)


def without_overlaps(unwrap: Unwrap, options: PackSettings, rounds: int = 4) -> Unwrap:
    """The unwrap with no texel centre covered twice at ``options.resolution``.

    xatlas now and then folds a triangle over its neighbours or lets a chart's border run over
    itself; a texel there would get two surface points in the bake. Faces that are folded, or
    that cover a texel another face covers, are detached into charts of their own and the
    atlas is packed again (``pack_charts`` keeps distinct charts apart by construction, and a
    lone triangle cannot overlap itself). A re-pack changes the scale, so the check repeats
    (it converged in one or two rounds on the meshes tried).
    """
    from ..geometry.raster import overlapping_faces

    for _ in range(rounds):
        mask = folded_faces(unwrap.uv, unwrap.faces)
        mask |= overlapping_faces(unwrap.uv, unwrap.faces, options.resolution)
        if not mask.any():
            return unwrap
        cut = detach_faces(unwrap, mask)
        as_turned = None
        if unwrap.packed:  # the charts that lost no face keep their turn
            comp = chart_ids(unwrap.faces, len(unwrap.uv))
            touched = np.zeros(comp.max() + 1, bool)
            touched[comp[unwrap.faces[mask].ravel()]] = True
            as_turned = np.zeros(len(cut.uv), bool)
            as_turned[:len(comp)] = ~touched[comp]
        # a packed atlas was packed at resolution / texels cells per unit: try that first
        start = options.resolution / _pack_grid(options)[1] if unwrap.packed else None
        packed = pack_charts(cut.uv, cut.faces, options, as_turned, start)
        unwrap = Unwrap(cut.vmapping[packed.vmapping], packed.faces, packed.uv, packed.charts,
                        packed.utilization, packed=True)
    return unwrap

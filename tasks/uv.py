"""uv: unwrap the simplified mesh into one square 0-1 atlas with xatlas, in parallel.

Why xatlas: it segments charts, parametrises and packs with padding, and it keeps the input's
face order, so per-face labels need no remapping; only vertices split along seams (``vmapping``
says which input vertex each output vertex copies).

Why partitions: xatlas's chart segmentation grows faster than linearly with the face count
(here 10k faces ~1 s, 23k ~7 s, 100k ~95 s on one core), and it crashed (SIGSEGV) on an
80k-face icosphere. So above ``chunk_faces`` the mesh is cut into partitions (one per part
label, and a big part by recursive coordinate bisection of its face centroids, which keeps
partitions balanced and compact), each partition is unwrapped by its own xatlas call in a
process pool (each at one texel per metre, so charts keep their relative scale), and all
charts are packed into ONE atlas by ``pack_charts`` (each chart turned to its minimum-area
rectangle, rasterised by its actual shape on a coarse cell grid and placed first-fit, as xatlas
packs: overlap-free by construction; it filled 0.52-0.59 of the square on 3k-23k-face meshes,
where the shelf packer it replaced filled 0.35-0.41 and one serial xatlas call 0.59-0.77). A partition border is always a seam; a halo of
neighbouring faces would not change that, so partitions have none. Every xatlas call runs in a
child process, so a crash there becomes a ``ProcessingError`` instead of killing the worker.

Serial-mode atlas size: xatlas estimates a texel density for ``resolution`` but may return an atlas a little
larger (charts did not fit) or smaller and non-square. A larger one is re-packed at the density
scaled to fit, so the requested padding holds in texture pixels; a smaller one is scaled
isotropically into the unit square, so texel density stays uniform on a square texture.
UVs are stored 0-1 with V up (glTF's V-down flip is the exporter's job).

Metrics (``uv_metrics``): utilisation (UV area share of the square), charts (UV-connected
components), seam length (3D length of cut edges / sqrt(surface area)), area and angle stretch
(area-weighted mean and p95; 1 is ideal), texel-density spread (coefficient of variation),
overlaps (texels whose centre two triangles cover, from an exact rasterisation at
``resolution``; must be 0) and whether all UVs lie in 0-1.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

import numpy as np

from ..core.artifacts import load_mesh, save_mesh
from ..core.errors import ProcessingError
from ..core.mesh import MeshData
from ..core.stage import check, stage, stage_cpus
from ..core.types import AssetState, Resources, StageResult

log = logging.getLogger(__name__)

NAME = "uv"
MODES = ("auto", "serial", "parallel")
_MAX_REPACKS = 6


@dataclass(frozen=True)
class UVOptions:
    """Options of the uv stage.

    resolution: texture size (px, square) the atlas is packed for; padding is measured in it.
    padding: texels kept free around each chart, so mipmaps and bilinear filtering do not
        bleed neighbouring charts into each other.
    max_chart_area: largest chart, as a share of the surface area (0 = no limit); smaller
        charts mean less distortion but more seams.
    mode: "serial" (one xatlas call on the whole mesh), "parallel" (partitions unwrapped in a
        process pool, then packed together) or "auto" (parallel above ``chunk_faces``).
    chunk_faces: largest partition given to one xatlas call in parallel mode; smaller is
        faster but adds seams along partition borders.
    workers: processes for parallel mode (0 = the CPUs the stage was granted: its declared
        ``Resources.cpus`` under the runner, every core elsewhere).
    """

    resolution: int = 1024
    padding: int = 4
    max_chart_area: float = 0.0
    mode: str = "auto"
    chunk_faces: int = 8000
    workers: int = 0

    def __post_init__(self) -> None:
        check(isinstance(self.resolution, int) and 64 <= self.resolution <= 16384,
              f"resolution must be an integer in 64..16384, got {self.resolution!r}")
        check(isinstance(self.padding, int) and 0 <= self.padding <= 64,
              f"padding must be an integer in 0..64, got {self.padding!r}")
        check(0.0 <= self.max_chart_area <= 1.0,
              f"max_chart_area must be in [0, 1], got {self.max_chart_area}")
        check(self.mode in MODES, f"mode must be one of {MODES}, got {self.mode!r}")
        check(isinstance(self.chunk_faces, int) and 500 <= self.chunk_faces <= 1_000_000,
              f"chunk_faces must be an integer in 500..1000000, got {self.chunk_faces!r}")
        check(isinstance(self.workers, int) and 0 <= self.workers <= 256,
              f"workers must be an integer in 0..256, got {self.workers!r}")


@dataclass(frozen=True)
class Unwrap:
    """xatlas's answer for one mesh, already in the unit square."""

    vmapping: np.ndarray   # (N',) input vertex of each output vertex
    faces: np.ndarray      # (M, 3) same order as the input faces
    uv: np.ndarray         # (N', 2) float32 in [0, 1]
    charts: int
    utilization: float


# ---------------------------------------------------------------------------- xatlas calls
# These run inside child processes (see ``_run``); they take and return plain arrays.


def _surface_area(mesh: MeshData) -> float:
    return float(_face_areas_3d(mesh.vertices, mesh.faces).sum())


def _face_areas_3d(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    v = vertices[faces]
    return 0.5 * np.linalg.norm(np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]), axis=1)


def _pack_options(resolution: int, padding: int, texels_per_unit: float):
    import xatlas

    pack = xatlas.PackOptions()
    pack.resolution = resolution
    pack.padding = padding
    pack.bilinear = True
    pack.texels_per_unit = float(texels_per_unit)
    return pack


def _generate(add, options: UVOptions, max_chart_area: float):
    """One atlas at the requested resolution; re-packed at a lower density if it overflows."""
    import xatlas

    def attempt(tpu: float):
        atlas = xatlas.Atlas()
        add(atlas)
        chart = xatlas.ChartOptions()
        if max_chart_area > 0:
            chart.max_chart_area = float(max_chart_area)
        atlas.generate(chart, _pack_options(options.resolution, options.padding, tpu))
        return atlas

    atlas = attempt(0.0)
    size = max(atlas.width, atlas.height)
    if size > options.resolution or atlas.atlas_count > 1:
        tpu = atlas.texels_per_unit * options.resolution / size * 0.99
        for _ in range(_MAX_REPACKS):
            candidate = attempt(tpu)
            if candidate.atlas_count == 1:
                atlas = candidate
                break
            tpu *= 0.9
    if atlas.atlas_count != 1:
        raise ProcessingError(
            "xatlas could not pack the charts into one atlas",
            "raise uv resolution or lower padding for this SKU")
    return atlas


def _square(atlas) -> Unwrap:
    vmapping, faces, uv = atlas[0]
    w, h = atlas.width, atlas.height
    side = float(max(w, h))
    faces = np.asarray(faces, np.int64).reshape(-1, 3)
    uv = np.asarray(uv, np.float64) * np.array([w, h]) / side
    return Unwrap(np.asarray(vmapping, np.int64), faces, np.clip(uv, 0.0, 1.0).astype(np.float32), int(atlas.chart_count),
                  float(atlas.utilization) * w * h / side**2)


def unwrap(mesh: MeshData, options: UVOptions) -> Unwrap:
    """Charts, parametrisation and packing in one xatlas call, in this process (serial mode;
    it may crash the process on some large meshes, so the stage calls it through ``_run``)."""
    normals = (None if mesh.vertex_normals is None
               else np.ascontiguousarray(mesh.vertex_normals, np.float32))

    def add(atlas):
        atlas.add_mesh(np.ascontiguousarray(mesh.vertices, np.float32),
                       np.ascontiguousarray(mesh.faces, np.uint32), normals)

    return _square(_generate(add, options, options.max_chart_area * _surface_area(mesh)))


def unwrap_chunk(vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray | None,
                 max_chart_area: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Charts of one partition, with UVs scaled to its 3D size (texel density 1 per metre).

    Returns (vmapping, faces, uv) like xatlas; the later global pack keeps charts' relative
    scale, so every partition must come back at the same density.
    """
    import xatlas

    atlas = xatlas.Atlas()
    atlas.add_mesh(np.ascontiguousarray(vertices, np.float32),
                   np.ascontiguousarray(faces, np.uint32),
                   None if normals is None else np.ascontiguousarray(normals, np.float32))
    chart = xatlas.ChartOptions()
    if max_chart_area > 0:
        chart.max_chart_area = float(max_chart_area)
    # resolution 0: one atlas of any size (a fixed one would spill charts into more atlases
    # whose UVs lie over each other)
    atlas.generate(chart, _pack_options(0, 1, 0.0))
    vmapping, out_faces, uv = atlas[0]
    out_faces = np.asarray(out_faces, np.int64).reshape(-1, 3)
    uv = np.asarray(uv, np.float64) * np.array([atlas.width, atlas.height])
    area_uv = np.abs(_uv_areas(uv, out_faces)).sum()
    area_3d = _face_areas_3d(np.asarray(vertices, np.float64), np.asarray(faces)).sum()
    scale = math.sqrt(area_3d / area_uv) if area_uv > 0 else 1.0
    return np.asarray(vmapping, np.int64), out_faces, uv * scale


def chart_ids(faces: np.ndarray, n_vertices: int) -> np.ndarray:
    """Chart of each vertex: UV-connected components (charts never share a split vertex)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    rows = np.concatenate([faces[:, 0], faces[:, 1]])
    cols = np.concatenate([faces[:, 1], faces[:, 2]])
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n_vertices, n_vertices))
    return connected_components(graph, directed=False)[1]


def _min_area_rotation(points: np.ndarray) -> np.ndarray:
    """2x2 rotation that puts the points' minimum-area bounding rectangle on the axes, wider
    than tall (rotating calipers over the convex hull's edges)."""
    from scipy.spatial import ConvexHull, QhullError

    try:
        hull = points[ConvexHull(points).vertices]
    except (QhullError, ValueError):  # collinear or too few points: any rotation will do
        hull = points
    edges = np.roll(hull, -1, axis=0) - hull
    angles = np.arctan2(edges[:, 1], edges[:, 0])
    best, best_area, best_rot = None, np.inf, np.eye(2)
    for a in np.unique(np.round(angles % (np.pi / 2), 9)):
        c, s_ = np.cos(a), np.sin(a)
        rot = np.array([[c, s_], [-s_, c]])
        q = hull @ rot.T
        ext = np.ptp(q, axis=0)
        if ext[0] * ext[1] < best_area:
            best_area, best, best_rot = ext[0] * ext[1], ext, rot
    if best is not None and best[1] > best[0]:
        best_rot = np.array([[0.0, 1.0], [-1.0, 0.0]]) @ best_rot
    return best_rot


def _pack_kernels():
    """Numba kernels of the raster packer, compiled once (cached on disk)."""
    global _PACK_KERNELS
    if _PACK_KERNELS is None:
        import numba

        @numba.njit(cache=True)
        def row_spans(pts, faces, h):
            # per cell row r (strip r <= y < r + 1): the cells [lo, hi] any triangle touches;
            # exact per triangle (clipped to the strip), conservative for the chart (holes
            # inside a row are filled)
            lo = np.full(h, 1 << 30, np.int64)
            hi = np.full(h, -1, np.int64)
            for f in range(faces.shape[0]):
                xs = np.empty(3)
                ys = np.empty(3)
                for j in range(3):
                    xs[j] = pts[faces[f, j], 0]
                    ys[j] = pts[faces[f, j], 1]
                r0 = max(int(np.floor(ys.min())), 0)
                r1 = min(int(np.floor(ys.max())), h - 1)
                for r in range(r0, r1 + 1):
                    y0, y1 = float(r), float(r + 1)
                    xmin, xmax = np.inf, -np.inf
                    for j in range(3):
                        ax, ay, bx, by = xs[j], ys[j], xs[(j + 1) % 3], ys[(j + 1) % 3]
                        if y0 <= ay <= y1:
                            xmin, xmax = min(xmin, ax), max(xmax, ax)
                        if ay != by:
                            for yc in (y0, y1):
                                t = (yc - ay) / (by - ay)
                                if 0.0 <= t <= 1.0:
                                    xc = ax + t * (bx - ax)
                                    xmin, xmax = min(xmin, xc), max(xmax, xc)
                    if xmin <= xmax:
                        lo[r] = min(lo[r], int(np.floor(xmin)))
                        hi[r] = max(hi[r], int(np.floor(xmax)))
            return lo, hi

        @numba.njit(cache=True)
        def pack(p, faces, fstart, order, extents, grid, d):
            # first fit, lowest row then leftmost column, on a grid x grid occupancy raster;
            # each chart's rows are tested dilated by d cells (the padding), so two charts'
            # cells are never closer than d cells, and none is closer than d to the border
            corners = np.zeros((fstart.shape[0] - 1, 2), np.int64)
            # left[row, x]: the last occupied cell at or left of x in that row (-1: none),
            # so testing a span and jumping past the obstacle are one lookup each
            left = np.full((grid, grid), -1, np.int64)
            free = np.full(grid, grid, np.int64)
            for c in order:
                sub = faces[fstart[c]:fstart[c + 1]]
                h = extents[c, 1]
                if extents[c, 0] + 2 * d > grid or h + 2 * d > grid:
                    return corners, False
                lo, hi = row_spans(p, sub, h)
                hd = h + 2 * d  # dilated rows: chart row r is dilated row r + d
                dlo = np.full(hd, 1 << 30, np.int64)
                dhi = np.full(hd, -(1 << 30), np.int64)
                for r in range(h):
                    if hi[r] < 0:
                        continue
                    for q in range(r, r + 2 * d + 1):
                        dlo[q] = min(dlo[q], lo[r] - d)
                        dhi[q] = max(dhi[q], hi[r] + d)
                xmin_ok = 0
                xmax_ok = grid
                for q in range(hd):
                    if dhi[q] >= dlo[q]:
                        xmin_ok = max(xmin_ok, -dlo[q])
                        xmax_ok = min(xmax_ok, grid - 1 - dhi[q])
                placed = False
                for y in range(grid - hd + 1):
                    skip = False
                    for q in range(hd):
                        if dhi[q] >= dlo[q] and free[y + q] < dhi[q] - dlo[q] + 1:
                            skip = True
                            break
                    if skip:
                        continue
                    x = xmin_ok
                    while x <= xmax_ok:
                        jump = -1
                        for q in range(hd):
                            if dhi[q] < dlo[q]:
                                continue
                            last = left[y + q, x + dhi[q]]
                            if last >= x + dlo[q]:
                                jump = last - dlo[q] + 1
                                break
                        if jump < 0:
                            placed = True
                            break
                        x = jump
                    if placed:
                        corners[c, 0] = x
                        corners[c, 1] = y + d
                        for r in range(h):
                            if hi[r] < 0:
                                continue
                            row = y + d + r
                            a, b = x + lo[r], x + hi[r]
                            for cx in range(a, b + 1):
                                if left[row, cx] != cx:
                                    free[row] -= 1
                                    left[row, cx] = cx
                            cx = b + 1
                            while cx < grid and left[row, cx] < b:
                                left[row, cx] = b
                                cx += 1
                        break
                if not placed:
                    return corners, False
            return corners, True

        _PACK_KERNELS = pack
    return _PACK_KERNELS


_PACK_KERNELS = None
_PACK_GRID = 512  # most cells along a side of the packing raster


def _pack_grid(options: UVOptions) -> tuple[int, int, int]:
    """(cells per side, texels per cell, padding in cells) of the packing raster: cells no
    coarser than the padding where possible, at most ``_PACK_GRID`` per side (speed)."""
    texels = max(1, math.ceil(options.resolution / _PACK_GRID))
    if options.padding:
        texels = min(texels, options.padding) if options.padding >= texels else texels
    grid = options.resolution // texels
    return grid, texels, math.ceil(options.padding / texels)


def pack_charts(uv: np.ndarray, faces: np.ndarray, options: UVOptions) -> Unwrap:
    """Pack ready-made charts (UV-connected components, any common scale) into the unit square.

    Each chart is turned to its minimum-area bounding rectangle (tall side up), rasterised
    conservatively on a coarse cell grid (its actual shape, row by row, not its rectangle)
    and placed first-fit, lowest row then leftmost column, biggest charts first, with
    ``padding`` texels (rounded up to whole cells) between charts and from the border, as
    xatlas's own packer does. The common scale is searched (shrink until it fits, then
    bisection) for the tightest fit. Disjoint cells cannot overlap, so the packing is
    overlap-free by construction, whatever the charts' shapes. (xatlas's own packer, fed the
    charts back as a UV mesh, merged touching charts and placed some over others here.)
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
        q = uv[vids] @ _min_area_rotation(uv[vids]).T
        q = np.stack([-q[:, 1], q[:, 0]], axis=1)  # turned 90 deg, taller than wide (no mirror)
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
    pack = _pack_kernels()
    total = max(float(chart_area.sum()), 1e-300)

    eps = 1e-9  # every point strictly inside its cells, whatever the rounding

    def attempt(k: float):
        extents = np.floor(sizes * k + eps).astype(np.int64) + 1
        return pack(placed * k + eps, sorted_faces, fstart, order, extents, grid, d)

    hi = min(grid / math.sqrt(total), (grid - 2 * d - 1) / max(float(sizes.max()), 1e-300))
    lo, best = 0.0, None
    k = 0.8 * hi  # xatlas-like packings fill 0.4-0.6 of the square: start a little above
    for _ in range(80):  # 4% steps: down until it fits, or up until it does not
        corners, ok = attempt(k)
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
    for _ in range(3):  # then bisect the last step (to 0.5%)
        mid = (lo + hi) / 2
        corners, ok = attempt(mid)
        if ok:
            lo, best = mid, corners
        else:
            hi = mid
    out = (placed * lo + eps + best[chart_of_v]) * (texels / options.resolution)
    out[chart_of_v < 0] = 0.0  # vertices no face uses
    area = float(np.abs(_uv_areas(out, faces)).sum())
    return Unwrap(np.arange(len(uv)), faces, np.clip(out, 0.0, 1.0).astype(np.float32),
                  len(charts), area)


# ---------------------------------------------------------------------------- process pool

_POOL: ProcessPoolExecutor | None = None
_POOL_WORKERS = 0


def _pool(workers: int) -> ProcessPoolExecutor:
    """One pool per process, kept between calls.

    Forked on Linux: a spawned (or forkserver) child re-imports the caller's ``__main__``
    script, which breaks any script that lacks an ``if __name__ == "__main__"`` guard, and
    costs ~0.3 s of imports per worker. The children only run numpy and xatlas, which hold
    no locks of the parent's threads (e.g. a Ray worker's). Elsewhere (macOS) spawn is safer.
    """
    global _POOL, _POOL_WORKERS
    if _POOL is None or _POOL_WORKERS != workers:
        if _POOL is not None:
            _POOL.shutdown(wait=False, cancel_futures=True)
        method = "fork" if sys.platform.startswith("linux") else "spawn"
        _POOL = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method))
        _POOL_WORKERS = workers
    return _POOL


def _drop_pool() -> None:
    global _POOL
    if _POOL is not None:
        _POOL.shutdown(wait=False, cancel_futures=True)
    _POOL = None


def _run(calls: list[tuple], workers: int, what: str) -> list:
    """Run ``(fn, *args)`` calls in the pool; a crashed child becomes a ``ProcessingError``."""
    pool = _pool(max(1, workers))
    try:
        futures = [pool.submit(fn, *args) for fn, *args in calls]
        return [f.result() for f in futures]
    except BrokenProcessPool as exc:
        _drop_pool()
        raise ProcessingError(
            f"xatlas crashed while unwrapping {what}",
            "set uv mode='parallel' with a smaller chunk_faces (smaller xatlas inputs), or "
            "re-run cleanup/simplify on this SKU") from exc


# ---------------------------------------------------------------------------- partitions


def bisect(points: np.ndarray, max_size: int) -> list[np.ndarray]:
    """Recursive coordinate bisection: index sets of at most ``max_size`` points, split at the
    median of the widest axis (balanced work for the pool, compact regions, deterministic)."""
    out: list[np.ndarray] = []
    stack = [np.arange(len(points))]
    while stack:
        idx = stack.pop()
        if len(idx) <= max_size:
            out.append(idx)
            continue
        p = points[idx]
        axis = int(np.argmax(p.max(0) - p.min(0)))
        order = idx[np.argsort(p[:, axis], kind="stable")]
        half = len(order) // 2
        stack.extend([order[half:], order[:half]])
    return out


def partition_faces(mesh: MeshData, chunk_faces: int) -> list[np.ndarray]:
    """Face index sets, each unwrapped by one xatlas call: part labels first, big parts
    bisected, small parts batched together up to ``chunk_faces``."""
    centroids = mesh.vertices[mesh.faces].mean(axis=1)
    pieces: list[np.ndarray] = []
    for label in np.unique(mesh.face_labels):
        idx = np.flatnonzero(mesh.face_labels == label)
        pieces.extend(idx[sub] for sub in bisect(centroids[idx], chunk_faces))
    pieces.sort(key=len, reverse=True)
    groups: list[list[np.ndarray]] = []
    sizes: list[int] = []
    for piece in pieces:  # first fit, biggest first
        for g, size in enumerate(sizes):
            if size + len(piece) <= chunk_faces:
                groups[g].append(piece)
                sizes[g] += len(piece)
                break
        else:
            groups.append([piece])
            sizes.append(len(piece))
    return [np.sort(np.concatenate(g)) for g in groups]


def unwrap_parallel(mesh: MeshData, options: UVOptions) -> Unwrap:
    """Partitions unwrapped in the pool, then all their charts packed into one atlas."""
    groups = partition_faces(mesh, options.chunk_faces)
    workers = options.workers or stage_cpus()
    max_area = options.max_chart_area * _surface_area(mesh)
    calls, used = [], []
    for g in groups:
        vids, local = np.unique(mesh.faces[g], return_inverse=True)
        normals = None if mesh.vertex_normals is None else mesh.vertex_normals[vids]
        calls.append((unwrap_chunk, mesh.vertices[vids], local.reshape(-1, 3), normals, max_area))
        used.append(vids)
    parts = _run(calls, min(workers, len(calls)), f"{len(calls)} partitions")
    vmapping, uvs, faces = [], [], np.empty((mesh.n_faces, 3), np.int64)
    offset, shift = 0, 0.0
    for g, vids, (vmap, fcs, uv) in zip(groups, used, parts):
        vmapping.append(vids[vmap])
        # side by side: xatlas finds a UV mesh's charts by shared texcoords, so partitions
        # laid over each other would merge into false charts
        uvs.append(uv + [shift - uv[:, 0].min(), -uv[:, 1].min()])
        shift += float(np.ptp(uv[:, 0])) * 1.01 + 1e-6
        faces[g] = fcs + offset
        offset += len(vmap)
    vmapping = np.concatenate(vmapping)
    packed = pack_charts(np.concatenate(uvs), faces, options)
    return Unwrap(vmapping[packed.vmapping], packed.faces, packed.uv, packed.charts,
                  packed.utilization)


def unwrap_guarded(mesh: MeshData, options: UVOptions) -> tuple[Unwrap, str]:
    """The unwrap the options ask for, xatlas always in a child process; returns the mode used."""
    mode = options.mode
    if mode == "auto":
        mode = "parallel" if mesh.n_faces > options.chunk_faces else "serial"
    if mode == "parallel":
        return unwrap_parallel(mesh, options), mode
    return _run([(unwrap, mesh, options)], 1, f"the whole mesh ({mesh.n_faces} faces)")[0], mode


def apply_unwrap(mesh: MeshData, result: Unwrap) -> MeshData:
    """The mesh with vertices split at seams; every per-vertex attribute follows ``vmapping``."""
    if not np.array_equal(result.vmapping[result.faces], mesh.faces):
        raise ProcessingError(
            "xatlas changed the face order or connectivity of the mesh",
            "report this as a bug with the mesh artifact attached")
    pick = lambda a: None if a is None else np.asarray(a)[result.vmapping]
    return MeshData(mesh.vertices[result.vmapping], result.faces, mesh.face_labels, result.uv,
                    pick(mesh.vertex_colors), pick(mesh.vertex_normals))


# ---------------------------------------------------------------------------- metrics


def _uv_areas(uv: np.ndarray, faces: np.ndarray) -> np.ndarray:
    t = np.asarray(uv, np.float64)[faces]
    a, b = t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]
    return 0.5 * (a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0])


def uv_face_areas(mesh: MeshData) -> np.ndarray:
    """Signed area of each face in UV space (positive = counter-clockwise)."""
    return _uv_areas(mesh.uv, mesh.faces)


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
    comp = chart_ids(mesh.faces, mesh.n_vertices)
    return len(np.unique(comp[np.unique(mesh.faces)]))


def _boundary_length(vertices: np.ndarray, faces: np.ndarray) -> float:
    """Total length of edges used by exactly one face."""
    edges = np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    uniq, counts = np.unique(edges, axis=0, return_counts=True)
    once = uniq[counts == 1]
    return float(np.linalg.norm(vertices[once[:, 0]] - vertices[once[:, 1]], axis=1).sum())


def seam_length(mesh: MeshData) -> float:
    """3D length of the UV seams: edges open in the split mesh but not in the mesh welded by
    position (each seam edge is open twice, once per side)."""
    _, inverse = np.unique(mesh.vertices, axis=0, return_inverse=True)
    welded = inverse.reshape(-1)[mesh.faces]
    split = _boundary_length(mesh.vertices, mesh.faces)
    return max(0.0, (split - _boundary_length(mesh.vertices, welded)) / 2.0)


def coverage_counts(uv: np.ndarray, faces: np.ndarray, size: int) -> np.ndarray:
    """(size, size) how many triangles cover each texel centre (row 0 = v near 0).

    Exact and watertight: edge functions are evaluated in one canonical vertex order, and a
    centre exactly on an edge belongs to one side only (a top-left style rule), so a texel on
    a shared edge inside a chart counts once and only true overlaps count twice.
    """
    pts = np.ascontiguousarray(np.asarray(uv, np.float64) * size)
    return _coverage_kernel()(pts, np.ascontiguousarray(faces, np.int64), int(size))


_KERNEL = None


def _coverage_kernel():
    global _KERNEL
    if _KERNEL is None:
        import numba

        @numba.njit(cache=True)
        def edge(ax, ay, bx, by, px, py):
            # canonical order: the same geometric edge gives exactly opposite values
            if ax < bx or (ax == bx and ay < by):
                return (bx - ax) * (py - ay) - (by - ay) * (px - ax)
            return -((ax - bx) * (py - by) - (ay - by) * (px - bx))

        @numba.njit(cache=True)
        def owns(ax, ay, bx, by):
            dy, dx = by - ay, bx - ax
            return dy > 0 or (dy == 0 and dx < 0)

        @numba.njit(cache=True)
        def kernel(pts, faces, size):
            counts = np.zeros((size, size), np.int32)
            for f in range(faces.shape[0]):
                i0, i1, i2 = faces[f, 0], faces[f, 1], faces[f, 2]
                x0, y0 = pts[i0, 0], pts[i0, 1]
                x1, y1 = pts[i1, 0], pts[i1, 1]
                x2, y2 = pts[i2, 0], pts[i2, 1]
                area = (x1 - x0) * (y2 - y0) - (y1 - y0) * (x2 - x0)
                if area == 0:
                    continue
                if area < 0:  # make it counter-clockwise; folds still count
                    x1, y1, x2, y2 = x2, y2, x1, y1
                lo_x = max(int(np.floor(min(x0, x1, x2) - 0.5)), 0)
                hi_x = min(int(np.ceil(max(x0, x1, x2) - 0.5)), size - 1)
                lo_y = max(int(np.floor(min(y0, y1, y2) - 0.5)), 0)
                hi_y = min(int(np.ceil(max(y0, y1, y2) - 0.5)), size - 1)
                o0, o1, o2 = owns(x0, y0, x1, y1), owns(x1, y1, x2, y2), owns(x2, y2, x0, y0)
                for j in range(lo_y, hi_y + 1):
                    py = j + 0.5
                    for i in range(lo_x, hi_x + 1):
                        px = i + 0.5
                        e0 = edge(x0, y0, x1, y1, px, py)
                        if e0 < 0 or (e0 == 0 and not o0):
                            continue
                        e1 = edge(x1, y1, x2, y2, px, py)
                        if e1 < 0 or (e1 == 0 and not o1):
                            continue
                        e2 = edge(x2, y2, x0, y0, px, py)
                        if e2 < 0 or (e2 == 0 and not o2):
                            continue
                        counts[j, i] += 1
            return counts

        _KERNEL = kernel
    return _KERNEL


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


# ---------------------------------------------------------------------------- the stage


@stage(NAME, "0.3.0", UVOptions, Resources(cpus=1, memory_mb=1024))
def uv(state: AssetState, options: UVOptions) -> StageResult:
    """Unwrap ``mesh`` and write it back as ``mesh`` with per-vertex UVs."""
    mesh = load_mesh(state, "mesh")
    if mesh.n_faces == 0:
        raise ProcessingError("the mesh to unwrap has no faces",
                              "check the simplify and cleanup outputs for this SKU")
    result, mode = unwrap_guarded(mesh, options)
    out = apply_unwrap(mesh, result)
    metrics = uv_metrics(out, options.resolution)
    if metrics["uv_overlaps"]:  # xatlas folds a triangle now and then; triage decides
        log.warning("%s uv: %d texels covered twice (folded or overlapping charts)",
                    state.sku, metrics["uv_overlaps"])
    metrics.update(uv_verts_out=out.n_vertices, uv_parallel=mode == "parallel")
    log.info("%s uv: %s, %d charts, utilisation %.2f, stretch area %.2f angle %.2f, "
             "verts %d -> %d", state.sku, mode, metrics["uv_charts"], metrics["uv_utilization"],
             metrics["uv_stretch_area_mean"], metrics["uv_stretch_angle_mean"], mesh.n_vertices,
             out.n_vertices)
    return StageResult(artifacts={"mesh": save_mesh(state, out)}, metrics=metrics)

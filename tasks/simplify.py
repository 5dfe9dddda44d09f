"""simplify: the clean mesh down to the profile's triangle budget, plus LODs and collision hulls.

Why this method ("fast_qem"): on this machine pymeshlab's quadric edge collapse gives the best
quality of the libraries but takes 10-20 s on a ~1M-face mesh; fast-simplification and
meshoptimizer take well under 2 s but lose accuracy, fast-simplification mostly because of its
threshold schedule, meshoptimizer because a half-edge collapse keeps every surviving vertex at
one of the original positions. We keep meshoptimizer's ordering (a quadric-error priority queue,
exact target counts, topology checks) and add what it lacks, QEM's optimal placement, as a
second step: every surviving vertex gathers the area-weighted plane quadrics of the dense faces
in its cell on the surface (multi-source breadth-first search over the dense edges, so the two
sides of a thin wall never mix) and moves to the point that minimises them, regularised towards
its original position. Three guards keep that honest against the dense surface: a move is
clamped to MAX_STEP mean dense edge lengths (QEM would otherwise "sharpen" the bevel marching
cubes cuts into every crease, away from the dense surface); a move is kept only where it lowers
the distance of the cell's dense vertices to the vertex's one-ring; moves that would flip a face
are undone. See BENCHMARKS.md ("simplify") for the measured quality and time beside
pymeshlab, fast-simplification and meshoptimizer.

Part borders: vertices are split per part label before the collapse, so meshoptimizer sees each
border between parts as an attribute seam, which it only collapses along itself and on both
sides at once; every output face is an input face with re-pointed corners, so its part label is
carried exactly (no nearest-neighbour transfer) and so are vertex colours (surviving vertices
are original vertices); the output keeps one vertex copy per part at a border (glTF primitives
need that anyway), at equal positions.

Watertight in -> watertight out: meshoptimizer now and then leaves a "pillow" (two back-to-back
triangles hanging off an edge: dropped) or pinches two sheets along one edge (the collapse is
re-run with the dense vertices around the pinch locked). The edges are checked on welded
positions; if a result is still open, pymeshlab's is used when it is closed.

Exact counts: the collapse can still end a few faces short (a dropped pillow, a border step, a
neighbour part's border collapses); ``top_up`` makes up the difference by splitting the longest
well-shaped edges inside the parts below their budget at their midpoints, which leaves the
surface, the part borders and closedness as they were (``simplify_faces_topped_up``). A closed
mesh only has even face counts, so an odd target on one ends one under.

Per-part budgets (``part_budget="area_curvature"``, the default): each part p gets
budget_p = total x w_p / sum(w), w_p = A_p x (1 + k x S_p), where A_p is its area and S_p the
area-weighted mean of sqrt(kappa x sqrt(A_p)) over its faces (kappa: the normal curvature along
each face's edges, |n_b - n_a| / |b - a| of welded vertex normals; the product is dimensionless,
so a part's weight does not change with the asset's scale). Why the square root: a sharp crease
(a box's edge) carries kappa ~ angle / h in a band of width ~h, so the plain integral of kappa
stays finite as the mesh gets denser and a box would weigh as much as a sphere of equal area,
although a crease costs the collapse only a few faces along its length; the integral of
sqrt(kappa) goes to zero with h there, while smooth curvature (which does need faces) keeps its
share. Each budget is at least min(4, the part's faces), at most its faces (the excess goes to
the others), and rounded by largest remainders so they sum to the total exactly. The collapse
then runs once per part (largest cut first) on that part's faces plus the ring of faces of its
neighbours around their shared border, with every other vertex locked: the border stays a seam
collapsed on both sides at once, so a neighbour may lose a few border faces in another part's
pass (the totals stay exact; ``simplify_part_faces`` reports the counts reached). With
``part_budget="global"`` the collapse order is global, by quadric error, which shares the total
between parts implicitly (the behaviour before budgets). A mesh of one part is unaffected.

LODs (``lods``) chain from the previous level (a few thousand faces: milliseconds), the same
way: collapse, then placement against that level's quadrics.
Collision hulls (``collision_hulls``): one convex hull per part when the mesh has 2..N parts,
else CoACD's approximate convex decomposition of a ~3k-face copy, written as one MeshData
whose ``face_labels`` give the hull index.

Error metrics are point-to-surface distances both ways between uniform area samples of the
result and of the dense (clean) mesh, with the dense mesh's bounding-box DIAGONAL scaled to 1.
"""

from __future__ import annotations

import ctypes
import itertools
import json
import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ..core.artifacts import load_mesh, save_mesh
from ..core.errors import ProcessingError
from ..core.mesh import MeshData
from ..core.stage import check, stage, stage_cpus
from ..core.types import AssetState, Resources, StageResult
from . import kernels
from .cleanup import smooth_normals

log = logging.getLogger(__name__)

NAME = "simplify"
MAX_STEP = 0.25  # a re-placed vertex moves at most this many mean dense edge lengths
ERROR_STRIDE = 2  # the move test uses every 2nd dense vertex (cells hold dozens)
COUNT_SLACK = 0.001  # dropped pillows may leave the count this share short without a re-run
PRE_FACTOR = 4  # the coarse pass stops at this many times the target (see _collapse_closed)
METHODS = ("fast_qem", "meshoptimizer", "fast_simplification", "pymeshlab")
PART_BUDGETS = ("area_curvature", "global")
MIN_PART_FACES = 4  # a part's budget floor (or its own face count when smaller)
CURVATURE_SAMPLES = 100_000  # faces whose curvature estimates the part weights
PART_PASSES = 4  # collapses per part: border collapses also remove neighbour faces, so a
                 # pass ends above the part's budget by those; the next one takes the rest
COLLISION_METHODS = ("auto", "parts", "coacd")


@dataclass(frozen=True)
class SimplifyOptions:
    """Options of the simplify stage.

    target_tris: the triangle budget (23k: the `ar` profile's default, Khronos 3D Commerce).
        Closed meshes only have even face counts, so the result may be one under.
    preserve_border: keep every vertex of an open border, so silhouettes of open meshes (a
        lampshade's rim) keep their outline; may stop short of the budget on meshes with very
        long borders (then logged and reported in ``simplify_target_met``).
    method: "fast_qem" (ours, see the module docstring); the peers "meshoptimizer",
        "fast_simplification" and "pymeshlab" stay selectable for comparison and as fallbacks.
    placement_regularization: how strongly a re-placed vertex is pulled back to its original
        position, as a fraction of its cell's quadric trace; 0.01 measured best (lower lowers
        Chamfer a little and raises Hausdorff).
    preserve_parts: keep borders between part labels (as seams) and labels exact.
    part_budget: how the total is shared between parts (fast_qem with preserve_parts only):
        "area_curvature" (explicit per-part budgets weighted by area and curvature, see the
        module docstring) or "global" (one collapse ordered by error, the older behaviour).
    part_curvature_weight: k in w_p = A_p x (1 + k x S_p); 0 = budgets by area alone. S_p is
        about 1.9 on a sphere and near 0 on flat faces, so 1.0 lets a curved part of equal
        area get up to about three times the faces of a flat one.
    lods: triangle budgets of LOD1, LOD2, ... (strictly decreasing, each under target_tris),
        written as artifacts ``lod1``, ``lod2``, ...; the `game` profile uses (8000, 2500).
    collision_hulls: at most this many convex hulls in the ``collision`` artifact; 0 = none.
    collision_method: "auto" (hull per part when there are 2..collision_hulls parts, else
        CoACD), "parts" or "coacd".
    measure_error: compute Chamfer/Hausdorff/normal error against the clean mesh (costs about
        as much as the simplification itself on 1M faces).
    error_samples: surface samples per side for those metrics.
    """

    target_tris: int = 23_000
    preserve_border: bool = True
    method: str = "fast_qem"
    placement_regularization: float = 0.01
    preserve_parts: bool = True
    part_budget: str = "area_curvature"
    part_curvature_weight: float = 1.0
    lods: tuple[int, ...] = ()
    collision_hulls: int = 0
    collision_method: str = "auto"
    measure_error: bool = True
    error_samples: int = 100_000

    def __post_init__(self) -> None:
        check(isinstance(self.target_tris, int) and self.target_tris >= 4,
              f"target_tris must be an integer >= 4, got {self.target_tris!r}")
        check(self.method in METHODS, f"method must be one of {METHODS}, got {self.method!r}")
        check(self.placement_regularization > 0,
              f"placement_regularization must be > 0, got {self.placement_regularization}")
        check(self.part_budget in PART_BUDGETS,
              f"part_budget must be one of {PART_BUDGETS}, got {self.part_budget!r}")
        check(self.part_curvature_weight >= 0,
              f"part_curvature_weight must be >= 0, got {self.part_curvature_weight}")
        lods = tuple(self.lods)
        object.__setattr__(self, "lods", lods)
        check(all(isinstance(n, int) and n >= 4 for n in lods),
              f"lods must be integers >= 4, got {lods!r}")
        chain = (self.target_tris, *lods)
        check(all(a > b for a, b in itertools.pairwise(chain)),
              f"lods must decrease strictly from target_tris={self.target_tris}, got {lods!r}")
        check(isinstance(self.collision_hulls, int) and 0 <= self.collision_hulls <= 256,
              f"collision_hulls must be an integer in [0, 256], got {self.collision_hulls!r}")
        check(self.collision_method in COLLISION_METHODS,
              f"collision_method must be one of {COLLISION_METHODS}, got {self.collision_method!r}")
        check(isinstance(self.error_samples, int) and self.error_samples >= 1000,
              f"error_samples must be an integer >= 1000, got {self.error_samples!r}")


# ------------------------------------------------------------------------- topology helpers


def weld_ids(vertices: np.ndarray) -> np.ndarray:
    """Id of each vertex's exact position (vertices at equal positions share one id), so seams
    split for UVs or parts move together and watertightness is judged on positions.

    A 64-bit hash of the coordinates' bits is uniqued (fast, 1-D); a hash collision between
    different positions is detected and answered with an exact row-wise unique."""
    v = np.ascontiguousarray(vertices, np.float64) + 0.0  # -0.0 -> 0.0
    if len(v) == 0:
        return np.zeros(0, np.int64)
    bits = v.view(np.uint64)
    h = (bits[:, 0] * np.uint64(0x9E3779B97F4A7C15)) ^ (bits[:, 1] * np.uint64(0xC2B2AE3D27D4EB4F)) \
        ^ (bits[:, 2] * np.uint64(0x165667B19E3779F9))
    _, first, inverse = np.unique(h, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1).astype(np.int64)
    if np.array_equal(v[first[inverse]], v):
        return inverse
    rows = v.view(np.dtype((np.void, v.dtype.itemsize * 3))).ravel()
    return np.unique(rows, return_inverse=True)[1].reshape(-1).astype(np.int64)


def _edge_keys(faces: np.ndarray) -> np.ndarray:
    e = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    e = np.sort(e, axis=1)
    n = int(faces.max()) + 1 if len(faces) else 1
    return e[:, 0] * n + e[:, 1]


def is_watertight(faces: np.ndarray) -> bool:
    """Every edge shared by exactly two faces (faces indexed by welded position ids).

    Fast path for the usual case, a closed and consistently wound surface: the half-edges
    a->b with a<b must be exactly the reversed half-edges b->a with b<a, one each."""
    f = np.asarray(faces, np.int64).reshape(-1, 3)
    if len(f) == 0:
        return False
    a = f.ravel()
    b = f[:, [1, 2, 0]].ravel()
    n = int(f.max()) + 1
    up = a < b
    fwd = np.sort(a[up] * n + b[up])
    bwd = np.sort(b[~up] * n + a[~up])
    if len(fwd) == len(bwd) and np.array_equal(fwd, bwd) and np.all(fwd[1:] != fwd[:-1]):
        return True
    _, counts = np.unique(_edge_keys(f), return_counts=True)
    return bool(np.all(counts == 2))


def boundary_vertices(faces: np.ndarray, n_vertices: int) -> np.ndarray:
    """Mask of vertices on an open border (an edge used by one face)."""
    f = np.asarray(faces, np.int64).reshape(-1, 3)
    mask = np.zeros(n_vertices, bool)
    if len(f) == 0:
        return mask
    keys, counts = np.unique(_edge_keys(f), return_counts=True)
    n = int(f.max()) + 1
    border = keys[counts == 1]
    mask[border // n] = True
    mask[border % n] = True
    return mask


def _compact(faces: np.ndarray, n_vertices: int) -> tuple[np.ndarray, np.ndarray]:
    """(used vertex indices, faces re-indexed into them)."""
    mask = np.zeros(n_vertices, bool)
    mask[np.asarray(faces).ravel()] = True  # O(n), where np.unique would sort
    used = np.flatnonzero(mask)
    remap = np.full(n_vertices, -1, np.int64)
    remap[used] = np.arange(len(used))
    return used, remap[faces]


def _drop_collapsed(faces: np.ndarray) -> np.ndarray:
    f = np.asarray(faces, np.int64).reshape(-1, 3)
    ok = (f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2])
    return f[ok]


def pillow_faces(faces: np.ndarray) -> np.ndarray:
    """Mask of faces whose three (welded) corners another face also has: meshoptimizer now
    and then folds a sliver into two back-to-back triangles hanging off one edge, which makes
    that edge non-manifold. Both copies enclose nothing; dropping them closes the surface."""
    if len(faces) == 0:
        return np.zeros(0, bool)
    key = kernels.row_keys(np.sort(faces, axis=1))
    _, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    return counts[inverse.reshape(-1)] > 1


def face_normals(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(unit normals, areas) per face."""
    return kernels.face_normals(vertices, faces), kernels.face_areas(vertices, faces)


# ------------------------------------------------------------------------ the collapse step


def _split_by_label(mesh: MeshData) -> tuple[np.ndarray, np.ndarray]:
    """Faces over split vertices (one copy per (vertex, label)) and each copy's source vertex."""
    labels = mesh.face_labels.astype(np.int64)
    uniq, lab = np.unique(labels, return_inverse=True)
    code = mesh.faces * len(uniq) + lab.reshape(-1)[:, None]
    # the (vertex, label) codes in use, in order: a mask over the code range (linear) where
    # it is small enough, else a sort
    if mesh.n_vertices * len(uniq) <= 8 * code.size + (1 << 20):
        present = np.zeros(mesh.n_vertices * len(uniq), bool)
        present[code.ravel()] = True
        keys = np.flatnonzero(present)
        rank = np.cumsum(present) - 1
        return rank[code].astype(np.int64), keys // len(uniq)
    keys, inverse = np.unique(code.ravel(), return_inverse=True)
    return inverse.reshape(-1, 3).astype(np.int64), keys // len(uniq)


def meshopt_collapse(vertices: np.ndarray, faces: np.ndarray, target_tris: int,
                     lock_border: bool, lock: np.ndarray | None = None) -> np.ndarray:
    """meshoptimizer's quadric half-edge collapse to ``target_tris``; returns the kept faces
    (indices into ``vertices``). Vertices at equal positions but different indices are seams;
    vertices where ``lock`` is true are never collapsed away."""
    import meshoptimizer as mo

    if len(faces) and 3 * len(faces) < len(vertices):
        # meshoptimizer's set-up is linear in the vertex count: a few faces over a big vertex
        # buffer (a re-run from a coarse pass) pay for the whole buffer unless compacted
        used, local = _compact(faces, len(vertices))
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
        count = _simplify_locked(out, idx, pos, lock, 3 * int(target_tris), options)
    return _drop_collapsed(out[:count].astype(np.int64).reshape(-1, 3))


_LOCKED_FN = None


def _simplify_locked(out: np.ndarray, idx: np.ndarray, pos: np.ndarray, lock: np.ndarray,
                     target_index_count: int, options: int) -> int:
    """meshopt_simplifyWithAttributes with a vertex lock and no attributes.

    Called through our own ctypes handle with a declared signature: the Python wrapper of
    meshoptimizer 0.2.30a0 declares none for this function, so its size_t arguments past the
    sixth go on the stack as 32-bit ints and the call crashes (segfault) or fails to convert
    the float ``target_error``."""
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


def nonmanifold_vertices(faces: np.ndarray) -> np.ndarray:
    """Vertices of edges shared by more than two faces (welded ids)."""
    f = np.asarray(faces, np.int64).reshape(-1, 3)
    if len(f) == 0:
        return np.zeros(0, np.int64)
    keys, counts = np.unique(_edge_keys(f), return_counts=True)
    n = int(f.max()) + 1
    bad = keys[counts > 2]
    return np.unique(np.concatenate([bad // n, bad % n]))


def peer_decimate(mesh: MeshData, target_tris: int, method: str,
                  preserve_border: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """A library's own decimation (vertices, faces), for comparison and fallback."""
    v, f = mesh.vertices, mesh.faces
    if method == "meshoptimizer":
        faces = meshopt_collapse(v, f, target_tris, preserve_border)
        used, faces = _compact(faces, len(v))
        return v[used], faces
    if method == "fast_simplification":
        import fast_simplification

        p, faces = fast_simplification.simplify(v, f, target_count=int(target_tris),
                                                preserve_border=preserve_border)
        used, faces = _compact(_drop_collapsed(faces), len(p))
        return np.asarray(p, np.float64)[used], faces
    if method == "pymeshlab":
        import pymeshlab

        ms = pymeshlab.MeshSet()
        ms.add_mesh(pymeshlab.Mesh(v, f))
        ms.meshing_decimation_quadric_edge_collapse(
            targetfacenum=int(target_tris), preserveboundary=preserve_border,
            preservenormal=True, optimalplacement=True, planarquadric=True, qualitythr=0.3,
            autoclean=True)
        m = ms.current_mesh()
        return np.asarray(m.vertex_matrix(), np.float64), np.asarray(m.face_matrix(), np.int64)
    raise ValueError(f"unknown peer method {method!r}")


# ---------------------------------------------------------------------- optimal placement


@dataclass(frozen=True)
class DenseQuadrics:
    """Per welded-position quadrics of the dense mesh and its edge graph, computed once per
    asset."""

    positions: np.ndarray   # (P, 3) welded positions
    faces: np.ndarray       # (M, 3) dense faces over welded ids
    q: np.ndarray           # (P, 9) upper triangle of sum w n n^T (xx xy xz yy yz zz), then
                            #        sum -w d n; w = a third of each adjacent face's area
    indptr: np.ndarray      # CSR vertex adjacency over welded ids
    indices: np.ndarray
    edge_length: float      # mean dense edge length


def _kernels() -> dict:
    """The numba kernels of ``_simplify_numba``, imported on first use (importing numba costs
    ~0.5 s, which processes that never simplify should not pay; Python's import lock makes a
    first use from two threads safe), compiled once and cached on disk."""
    from . import _simplify_numba

    return vars(_simplify_numba)


def dense_quadrics(positions: np.ndarray, faces: np.ndarray) -> DenseQuadrics:
    """Area-weighted plane quadrics of the dense faces (a third to each corner) and the
    symmetric vertex adjacency."""
    P = len(positions)
    acc = _kernels()["quadrics"](np.ascontiguousarray(positions, np.float64),
                                 np.ascontiguousarray(faces, np.int64), P)
    indptr, indices = _kernels()["adjacency"](np.ascontiguousarray(faces, np.int64), P)
    some = faces[:: max(1, len(faces) // 20_000)]  # a sample gives the mean well enough
    e = positions[some[:, 1]] - positions[some[:, 0]]
    edge = float(np.sqrt((e * e).sum(1)).mean()) if len(some) else 0.0
    return DenseQuadrics(positions, faces, acc, indptr, indices, edge)


def _cells(dq: DenseQuadrics, kept: np.ndarray) -> np.ndarray:
    """Per dense vertex: the index of the kept vertex it is fewest edges from (its cell), by a
    multi-source breadth-first search over the dense adjacency; -1 where none is connected."""
    return kernels.nearest_seed(dq.indptr, dq.indices, kept)


def place_vertices(dq: DenseQuadrics, kept: np.ndarray, faces: np.ndarray, start: np.ndarray,
                   regularization: float, locked: np.ndarray) -> tuple[np.ndarray, int]:
    """QEM optimal placement of simplified vertices after the collapse.

    ``kept``: welded dense id each simplified vertex sits on (its Voronoi seed); ``faces``
    index the simplified vertices; ``start`` their current positions. Each vertex minimises
    the quadric of its cell plus ``regularization`` x trace x |x - start|^2; locked vertices,
    moves that do not lower the cell's distance to the one-ring, and the corners of faces a
    move would flip keep ``start``. Returns (positions, vertices left in place).
    """
    cell = _cells(dq, kept)
    ok = cell >= 0
    K = len(kept)
    cq = np.stack([np.bincount(cell[ok], dq.q[ok, c], K) for c in range(9)], 1)
    A = np.empty((K, 3, 3))
    for c, (i, j) in enumerate([(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)]):
        A[:, i, j] = A[:, j, i] = cq[:, c]
    b = cq[:, 6:]
    reg = regularization * np.trace(A, axis1=1, axis2=2) + 1e-300
    x = np.linalg.solve(A + reg[:, None, None] * np.eye(3), (b + reg[:, None] * start)[..., None])
    x = x[..., 0]
    bad = locked | ~np.isfinite(x).all(1)
    x[bad] = start[bad]
    step = x - start
    limit = MAX_STEP * dq.edge_length
    length = np.linalg.norm(step, axis=1)
    far = length > limit
    x[far] = start[far] + step[far] * (limit / length[far])[:, None]
    x = _keep_improvements(dq, cell, faces, start, x)
    n0, _ = face_normals(start, faces)
    for _ in range(4):  # undo moves that flip or fold a face, until none does
        n1, _ = face_normals(x, faces)
        flipped = np.einsum("ij,ij->i", n0, n1) < 0.2
        if not flipped.any():
            break
        x[np.unique(faces[flipped])] = start[np.unique(faces[flipped])]
    return x, int(np.sum(np.all(x == start, axis=1) & ~locked))


def _keep_improvements(dq: DenseQuadrics, cell: np.ndarray, faces: np.ndarray,
                       start: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Keep a vertex's move only where it lowers the distance of its cell's dense points to
    its one-ring. The cell quadric is a proxy: a cell that spills over a crease onto a
    feature other vertices represent would pull a vertex off an exact flat; this catches it."""
    K = len(start)
    order = np.argsort(faces.ravel(), kind="stable")
    ring = (order // 3).astype(np.int64)
    ring_ptr = np.concatenate([[0], np.cumsum(np.bincount(faces.ravel(), minlength=K))])
    weight = dq.q[:, 0] + dq.q[:, 3] + dq.q[:, 5]  # a third of the adjacent area
    e0, e1 = _kernels()["cell_errors"](dq.positions, weight, cell, ring_ptr.astype(np.int64),
                                       ring, faces, start, x, K, ERROR_STRIDE)
    worse = np.any(x != start, axis=1) & (e1 >= e0)
    x = x.copy()
    x[worse] = start[worse]
    return x


# ------------------------------------------------------------------------ per-part budgets


def part_weights(mesh: MeshData, wid: np.ndarray,
                 curvature_weight: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(part labels, face counts, weights w_p = A_p x (1 + k x S_p)) of the dense mesh's
    parts; see the module docstring for S_p and why it averages sqrt(curvature)."""
    labels, inv, counts = _label_index(mesh.face_labels)
    P = int(wid.max()) + 1
    vn, pos, area = _kernels()["welded_normals"](
        np.ascontiguousarray(mesh.vertices, np.float64), np.ascontiguousarray(mesh.faces, np.int64),
        np.ascontiguousarray(wid, np.int64), P)
    # the mean over a part is a statistic: a strided sample of ~CURVATURE_SAMPLES faces
    # gives it (a part with no sampled face, a tiny one, falls back to its area alone)
    pick = np.arange(0, mesh.n_faces, max(1, mesh.n_faces // CURVATURE_SAMPLES))
    area_s, inv_s = area[pick], inv[pick]
    kappa = _kernels()["edge_curvature"](np.ascontiguousarray(wid[mesh.faces[pick]], np.int64),
                                         vn, pos)
    part_area = np.bincount(inv, area, len(labels))
    scale = np.sqrt(part_area)
    s = np.bincount(inv_s, area_s * np.sqrt(kappa * scale[inv_s]), len(labels)) \
        / np.maximum(np.bincount(inv_s, area_s, len(labels)), 1e-300)
    return labels, counts, part_area * (1 + curvature_weight * s)


def _label_index(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """np.unique(labels, return_inverse=True, return_counts=True) for small non-negative
    integer labels, by counting instead of sorting."""
    labels = np.asarray(labels)
    if not len(labels) or labels.min() < 0 or labels.max() > 4 * len(labels) + 1024:
        u, inv, counts = np.unique(labels, return_inverse=True, return_counts=True)
        return u, inv.reshape(-1), counts
    all_counts = np.bincount(labels)
    present = np.flatnonzero(all_counts)
    rank = np.zeros(len(all_counts), np.int64)
    rank[present] = np.arange(len(present))
    return present.astype(labels.dtype), rank[labels], all_counts[present]


def allocate_budgets(total: int, weights: np.ndarray, counts: np.ndarray,
                     floor: int = MIN_PART_FACES) -> np.ndarray:
    """Integer budgets proportional to ``weights`` that sum to ``total`` exactly (or to the
    faces there are, when fewer), each within [min(floor, count), count]; a part held at
    either bound hands the rest to the others (water-filling), then the fractions are rounded
    by largest remainders. When the floors alone exceed ``total`` the floors are returned
    (the caller trims the few extra faces)."""
    w = np.maximum(np.asarray(weights, np.float64), 0.0)
    counts = np.asarray(counts, np.int64)
    lo = np.minimum(floor, counts)
    total = min(int(total), int(counts.sum()))
    if lo.sum() >= total:
        return lo.copy()
    fixed = np.zeros(len(w), bool)
    budget = np.zeros(len(w))
    for _ in range(len(w) + 1):
        free = ~fixed
        left = total - budget[fixed].sum()
        wf = w[free].sum()
        share = np.where(free, left * (w / wf if wf > 0 else 1.0 / free.sum()), budget)
        over = free & (share > counts)  # caps first: what they free may lift a floor part
        under = free & (share < lo) if not over.any() else np.zeros(len(w), bool)
        if not (over.any() or under.any()):
            budget = share
            break
        budget[over], budget[under] = counts[over], lo[under]
        fixed |= over | under
        if fixed.all():
            break
    out = np.floor(budget + 1e-9).astype(np.int64)
    short = total - int(out.sum())
    if short > 0:
        frac = np.where(out < counts, budget - out, -np.inf)
        out[np.argsort(-frac, kind="stable")[:short]] += 1
    return out


def _collapse_per_part(prep: Prepared, split_pos: np.ndarray, labels: np.ndarray,
                       budgets: np.ndarray, lock_border: bool,
                       lock: np.ndarray | None, faces: np.ndarray | None = None) -> np.ndarray:
    """The collapse run once per part to its budget, smallest cut first: each pass sees the
    part's faces and its neighbours' faces around the shared border, with every vertex locked
    but the part's own and, on a border with a part not done yet, both copies of the border
    vertices (that border collapses as a seam, on both sides at once, and may take a few
    faces from the neighbour, whose own pass later cuts that many fewer). Borders with parts
    already done are locked, so a done part keeps its count; every pass hits its total
    exactly, so the budgets are met exactly unless a neighbour's border collapses pushed a
    part below its own (its deficit then stays with the last parts)."""
    copy_label = np.zeros(len(prep.split_src), np.int64)
    copy_label[prep.split_faces.ravel()] = np.repeat(prep.mesh.face_labels, 3)
    wid_of = prep.wid[prep.split_src]
    P = int(prep.wid.max()) + 1
    buf = _FaceBuffer(prep.split_faces if faces is None else faces, wid_of, copy_label)
    counts = np.bincount(buf.label[:buf.n], minlength=int(labels.max()) + 1)[labels] \
        if len(labels) and labels.min() >= 0 else \
        np.array([np.sum(buf.label[:buf.n] == p) for p in labels])
    done = np.zeros(P, bool)  # welded positions on parts whose pass is over
    on_p = np.zeros(P, bool)
    for i in np.argsort(counts - budgets, kind="stable"):
        part = labels[i]
        for _ in range(PART_PASSES):
            faces, wfaces, alive = buf.view()
            is_p = alive & (buf.label[:buf.n] == part)
            on_p[:] = False
            on_p[wfaces[is_p].ravel()] = True
            cut = int(is_p.sum()) - int(budgets[i])
            if cut <= 0:
                break
            in_sub = is_p | (alive & (on_p[wfaces[:, 0]] | on_p[wfaces[:, 1]]
                                      | on_p[wfaces[:, 2]]))
            used, local = _compact(faces[in_sub], len(split_pos))
            w = wid_of[used]
            locked = ((copy_label[used] != part) & ~on_p[w]) | done[w]
            if lock is not None:
                locked |= lock[used]
            kept = meshopt_collapse(split_pos[used], local, len(local) - cut, lock_border,
                                    locked)
            buf.replace(in_sub, used[kept])
            if len(kept) == len(local):
                break  # nothing left to collapse here (all locked)
        done |= on_p
    return buf.alive_faces()


class _FaceBuffer:
    """The per-part passes' faces: a pass marks the faces it took as dead and appends its
    result, instead of copying the whole (dense: ~1M) face array every pass. Alive faces
    keep their order (untouched faces first, then each pass's result)."""

    def __init__(self, faces: np.ndarray, wid_of: np.ndarray, copy_label: np.ndarray):
        self.wid_of, self.copy_label = wid_of, copy_label
        self.n = len(faces)
        cap = self.n + self.n // 4 + 1024
        self.faces = np.empty((cap, 3), faces.dtype)
        self.faces[:self.n] = faces
        self.wfaces = np.empty((cap, 3), wid_of.dtype)
        self.wfaces[:self.n] = wid_of[faces]
        self.label = np.empty(cap, np.int64)
        self.label[:self.n] = copy_label[faces[:, 0]]
        self.alive = np.zeros(cap, bool)
        self.alive[:self.n] = True

    def view(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.faces[:self.n], self.wfaces[:self.n], self.alive[:self.n]

    def replace(self, taken: np.ndarray, new: np.ndarray) -> None:
        self.alive[:self.n][taken] = False
        k = len(new)
        if self.n + k > len(self.faces):
            self._grow(self.n + k)
        self.faces[self.n:self.n + k] = new
        self.wfaces[self.n:self.n + k] = self.wid_of[new]
        self.label[self.n:self.n + k] = self.copy_label[new[:, 0]]
        self.alive[self.n:self.n + k] = True
        self.n += k

    def _grow(self, need: int) -> None:
        keep = np.flatnonzero(self.alive[:self.n])  # drop the dead rows while copying
        cap = max(2 * len(keep), need - self.n + len(keep)) + 1024
        for name in ("faces", "wfaces", "label"):
            old = getattr(self, name)
            new = np.empty((cap,) + old.shape[1:], old.dtype)
            new[:len(keep)] = old[keep]
            setattr(self, name, new)
        self.alive = np.zeros(cap, bool)
        self.alive[:len(keep)] = True
        self.n = len(keep)

    def alive_faces(self) -> np.ndarray:
        return self.faces[:self.n][self.alive[:self.n]]


# ------------------------------------------------------------------------------ decimation


@dataclass
class Decimation:
    """A simplified mesh with what happened on the way (for metrics and logs)."""

    mesh: MeshData
    seconds: dict
    watertight_in: bool
    watertight_out: bool
    fallback: str = ""
    unmoved: int = 0  # simplified vertices the placement left where the collapse put them
    retries: int = 0
    flips: int = 0  # sliver faces flipped away after the placement
    topped_up: int = 0  # faces added by edge splits to reach the exact target
    budgets: dict | None = None  # part label -> face budget, when per-part budgets were used


@dataclass(frozen=True)
class Prepared:
    """The dense mesh split for the collapse, computed once per asset.

    The dense quadrics and the closed check over them are computed on a worker thread (the
    numba kernels release the GIL, and so does meshoptimizer's ctypes call): the first collapse
    runs meanwhile, and ``quadrics`` / ``watertight`` wait for them on first use.
    """

    mesh: MeshData
    split_faces: np.ndarray   # faces over split vertices (per part label)
    split_src: np.ndarray     # dense vertex index of each split vertex
    wid: np.ndarray           # welded position id of each dense vertex
    _pending: Future          # -> (watertight, DenseQuadrics | None)

    @property
    def watertight(self) -> bool:
        return self._pending.result()[0]

    @property
    def quadrics(self) -> DenseQuadrics | None:
        return self._pending.result()[1]


_BACKGROUND = ThreadPoolExecutor(max_workers=1, thread_name_prefix="simplify-quadrics")


def prepare(mesh: MeshData, preserve_parts: bool, with_quadrics: bool,
            background: bool = True) -> Prepared:
    """Weld, split per part, and (``background``: on the worker thread) the dense quadrics."""
    wid = weld_ids(mesh.vertices)
    positions = np.zeros((int(wid.max()) + 1 if len(wid) else 0, 3))
    positions[wid] = mesh.vertices
    wfaces = wid[mesh.faces]
    if preserve_parts and len(np.unique(mesh.face_labels)) > 1:
        split_faces, split_src = _split_by_label(mesh)
    else:
        split_faces, split_src = mesh.faces, np.arange(mesh.n_vertices)
    if background:
        pending = _BACKGROUND.submit(_closed_and_quadrics, positions, wfaces, with_quadrics)
    else:
        pending = Future()
        pending.set_result(_closed_and_quadrics(positions, wfaces, with_quadrics))
    return Prepared(mesh, split_faces, split_src, wid, pending)


def _closed_and_quadrics(positions: np.ndarray, wfaces: np.ndarray,
                         with_quadrics: bool) -> tuple[bool, DenseQuadrics | None]:
    dq = dense_quadrics(positions, wfaces) if with_quadrics else None
    watertight = bool(len(wfaces)) and (
        (dq is not None and _kernels()["closed_oriented"](dq.indptr, dq.indices))
        or is_watertight(wfaces))
    return watertight, dq


def _build(source: MeshData, src_vertex: np.ndarray, positions: np.ndarray, faces: np.ndarray,
           labels: np.ndarray, mid_of: np.ndarray | None = None) -> MeshData:
    """Output MeshData: colours from the surviving original vertices (``mid_of``: the end
    points of each vertex added after them by ``top_up``, which takes their mean), normals
    recomputed."""
    colors = None if source.vertex_colors is None else np.asarray(source.vertex_colors)[src_vertex]
    if colors is not None and mid_of is not None and len(mid_of):
        mean = colors[mid_of].astype(np.float64).mean(axis=1)
        if np.issubdtype(colors.dtype, np.integer):
            mean = np.rint(mean)
        colors = np.concatenate([colors, mean.astype(colors.dtype)])
    out = MeshData(positions, faces, labels.astype(np.int32), vertex_colors=colors)
    if source.vertex_normals is not None:
        out = out.replace(vertex_normals=smooth_normals(out))
    return out


def _collapse_closed(prep: Prepared, split_pos: np.ndarray, target_tris: int,
                     lock_border: bool, parts: tuple | None = None) -> tuple[np.ndarray, int]:
    """The collapse, kept closed and at the exact count; returns (faces, retries).

    meshoptimizer sometimes (i) folds a sliver into two back-to-back triangles (a "pillow")
    or (ii) pinches two sheets together along one edge; both make an edge non-manifold.
    Pillows are dropped (they enclose nothing); a pinch is retried with the dense vertices
    around it locked, so the collapse happens elsewhere. Dropped pillows (or, with per-part
    budgets, a part pushed below its budget by a neighbour's border collapses) leave the count
    short by a few faces; past COUNT_SLACK the collapse is re-run aiming higher by as many faces, and
    a final collapse trims any overshoot. ``parts``: (labels, face counts, weights) for
    per-part budgets (re-allocated for each aim), or None for one global collapse.

    Retries are cheap because the dense mesh is first collapsed once to PRE_FACTOR x the
    target (a coarse pass; see _coarse_pass for a pinch in it): the retries start from that
    (every face of it is a dense face with re-pointed corners, over the same split vertices,
    so locks and labels still apply) instead of from the ~1M dense faces. The coarse pass
    itself costs about one full collapse, since most of meshoptimizer's time goes into the
    first, largest passes.
    """
    wid_of = prep.wid[prep.split_src]
    base, base_pinched = _coarse_pass(prep, split_pos, target_tris, lock_border, parts, wid_of)
    lock, aim, retries = None, target_tris, 0
    for _ in range(4):
        if parts is None:
            raw = meshopt_collapse(split_pos, base, aim, lock_border, lock)
        else:
            budgets = allocate_budgets(aim, parts[2], parts[1])
            raw = _collapse_per_part(prep, split_pos, parts[0], budgets, lock_border, lock,
                                     base)
        pillows = pillow_faces(wid_of[raw])
        faces = raw[~pillows]
        pinched = nonmanifold_vertices(wid_of[faces]) if prep.watertight else []
        if len(pinched):
            lock = _lock_around(prep, wid_of[faces], pinched, lock)
            if base_pinched:  # locks cannot undo a pinch already in the base
                base, base_pinched = prep.split_faces, False
        elif len(faces) < target_tris - COUNT_SLACK * target_tris \
                and aim < len(base):
            aim = min(aim + (target_tris - len(faces)), len(base))
        else:
            break
        retries += 1
    if len(faces) > target_tris:
        faces = meshopt_collapse(split_pos, faces, target_tris, lock_border)
        faces = faces[~pillow_faces(wid_of[faces])]
    return faces, retries


def _coarse_pass(prep: Prepared, split_pos: np.ndarray, target_tris: int, lock_border: bool,
                 parts: tuple | None, wid_of: np.ndarray) -> tuple[np.ndarray, bool]:
    """(faces, pinched): the dense faces collapsed to PRE_FACTOR x the target, or the dense
    faces themselves when they are few enough. ``pinched``: the coarse faces pinch somewhere
    (a non-manifold edge or vertex of welded positions); the final pass usually collapses such
    a pinch away (measured: every pinched coarse pass of benchmarks/simplify.py), and the caller
    goes back to the dense faces when it does not."""
    aim = PRE_FACTOR * target_tris
    if len(prep.split_faces) <= 2 * aim:
        return prep.split_faces, False
    if parts is None:
        coarse = meshopt_collapse(split_pos, prep.split_faces, aim, lock_border)
    else:
        budgets = allocate_budgets(aim, parts[2], parts[1])
        coarse = _collapse_per_part(prep, split_pos, parts[0], budgets, lock_border, None)
    coarse = coarse[~pillow_faces(wid_of[coarse])]
    return coarse, bool(prep.watertight and len(nonmanifold_vertices(wid_of[coarse])))


def _lock_around(prep: Prepared, wfaces: np.ndarray, pinched: np.ndarray,
                 lock: np.ndarray | None) -> np.ndarray:
    """Lock (per split vertex) the dense vertices whose nearest surviving vertex is a pinched
    vertex or one of its neighbours."""
    dq = prep.quadrics
    kept = np.unique(wfaces)
    near = np.zeros(len(dq.positions), bool)
    near[pinched] = True
    for _ in range(2):  # two rings: one was often not enough to move the pinch away
        near[wfaces[near[wfaces].any(1)].ravel()] = True
    cell = _cells(dq, kept)
    locked_w = np.zeros(len(dq.positions), bool)
    ok = cell >= 0
    locked_w[ok] = near[kept[cell[ok]]]
    new = locked_w[prep.wid[prep.split_src]]
    return new if lock is None else (lock | new)


def fast_qem(prep: Prepared, target_tris: int, options: SimplifyOptions) -> Decimation:
    """Ours: meshoptimizer's collapse over part-split vertices, then optimal placement."""
    mesh, seconds = prep.mesh, {}
    parts, budgets = None, None
    if options.part_budget == "area_curvature" and options.preserve_parts \
            and len(np.unique(mesh.face_labels)) > 1:
        t = time.perf_counter()
        parts = part_weights(mesh, prep.wid, options.part_curvature_weight)
        alloc = allocate_budgets(target_tris, parts[2], parts[1])
        budgets = {int(p): int(b) for p, b in zip(parts[0], alloc)}
        seconds["budgets"] = time.perf_counter() - t
    elif options.part_budget == "area_curvature" and mesh.n_faces:
        budgets = {int(mesh.face_labels[0]): int(target_tris)} \
            if len(np.unique(mesh.face_labels)) == 1 else None
    t = time.perf_counter()
    split_pos = mesh.vertices[prep.split_src]
    faces, retries = _collapse_closed(prep, split_pos, target_tris, options.preserve_border,
                                      parts)
    seconds["collapse"] = time.perf_counter() - t
    t = time.perf_counter()
    kept_split, local = _compact(faces, len(split_pos))
    src = prep.split_src[kept_split]
    wid = prep.wid[src]
    # one placement per welded position (seam copies move together)
    ukept, inv = np.unique(wid, return_inverse=True)
    inv = inv.reshape(-1)
    wfaces = inv[local]
    start = prep.quadrics.positions[ukept]
    locked = boundary_vertices(wfaces, len(ukept)) if options.preserve_border else \
        np.zeros(len(ukept), bool)
    x, unmoved = place_vertices(prep.quadrics, ukept, wfaces, start,
                                 options.placement_regularization, locked)
    seconds["placement"] = time.perf_counter() - t
    labels = _labels_of(prep, kept_split, local)
    local, flips = flip_slivers(x[inv], local, labels)
    collapsed = len(local)
    positions, local, labels, mid_of = top_up(x[inv], local, labels, inv,
                                              target_tris - collapsed, budgets)
    out = _build(mesh, src, positions, local, labels, mid_of)
    return Decimation(out, seconds, prep.watertight, is_watertight(wfaces), unmoved=unmoved,
                      retries=retries, flips=flips, budgets=budgets,
                      topped_up=len(local) - collapsed)


def flip_slivers(vertices: np.ndarray, faces: np.ndarray, labels: np.ndarray,
                 ratio: float = 1e-3, rounds: int = 4) -> tuple[np.ndarray, int]:
    """Flip away slivers: faces whose third vertex lies (almost) on their longest edge.

    Collapses along straight borders and flat fans leave such zero-area faces, which carry no
    normal and trouble UV unwrapping and tangents. Each sliver (a, b, c), with c within
    ``ratio`` x |ab| of the edge ab, and its neighbour (b, a, d) across ab become (c, a, d)
    and (d, b, c): the same quad, split along cd. Only within one part (the neighbour's label
    must match, so part borders stay where they are), only where cd is not an edge yet (the
    mesh stays manifold and closed) and where both new faces keep the neighbour's
    orientation. Vertex positions and the face count do not change. Returns (faces, flips).
    """
    faces = faces.copy()
    total = 0
    for _ in range(rounds):
        p = vertices[faces]
        edges = np.roll(p, -1, axis=1) - p                    # edge k: corner k -> k+1
        length2 = np.einsum("fkd,fkd->fk", edges, edges)
        k = np.argmax(length2, axis=1)
        longest = np.sqrt(length2[np.arange(len(faces)), k])
        twice_area = np.linalg.norm(np.cross(edges[:, 0], -edges[:, 2]), axis=1)
        cand = np.flatnonzero((longest > 0) & (twice_area < ratio * longest ** 2))
        if not len(cand):
            break
        n = len(vertices)
        directed = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
        owner = dict(zip((directed[:, 0] * n + directed[:, 1]).tolist(),
                         np.repeat(np.arange(len(faces)), 3).tolist()))
        used = np.zeros(len(faces), bool)
        flips = 0
        for i in cand.tolist():
            a, b, c = (int(faces[i, (k[i] + j) % 3]) for j in range(3))
            g = owner.get(b * n + a)
            if g is None or used[i] or used[g] or labels[g] != labels[i]:
                continue
            d = int(next(x for x in faces[g] if x != a and x != b))
            if d == c or c * n + d in owner or d * n + c in owner:
                continue
            ng = np.cross(vertices[a] - vertices[b], vertices[d] - vertices[b])
            n1 = np.cross(vertices[a] - vertices[c], vertices[d] - vertices[c])
            n2 = np.cross(vertices[b] - vertices[d], vertices[c] - vertices[d])
            if n1 @ ng <= 0 or n2 @ ng <= 0:
                continue
            faces[i], faces[g] = (c, a, d), (d, b, c)
            owner[c * n + d] = owner[d * n + c] = -1  # taken: no second flip onto cd
            used[i] = used[g] = True
            flips += 1
        total += flips
        if not flips:
            break
    return faces, total


def top_up(vertices: np.ndarray, faces: np.ndarray, labels: np.ndarray, wid: np.ndarray,
           missing: int, budgets: dict | None = None,
           fat: float = 0.05) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Add ``missing`` faces by splitting edges at their midpoints, so the count is exact.

    The collapse can end a few faces short of the target (a dropped pillow, an odd step at a
    border, a neighbour part's border collapses). The surface does not change: each split puts
    a vertex on an existing edge. Longest edges first (with ``budgets``, label -> faces, first
    in the parts below their budget, as far as each is below), each face split at most once,
    and only where both faces at the edge are well shaped (twice the area >= ``fat`` x the
    edge length squared, so no sliver is made). An edge inside a part (exactly two faces, over
    the same vertex copies) gives two faces more, with the mesh kept closed and manifold (a
    non-manifold edge is never split: its other faces would get a T-junction); an open border
    edge (one face also over welded positions ``wid``) gives one, which is used only for an odd
    remainder. Part borders are never split (their two sides use separate vertex copies, and
    splitting one side would crack the seam), and a closed mesh only has even face counts, so
    an odd remainder on it stays one short. Returns (vertices, faces, labels, mid_of): mid_of
    (k, 2) gives the end points of the k vertices appended.
    """
    none = np.zeros((0, 2), np.int64)
    if missing <= 0 or not len(faces):
        return vertices, faces, labels, none
    n = len(vertices)
    a, b = faces.ravel(), np.roll(faces, -1, axis=1).ravel()      # half-edge k: corner k -> k+1
    face_of = np.repeat(np.arange(len(faces)), 3)
    key, rkey = a * n + b, b * n + a
    order = np.argsort(key)
    pos = np.minimum(np.searchsorted(key[order], rkey), len(key) - 1)
    twin = np.where(key[order][pos] == rkey, order[pos], -1)      # opposite half-edge or -1
    edge = vertices[b] - vertices[a]
    length2 = np.einsum("ij,ij->i", edge, edge)
    p = vertices[faces]
    twice_area = np.linalg.norm(np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]), axis=1)
    ok = (length2 > 0) & (twice_area[face_of] >= fat * length2)
    # edges on exactly two faces (one half-edge each way), also over welded positions: a
    # split on a non-manifold edge would leave its other faces with a T-junction
    wkey = np.minimum(wid[a], wid[b]) * (int(wid.max()) + 1) + np.maximum(wid[a], wid[b])
    _, winv, wcount = np.unique(wkey, return_inverse=True, return_counts=True)
    wcount = wcount[winv.reshape(-1)]
    sorted_key = key[order]
    repeated = np.zeros(len(key), bool)
    repeated[order[1:][sorted_key[1:] == sorted_key[:-1]]] = True
    repeated[order[:-1][sorted_key[1:] == sorted_key[:-1]]] = True
    inner = ok & (twin >= 0) & (a < b) & (wcount == 2) & ~repeated
    inner[inner] &= ok[twin[inner]] & ~repeated[twin[inner]]
    # an open border: no twin among the vertex copies, nor among welded positions
    border = ok & (twin < 0) & (wcount == 1)
    by_length = np.argsort(-length2, kind="stable")
    inner_order, border_order = by_length[inner[by_length]], by_length[border[by_length]]
    room = None if budgets is None else {
        int(k): int(budgets.get(int(k), 0)) - int(c)
        for k, c in zip(*np.unique(labels, return_counts=True))}

    used = np.zeros(len(faces), bool)
    splits = []                                                    # (half-edge, twin or -1)
    left = missing
    for restricted in ((True, False) if room is not None else (False,)):
        for cand, gain in ((inner_order, 2), (border_order, 1)):
            for h in cand.tolist():
                if left < gain or (gain == 1 and left != 1):
                    break
                f = face_of[h]
                g = face_of[twin[h]] if gain == 2 else f
                if used[f] or used[g] or (restricted and room[int(labels[f])] < gain):
                    continue
                used[f] = used[g] = True
                splits.append((h, int(twin[h]) if gain == 2 else -1))
                left -= gain
                if room is not None:
                    room[int(labels[f])] -= gain
    if not splits:
        return vertices, faces, labels, none
    faces = faces.copy()
    new_faces, new_labels, mids = [faces], [labels], []
    for h, t in splits:
        m = n + len(mids)
        mids.append((a[h], b[h]))
        for half in (h, t):
            if half < 0:
                continue
            f, k = face_of[half], half % 3
            u, v, w = faces[f, k], faces[f, (k + 1) % 3], faces[f, (k + 2) % 3]
            faces[f] = (u, m, w)                                   # (u, v, w) split on uv
            new_faces.append(np.array([[m, v, w]]))
            new_labels.append(labels[f:f + 1])
    mid_of = np.asarray(mids, np.int64)
    vertices = np.concatenate([vertices, vertices[mid_of].mean(axis=1)])
    return vertices, np.concatenate(new_faces), np.concatenate(new_labels), mid_of


def _labels_of(prep: Prepared, kept_split: np.ndarray, local: np.ndarray) -> np.ndarray:
    """Exact part label of each output face: the label its (split) corners belong to (all
    three agree: copies are per label). Without the split (one part, or preserve_parts off),
    the label of any input face that used the corner."""
    copy_label = np.zeros(len(prep.split_src), np.int32)
    copy_label[prep.split_faces.ravel()] = np.repeat(prep.mesh.face_labels, 3)
    return copy_label[kept_split][local[:, 0]]


def peer(prep: Prepared, target_tris: int, method: str, preserve_border: bool) -> Decimation:
    """A peer library's decimation, labels and colours transferred by nearest neighbour."""
    from scipy.spatial import cKDTree

    mesh = prep.mesh
    t = time.perf_counter()
    v, f = peer_decimate(mesh, target_tris, method, preserve_border)
    seconds = {"collapse": time.perf_counter() - t}
    labels = np.zeros(len(f), np.int32)
    if len(f) and len(np.unique(mesh.face_labels)) > 1:
        cen = mesh.vertices[mesh.faces].mean(1)
        _, idx = cKDTree(cen).query(v[f].mean(1), workers=stage_cpus())
        labels = mesh.face_labels[idx]
    elif len(mesh.face_labels):
        labels[:] = mesh.face_labels[0]
    src = (cKDTree(mesh.vertices).query(v, workers=stage_cpus())[1] if len(v)
           else np.zeros(0, np.int64))
    out = _build(mesh, src, v, f, labels)
    return Decimation(out, seconds, prep.watertight, is_watertight(weld_ids(v)[f]))


def decimate_prepared(prep: Prepared, target_tris: int, options: SimplifyOptions,
                      sku: str = "-") -> Decimation:
    """Decimate with the chosen method. A result that opened a watertight input is replaced by
    pymeshlab's when that one is closed (slower; it too can open thin meshes, then ours stays
    and ``watertight_out`` says so)."""
    if options.method == "fast_qem":
        result = fast_qem(prep, target_tris, options)
    else:
        result = peer(prep, target_tris, options.method, options.preserve_border)
    if result.watertight_in and not result.watertight_out and options.method != "pymeshlab":
        fb = peer(prep, target_tris, "pymeshlab", options.preserve_border)
        log.warning("%s simplify: %s opened a watertight mesh at %d tris; pymeshlab %s", sku,
                    options.method, target_tris,
                    "kept it closed: using it" if fb.watertight_out else "too: keeping ours")
        if fb.watertight_out:
            fb.fallback = "pymeshlab"
            fb.seconds = {k: result.seconds.get(k, 0) + fb.seconds.get(k, 0)
                          for k in set(result.seconds) | set(fb.seconds)}
            result = fb
    return result


def decimate(mesh: MeshData, target_tris: int, preserve_border: bool = True,
             method: str = "fast_qem", **option_overrides) -> MeshData:
    """Simplify an in-memory mesh to ``target_tris`` faces (unchanged when within budget)."""
    if mesh.n_faces <= target_tris:
        return mesh
    options = SimplifyOptions(target_tris=int(target_tris), preserve_border=preserve_border,
                              method=method, **option_overrides)
    prep = prepare(mesh, options.preserve_parts, method == "fast_qem")
    return decimate_prepared(prep, target_tris, options).mesh


# --------------------------------------------------------------------------------- error


def sample_surface(vertices: np.ndarray, faces: np.ndarray, n: int,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` area-uniform points on the surface and the face each lies on."""
    t = vertices[faces]
    _, area = face_normals(vertices, faces)
    cdf = np.cumsum(area)
    idx = np.minimum(np.searchsorted(cdf, rng.random(n) * cdf[-1]), len(faces) - 1)
    r1, r2 = np.sqrt(rng.random(n)), rng.random(n)
    tt = t[idx]
    pts = ((1 - r1)[:, None] * tt[:, 0] + (r1 * (1 - r2))[:, None] * tt[:, 1]
           + (r1 * r2)[:, None] * tt[:, 2])
    return pts, idx


def _closest(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray):
    import open3d as o3d

    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(vertices.astype(np.float32), faces.astype(np.uint32))
    ans = scene.compute_closest_points(points.astype(np.float32))
    return ans["points"].numpy().astype(np.float64), ans["primitive_ids"].numpy().astype(np.int64)


def surface_error(dense: MeshData, simple: MeshData, samples: int = 100_000,
                  seed: int = 0) -> dict[str, float]:
    """Two-sided point-to-surface error of ``simple`` against ``dense``, with the dense mesh's
    bounding-box diagonal scaled to 1: ``chamfer`` (mean of the two mean distances),
    ``hausdorff`` (max of the two max distances), ``normal_error_deg`` (mean angle between a
    dense sample's face normal and the normal of the closest simplified face)."""
    rng = np.random.default_rng(seed)
    lo, hi = dense.bounds()
    diag = float(np.linalg.norm(hi - lo)) or 1.0
    pd, fd = sample_surface(dense.vertices, dense.faces, samples, rng)
    ps, _ = sample_surface(simple.vertices, simple.faces, samples, rng)
    to_simple, prim = _closest(simple.vertices, simple.faces, pd)
    to_dense, _ = _closest(dense.vertices, dense.faces, ps)
    a = np.linalg.norm(to_simple - pd, axis=1)
    b = np.linalg.norm(to_dense - ps, axis=1)
    nd, _ = face_normals(dense.vertices, dense.faces[fd])
    ns, _ = face_normals(simple.vertices, simple.faces[prim])
    angle = np.degrees(np.arccos(np.clip(np.einsum("ij,ij->i", nd, ns), -1, 1)))
    return {"chamfer": float((a.mean() + b.mean()) / 2 / diag),
            "hausdorff": float(max(a.max(), b.max()) / diag),
            "normal_error_deg": float(angle.mean())}


# ----------------------------------------------------------------------------- collision


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
    """Convex hulls for physics: one per part when there are 2..max_hulls parts (or ``method``
    is "parts"), else CoACD on a ~3k-face copy; hull index in ``face_labels``."""
    parts = np.unique(mesh.face_labels)
    hulls = []
    if method == "parts" or (method == "auto" and 1 < len(parts) <= max_hulls):
        for p in parts[:max_hulls]:
            h = _hull(mesh.vertices[np.unique(mesh.faces[mesh.face_labels == p])])
            if h is not None:
                hulls.append(h)
    else:
        import coacd

        coacd.set_log_level("error")
        small = mesh if mesh.n_faces <= 3000 else decimate(mesh, 3000, method="meshoptimizer")
        pieces = coacd.run_coacd(coacd.Mesh(small.vertices, small.faces), threshold=0.08,
                                 max_convex_hull=max_hulls, preprocess_mode="off",
                                 resolution=1000, mcts_iterations=60, mcts_max_depth=2,
                                 mcts_nodes=10, seed=0)
        hulls = [(np.asarray(v, np.float64), np.asarray(f, np.int64)) for v, f in pieces]
    if not hulls:
        hulls = [h for h in [_hull(mesh.vertices)] if h is not None]
    return MeshData.concatenate(MeshData(v, f, np.full(len(f), i, np.int32))
                                for i, (v, f) in enumerate(hulls))


# --------------------------------------------------------------------------------- stage


def _part_faces(mesh: MeshData) -> str:
    """JSON {part label: faces} (a flat scalar for the catalog)."""
    labels, counts = np.unique(mesh.face_labels, return_counts=True)
    return json.dumps({str(int(a)): int(b) for a, b in zip(labels, counts)})


def _part_counts(mesh: MeshData) -> str:
    labels, counts = np.unique(mesh.face_labels, return_counts=True)
    return ", ".join(f"{int(a)}:{int(b)}" for a, b in zip(labels, counts))


@stage(NAME, "0.2.0", SimplifyOptions, Resources(cpus=1, memory_mb=3072))
def simplify(state: AssetState, options: SimplifyOptions) -> StageResult:
    """Decimate ``clean_mesh`` to the triangle budget as ``mesh``; optional LODs and hulls."""
    clean = load_mesh(state, "clean_mesh")
    t0 = time.perf_counter()
    artifacts, metrics = {}, {}
    if clean.n_faces <= options.target_tris:
        out, result = clean, None
        artifacts["mesh"] = state.ref("clean_mesh")
    else:
        prep = prepare(clean, options.preserve_parts, options.method == "fast_qem")
        metrics["simplify_seconds_prepare"] = time.perf_counter() - t0
        result = decimate_prepared(prep, options.target_tris, options, state.sku)
        out = result.mesh
        if out.n_faces == 0:
            raise ProcessingError(
                f"simplification of clean_mesh ({clean.n_faces} faces) left no faces",
                "raise simplify target_tris for this SKU, or check the cleanup output")
        artifacts["mesh"] = save_mesh(state, out)
        for k, v in result.seconds.items():
            metrics[f"simplify_seconds_{k}"] = v
    metrics.update({
        "simplify_tris_in": clean.n_faces,
        "simplify_tris_out": out.n_faces,
        "simplify_verts_out": out.n_vertices,
        "simplify_target_met": out.n_faces <= options.target_tris,
        "simplify_method": options.method if result is None or not result.fallback
        else result.fallback,
        "simplify_parts": len(np.unique(out.face_labels)),
        "simplify_part_faces": _part_faces(out),
    })
    if result is not None and result.budgets is not None and not result.fallback:
        metrics["simplify_part_budgets"] = json.dumps({str(k): v for k, v in
                                                       result.budgets.items()})
    if result is not None:
        metrics["simplify_watertight_in"] = result.watertight_in
        metrics["simplify_watertight_out"] = result.watertight_out
        metrics["simplify_vertices_unmoved"] = result.unmoved
        metrics["simplify_collapse_retries"] = result.retries
        metrics["simplify_slivers_flipped"] = result.flips
        metrics["simplify_faces_topped_up"] = result.topped_up
    else:
        wt = is_watertight(weld_ids(clean.vertices)[clean.faces])
        metrics["simplify_watertight_in"] = metrics["simplify_watertight_out"] = wt
    if options.measure_error:
        t = time.perf_counter()
        err = surface_error(clean, out, options.error_samples) if out is not clean else \
            {"chamfer": 0.0, "hausdorff": 0.0, "normal_error_deg": 0.0}
        metrics.update({f"simplify_{k}": v for k, v in err.items()})
        metrics["simplify_seconds_measure"] = time.perf_counter() - t
    if options.lods:
        t = time.perf_counter()
        lod_meshes = _lods(out, options)
        for i, lod in enumerate(lod_meshes, start=1):
            artifacts[f"lod{i}"] = save_mesh(state, lod)
            metrics[f"simplify_lod{i}_tris"] = lod.n_faces
        metrics["simplify_seconds_lods"] = time.perf_counter() - t
    if options.collision_hulls:
        t = time.perf_counter()
        base = lod_meshes[-1] if options.lods else out
        hulls = collision_hulls(base, options.collision_hulls, options.collision_method)
        artifacts["collision"] = save_mesh(state, hulls)
        metrics["simplify_collision_hulls"] = len(np.unique(hulls.face_labels)) \
            if hulls.n_faces else 0
        metrics["simplify_seconds_collision"] = time.perf_counter() - t
    metrics["simplify_seconds_total"] = time.perf_counter() - t0
    log.info("%s simplify: tris %d -> %d (target %d, %s), parts [%s]", state.sku, clean.n_faces,
             out.n_faces, options.target_tris, metrics["simplify_method"], _part_counts(out))
    return StageResult(artifacts=artifacts, metrics=metrics)


def _lods(lod0: MeshData, options: SimplifyOptions) -> list[MeshData]:
    """LOD1.. each from the previous level (cheap: a few thousand faces), with the part borders
    and labels kept the same way as LOD0."""
    lods, prev = [], lod0
    for n in options.lods:
        lod = prev if prev.n_faces <= n else decimate(
            prev, n, options.preserve_border, options.method,
            placement_regularization=options.placement_regularization,
            preserve_parts=options.preserve_parts, part_budget=options.part_budget,
            part_curvature_weight=options.part_curvature_weight)
        lods.append(lod)
        prev = lod
    return lods

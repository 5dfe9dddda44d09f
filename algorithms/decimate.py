"""Decimation ("fast_qem"): meshoptimizer's quadric collapse over part-split vertices, made
closed and exact, then QEM optimal placement against the dense surface.

See ``tasks/simplify.py`` for the method and why; this module holds the collapse passes
(coarse pass, per-part passes, pinch retries, pillows), the peer libraries' decimations
(meshoptimizer, fast-simplification, pymeshlab) used for comparison and as the closed-mesh
fallback, and ``decimate``, the one entry point for an in-memory mesh.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ..core.mesh import MeshData
from ..core.stage import stage_cpus
from ..geometry.closed import boundary_vertices, is_watertight, nonmanifold_vertices
from ..geometry.meshopt import meshopt_collapse
from ..geometry.normals import smooth_normals
from ..geometry.topology import compact as _compact
from ..geometry.topology import drop_collapsed as _drop_collapsed
from ..geometry.topology import pillow_faces
from ..geometry.weld import weld_ids
from .edge_ops import flip_slivers, top_up
from .part_budgets import allocate_budgets, part_weights
from .qem_placement import DenseQuadrics, _cells, _kernels, dense_quadrics, place_vertices

log = logging.getLogger(__name__)


COUNT_SLACK = 0.001  # dropped pillows may leave the count this share short without a re-run


PRE_FACTOR = 4  # the coarse pass stops at this many times the target (see _collapse_closed)


METHODS = ("fast_qem", "meshoptimizer", "fast_simplification", "pymeshlab")


PART_BUDGETS = ("area_curvature", "global")


@dataclass(frozen=True)
class QemSettings:
    """How to decimate (the fields of ``SimplifyOptions`` the algorithm reads; see there)."""

    method: str = "fast_qem"
    preserve_border: bool = True
    placement_regularization: float = 0.01
    preserve_parts: bool = True
    part_budget: str = "area_curvature"
    part_curvature_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.part_budget not in PART_BUDGETS:
            raise ValueError(f"part_budget must be one of {PART_BUDGETS}, got "
                             f"{self.part_budget!r}")
        if not self.placement_regularization > 0:
            raise ValueError("placement_regularization must be > 0, got "
                             f"{self.placement_regularization}")


PART_PASSES = 4  # collapses per part: border collapses also remove neighbour faces, so a
                 # pass ends above the part's budget by those; the next one takes the rest


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
    positions: np.ndarray | None = None  # welded positions (wid -> position)
    wfaces: np.ndarray | None = None     # the dense faces over welded positions

    @property
    def watertight(self) -> bool:
        return self._pending.result()[0]

    @property
    def quadrics(self) -> DenseQuadrics | None:
        return self._pending.result()[1]


_BACKGROUND = ThreadPoolExecutor(max_workers=1, thread_name_prefix="simplify-quadrics")


def prepare(mesh: MeshData, preserve_parts: bool, with_quadrics: bool,
            background: bool = True) -> Prepared:
    """Weld, split per part, and the dense quadrics (``background``: on the worker thread,
    where the running stage was granted a second CPU)."""
    wid = weld_ids(mesh.vertices)
    positions = np.zeros((int(wid.max()) + 1 if len(wid) else 0, 3))
    positions[wid] = mesh.vertices
    wfaces = wid[mesh.faces]
    if preserve_parts and len(np.unique(mesh.face_labels)) > 1:
        split_faces, split_src = _split_by_label(mesh)
    else:
        split_faces, split_src = mesh.faces, np.arange(mesh.n_vertices)
    if background and stage_cpus() >= 2:  # a second thread only on a second granted CPU
        pending = _BACKGROUND.submit(_closed_and_quadrics, positions, wfaces, with_quadrics)
    else:
        pending = Future()
        pending.set_result(_closed_and_quadrics(positions, wfaces, with_quadrics))
    return Prepared(mesh, split_faces, split_src, wid, pending, positions, wfaces)


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
                     lock_border: bool, parts: tuple | None = None,
                     corners: np.ndarray | None = None,
                     start: np.ndarray | None = None) -> tuple[np.ndarray, int]:
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
    first, largest passes. ``start``: the split faces after ``flat_collapse`` (the dense faces
    when None), where the coarse pass begins.
    """
    wid_of = prep.wid[prep.split_src]
    base, base_pinched = _coarse_pass(prep, split_pos, target_tris, lock_border, parts, wid_of,
                                      corners, start)
    lock, aim, retries = corners, target_tris, 0
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
                 parts: tuple | None, wid_of: np.ndarray,
                 corners: np.ndarray | None = None,
                 start: np.ndarray | None = None) -> tuple[np.ndarray, bool]:
    """(faces, pinched): the dense faces (or ``start``, the flat pre-collapse's faces)
    collapsed to PRE_FACTOR x the target, or those faces themselves when they are few enough. ``pinched``: the coarse faces pinch somewhere
    (a non-manifold edge or vertex of welded positions); the final pass usually collapses such
    a pinch away (measured: every pinched coarse pass of benchmarks/simplify.py), and the caller
    goes back to the dense faces when it does not."""
    aim = PRE_FACTOR * target_tris
    dense = prep.split_faces if start is None else start
    if len(dense) <= 2 * aim:
        return dense, False
    if parts is None:
        coarse = meshopt_collapse(split_pos, dense, aim, lock_border, corners)
    else:
        budgets = allocate_budgets(aim, parts[2], parts[1])
        coarse = _collapse_per_part(prep, split_pos, parts[0], budgets, lock_border, corners,
                                    dense)
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


FLAT_TOL = 1e-7         # 1 - cos of a dihedral under which two faces count as coplanar
TURN_TOL = 1e-3         # a crease turning by more than this (radians) at a vertex: a corner
FACETED_SHARE = 0.5     # share of flat vertices (all faces coplanar) from which a mesh counts
                        # as faceted
CORNER_SHARE = 8        # corners locked only when at most target / this many (a quarter of
                        # a closed result's vertices)


def feature_corners(prep: Prepared, target_tris: int) -> np.ndarray | None:
    """Lock (per split vertex) for the corners of a faceted mesh's crease network, or None.

    Why: on a faceted input (a CAD export or scan whose flat faces were split into many
    coplanar triangles) most collapses cost no error at all, but meshoptimizer's pass takes a
    few costly ones (a hole's rim vertex, a corner where a crease turns) once most zero-cost
    collapses of the pass are blocked by their neighbours' collapses; each such collapse cuts
    a chord across the feature, which is the largest error of the result (measured on a CSG
    plate: 182 of its 532 corners lost at 23k faces, Hausdorff 1.2x pymeshlab's). Locking
    the corners keeps every one; the flat regions and the straight crease runs between them
    still collapse freely. Only on faceted meshes (most vertices flat: smooth scans and
    marching-cubes surfaces are left as they were) and only when the corners are few
    against the target (a finely faceted scan has a corner at each of its original
    vertices, more than the result can keep: then the collapse orders them by error as
    before)."""
    from ._features_numba import crease_corners

    if prep.mesh.n_faces == 0:
        return None
    _, corner = crease_corners(prep.positions, np.ascontiguousarray(prep.wfaces, np.int64),
                               FLAT_TOL, TURN_TOL, FACETED_SHARE)
    n = int(corner.sum())
    if n == 0 or n > target_tris // CORNER_SHARE:
        return None
    return corner[prep.wid[prep.split_src]]


FLAT_DIST = 1e-7       # a flat collapse moves the surface at most this share of the diagonal
FLAT_QUALITY = 1e-3    # twice-area / sum of squared edges of the faces a flat collapse leaves
                       # at least (an equilateral triangle: 0.29; a 1:500 sliver: 1e-3)
FLAT_SWEEPS = 8        # sweeps over the vertices at most


def flat_collapse(prep: Prepared, split_pos: np.ndarray, target_tris: int,
                  parts: tuple | None, lock: np.ndarray | None = None) -> np.ndarray:
    """The split faces after collapsing, in bulk, every vertex whose collapse costs no error
    (down to the target; with per-part budgets, to PRE_FACTOR x each part's): the pre-pass of
    a faceted mesh.

    Why: on a CAD-like mesh (large flat faces split into many coplanar triangles) nearly every
    collapse costs exactly zero, and meshoptimizer orders them all through its priority queue
    (in passes limited by each collapse's neighbours, two calls from the dense count: the
    largest share of the stage's time on a CSG part); a flat region needs no queue. A vertex goes to a neighbour that lies on the plane
    of every face around it (``_flat_numba.flat_collapse``: inside a flat region any neighbour,
    on a straight crease the two along it; corners, borders and seams stay), so the surface
    does not move (at most FLAT_DIST of the diagonal, against the input faces' planes), the
    mesh stays closed and manifold, and the quadric collapse takes over from there with only
    the collapses that cost something left to order."""
    from ._flat_numba import flat_collapse as kernel

    faces = np.array(prep.split_faces, np.int64)
    if parts is None:
        flabel = np.zeros(len(faces), np.int64)
        floor = np.array([target_tris], np.int64)
    else:  # to PRE_FACTOR x each part's budget: the per-part passes still collapse the part
        # borders (seams, locked here), and a part already at its budget would lock them
        flabel = np.searchsorted(parts[0], prep.mesh.face_labels).astype(np.int64)
        floor = allocate_budgets(PRE_FACTOR * target_tris, parts[2], parts[1]).astype(np.int64)
    pos = np.ascontiguousarray(split_pos, np.float64)
    locked = np.zeros(len(pos), bool) if lock is None else np.array(lock, bool)
    # seams, part borders and open borders stay (the kernel never moves a vertex whose fan
    # is not closed), and so do the vertices around them: meshoptimizer collapses a seam on
    # both sides at once and refuses where that flips a face, so it needs their small faces
    wid_of = prep.wid[prep.split_src]
    edge = np.bincount(wid_of)[wid_of] > 1
    if not prep.watertight:
        edge |= boundary_vertices(prep.wfaces, int(prep.wid.max()) + 1)[wid_of]
    if edge.any():
        locked[faces[edge[faces].any(1)].ravel()] = True
    tol = FLAT_DIST * float(np.linalg.norm(np.ptp(pos, axis=0))) if len(pos) else 0.0
    alive, _ = kernel(pos, faces, flabel, floor, locked, tol, FLAT_QUALITY, FLAT_SWEEPS)
    return faces[alive]


def fast_qem(prep: Prepared, target_tris: int, options: QemSettings) -> Decimation:
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
    corners = feature_corners(prep, target_tris)
    seconds["corners"] = time.perf_counter() - t
    flat = None
    # a CAD-like faceted mesh collapsed as one: its zero-error collapses in bulk. Not with
    # per-part budgets: there the per-part passes must collapse the part borders, and on
    # flattened neighbours meshoptimizer then stopped short of a budget (a dense cylinder,
    # side and caps as two parts: 8 faces off where the collapse alone is 1 off)
    if corners is not None and parts is None:
        t1 = time.perf_counter()
        flat = flat_collapse(prep, split_pos, target_tris, parts, corners)
        seconds["flat"] = time.perf_counter() - t1
    faces, retries = _collapse_closed(prep, split_pos, target_tris, options.preserve_border,
                                      parts, corners, flat)
    # the flat collapses alone reached the count: the surface has not moved, and there is
    # nothing for the placement to improve
    exact = flat is not None and len(faces) == len(flat)
    seconds["collapse"] = time.perf_counter() - t
    t = time.perf_counter()
    kept_split, local = _compact(faces, len(split_pos))
    src = prep.split_src[kept_split]
    wid = prep.wid[src]
    # one placement per welded position (seam copies move together)
    ukept, inv = np.unique(wid, return_inverse=True)
    inv = inv.reshape(-1)
    wfaces = inv[local]
    locked = boundary_vertices(wfaces, len(ukept)) if options.preserve_border else \
        np.zeros(len(ukept), bool)
    if exact:
        x, unmoved = prep.positions[ukept], int(np.sum(~locked))
    else:
        x, unmoved = place_vertices(prep.quadrics, ukept, wfaces, prep.quadrics.positions[ukept],
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


def decimate_prepared(prep: Prepared, target_tris: int, options: QemSettings,
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
    options = QemSettings(method=method, preserve_border=preserve_border, **option_overrides)
    prep = prepare(mesh, options.preserve_parts, method == "fast_qem")
    return decimate_prepared(prep, target_tris, options).mesh

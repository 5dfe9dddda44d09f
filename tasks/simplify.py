"""simplify: the clean mesh down to the profile's triangle budget, plus collision hulls.

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

Faceted inputs (CAD exports, scans whose flat faces were split into many coplanar triangles):
most collapses there cost no error, but meshoptimizer's passes take a costly one (a hole's rim
vertex, a point where a crease turns) once most zero-cost collapses of a pass are blocked by
their neighbours' collapses, and each such collapse cuts a chord across the feature. When most
edges of the mesh join coplanar faces, the corners of its crease network (vertices where the
creases do not run straight through) are locked for the collapse, as long as they are few
against the target (at most a quarter of a closed result's vertices; a finely faceted scan has
more, and is then collapsed by error order as before). On such a mesh (corners locked) the
collapses that cost nothing are first taken in bulk, without a queue (``flat_collapse``): a
vertex inside a flat region, or on a straight crease, goes to a neighbour that lies on the
plane of each of its faces, as long as the faces left keep their orientation and a fair shape
and the mesh stays manifold; meshoptimizer then orders only what is left. Smooth meshes are
untouched.

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

Collision hulls (``collision_hulls``): from a ~3k-face copy of the result, one convex hull per
part when the mesh has 2..N parts, else CoACD's approximate convex decomposition, written as
one MeshData whose ``face_labels`` give the hull index. LODs are not made here: export makes
them over the final, textured vertex buffers (``ExportOptions.lods``), which only it has.

The algorithms live in ``assetfactory.algorithms``: ``decimate`` (the collapse passes and
the peers), ``qem_placement``, ``part_budgets``, ``edge_ops`` (sliver flips, top-up splits),
``surface_error`` and ``collision``; this module is the stage over them.

Error metrics are point-to-surface distances both ways between uniform area samples of the
result and of the dense (clean) mesh, with the dense mesh's bounding-box DIAGONAL scaled to 1
(Embree's nearest face, the distance to it in float64, the maximum confirmed exactly).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

import numpy as np

from ..algorithms.collision import collision_hulls
from ..algorithms.decimate import METHODS, PART_BUDGETS, decimate_prepared, prepare
from ..algorithms.surface_error import reference, surface_error
from ..core.artifacts import load_mesh, save_mesh
from ..core.errors import ProcessingError
from ..core.mesh import MeshData
from ..core.stage import beside, check, stage, stage_cpus
from ..core.types import AssetState, Resources, StageResult
from ..geometry.closed import is_watertight
from ..geometry.weld import weld_ids

log = logging.getLogger(__name__)

NAME = "simplify"
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
    collision_hulls: at most this many convex hulls in the ``collision`` artifact; 0 = none.
    collision_method: "auto" (hull per part when there are 2..collision_hulls parts, else
        CoACD), "parts" or "coacd".
    measure_error: compute Chamfer/Hausdorff/normal error against the clean mesh (costs about
        as much as the simplification itself on 1M faces; with a second granted CPU its
        dense side, most of that, runs beside the collapse).
    error_samples: surface samples per side for those metrics.
    """

    target_tris: int = 23_000
    preserve_border: bool = True
    method: str = "fast_qem"
    placement_regularization: float = 0.01
    preserve_parts: bool = True
    part_budget: str = "area_curvature"
    part_curvature_weight: float = 1.0
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
        check(isinstance(self.collision_hulls, int) and 0 <= self.collision_hulls <= 256,
              f"collision_hulls must be an integer in [0, 256], got {self.collision_hulls!r}")
        check(self.collision_method in COLLISION_METHODS,
              f"collision_method must be one of {COLLISION_METHODS}, got {self.collision_method!r}")
        check(isinstance(self.error_samples, int) and self.error_samples >= 1000,
              f"error_samples must be an integer >= 1000, got {self.error_samples!r}")


# --------------------------------------------------------------------------------- stage


def _part_faces(mesh: MeshData) -> str:
    """JSON {part label: faces} (a flat scalar for the catalog)."""
    labels, counts = np.unique(mesh.face_labels, return_counts=True)
    return json.dumps({str(int(a)): int(b) for a, b in zip(labels, counts)})


def _reference(prep, clean: MeshData, samples: int):
    """(``surface_error``'s dense side, seconds it took), built after the dense quadrics
    (on the same spare CPU) are done, with one thread: the stage never runs more threads than
    it was granted CPUs."""
    prep.quadrics  # noqa: B018 - waits for the quadrics' thread
    t = time.perf_counter()
    # its BVH of the clean mesh is kept for bake's closest points (where bake runs next in
    # this process, as fused CPU stages do)
    return reference(clean, samples, threads=1, share=True), time.perf_counter() - t


def _part_counts(mesh: MeshData) -> str:
    labels, counts = np.unique(mesh.face_labels, return_counts=True)
    return ", ".join(f"{int(a)}:{int(b)}" for a, b in zip(labels, counts))


@stage(NAME, "0.3.3", SimplifyOptions, Resources(cpus=1, memory_mb=3072))
def simplify(state: AssetState, options: SimplifyOptions) -> StageResult:
    """Decimate ``clean_mesh`` to the triangle budget as ``mesh``; optional collision hulls."""
    clean = load_mesh(state, "clean_mesh")
    t0 = time.perf_counter()
    artifacts, metrics = {}, {}
    ref = None
    if clean.n_faces <= options.target_tris:
        out, result = clean, None
        artifacts["mesh"] = state.ref("clean_mesh")
    else:
        prep = prepare(clean, options.preserve_parts, options.method == "fast_qem")
        metrics["simplify_seconds_prepare"] = time.perf_counter() - t0
        if options.measure_error and stage_cpus() >= 2:
            # the error metric's dense side (its BVH: most of the metric's cost on a dense
            # mesh) on the second granted CPU while the collapse runs on this one
            ref = beside(lambda: _reference(prep, clean, options.error_samples))
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
        if out is clean:
            err = {"chamfer": 0.0, "hausdorff": 0.0, "normal_error_deg": 0.0}
        elif ref is not None:
            dense_side, metrics["simplify_seconds_measure_dense_side"] = ref.result()
            err = surface_error(clean, out, options.error_samples, ref=dense_side)
        else:
            err = surface_error(clean, out, options.error_samples)
        metrics.update({f"simplify_{k}": v for k, v in err.items()})
        metrics["simplify_seconds_measure"] = time.perf_counter() - t
    if options.collision_hulls:
        t = time.perf_counter()
        hulls = collision_hulls(out, options.collision_hulls, options.collision_method)
        artifacts["collision"] = save_mesh(state, hulls)
        metrics["simplify_collision_hulls"] = len(np.unique(hulls.face_labels)) \
            if hulls.n_faces else 0
        metrics["simplify_seconds_collision"] = time.perf_counter() - t
    metrics["simplify_seconds_total"] = time.perf_counter() - t0
    log.info("%s simplify: tris %d -> %d (target %d, %s), parts [%s]", state.sku, clean.n_faces,
             out.n_faces, options.target_tris, metrics["simplify_method"], _part_counts(out))
    return StageResult(artifacts=artifacts, metrics=metrics)

"""cleanup: turn a generator's or scanner's "digital clay" into sound, placed, part-aware geometry.

Why a separate stage: every backend (visual hull, learned generators, merchant meshes) leaves
some mix of duplicate vertices, zero-area, sliver and duplicate faces, non-manifold edges and
bow-tie vertices, floating debris, interior shells, holes and inconsistent winding, and none of
them knows the product's real size or its parts. Later stages (QEM, UV unwrap, baking, printing)
assume a clean, consistently wound, edge-manifold surface in the ASSET frame, so this stage
establishes it once, in this order:

1. weld vertices closer than ``merge_tolerance`` (relative to the bounding-box diagonal);
2. drop degenerate faces (zero area, or a NaN / infinite corner), then duplicate faces (same
   three vertices, any order);
3. slivers (height under ``sliver_ratio`` x longest edge): needles lose their short edge (edge
   collapse), caps get their long edge flipped with the neighbour's (no hole is opened);
4. non-manifold edges (more than two faces): the two largest faces stay, the others go; then
   non-manifold vertices (bow-ties) are split, one vertex per fan: the result is manifold;
5. make winding consistent across each edge-connected patch and outward;
6. drop floaters: components under ``min_component_area_share`` of the area (the largest always
   stays). Every component of an imported mesh (``generate_backend == "mesh"``) is a piece the
   artist modelled (a guitar string, a button), so there only components under
   ``imported_min_component_share`` go;
7. holes (``fill_holes``, for the ``ar`` and ``print`` profiles): every border loop is filled
   (ear clipping in the loop's plane, or a fan around one new centroid vertex where the loop is
   not planar); new faces take the label of the faces around the hole. Filling comes before
   the hidden-face test because an interior shell seen through a hole counts as visible;
8. hidden faces (``algorithms.visibility``): faces seen from no viewpoint on a sphere and not reached
   by a normal-gated flood fill from seen faces (interior shells and walls) are removed; bow-ties
   and holes this leaves are repaired again;
9. parts (``algorithms.parts.segment_parts``): input labels kept, or components split at concave
   creases and where the shape diameter changes class across a smooth blend, then merged to at
   most ``max_parts``;
10. place: metres, +Y up, front +Z, uniform scale from the catalog dimensions (least squares in
    log space), else the source's known extent, else an assumed extent; origin at the bottom
    centre.

The steps are an explicit list (``STEPS``) of small functions over the mesh, each an algorithm
of ``assetfactory.algorithms`` or ``assetfactory.geometry``; every step logs its before -> after
triangle and vertex counts, and the counts after the recorded ones become metrics
(``cleanup_tris_after_<step>``, ``cleanup_verts_after_<step>``). Topology changes go through
``MeshData.subset_faces`` or remap ``face_labels`` explicitly, so per-face labels stay aligned.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..algorithms.holes import fill_holes
from ..algorithms.orientation import orient_faces
from ..algorithms.parts import segment_parts
from ..algorithms.placement import Placement, place
from ..algorithms.repair import (
    collapse_needles,
    degenerate_faces,
    flip_caps,
    floater_faces,
    remove_nonmanifold_edges,
    split_nonmanifold_vertices,
)
from ..algorithms.visibility import METHODS as VISIBILITY_METHODS
from ..algorithms.visibility import hidden_faces
from ..core.artifacts import load_cameras, load_mesh, save_cameras, save_json, save_mesh
from ..core.errors import ProcessingError
from ..core.mesh import MeshData
from ..core.stage import beside, check, stage, stage_cpus
from ..core.types import AssetState, Resources, StageResult
from ..geometry import derived
from ..geometry.closed import edge_stats, part_report, signed_volume
from ..geometry.closest import RayScene
from ..geometry.components import vertex_components
from ..geometry.normals import smooth_normals
from ..geometry.topology import duplicate_faces
from ..geometry.weld import merge_vertices, weld

log = logging.getLogger(__name__)

NAME = "cleanup"
#: From this many faces on, the hidden-face test's ray scene is built ahead, beside the orient
#: step, where two CPUs were granted (its BVH is ~0.5 s of one core per million faces).
AHEAD_FACES = 100_000
UP_AXES = ("y", "z")


@dataclass(frozen=True)
class CleanupOptions:
    """Options of the cleanup stage.

    min_component_area_share: components with less than this share of the total surface area
        are floaters and are removed (the largest component is always kept).
    merge_tolerance: vertices closer than this fraction of the bounding-box diagonal are welded
        (relative, so the same value works for millimetre and metre inputs).
    default_extent_m: largest extent assumed when neither the catalog nor the source gives a
        size (0.3 m: a typical tabletop product).
    up_axis: the dense mesh's up axis: "y" (the project's frame; every generator writes it)
        or "z" (Z-up sources, front facing -Y, rotated to +Y up, front +Z).
    imported_min_component_share: the floater threshold for imported meshes
        (``generate_backend == "mesh"``), whose small components are modelled parts.
    sliver_ratio: a face whose height over its longest edge is below this is a sliver
        (1e-3: a 1000:1 needle or cap); 0 disables the sliver repair.
    remove_interior: remove faces no outside viewpoint can see (interior shells, walls).
    visibility_views: viewpoints on the sphere for the hidden-face test.
    visibility_resolution: pixels per side of each visibility render.
    visibility_normal_dot: the flood fill from seen faces crosses an edge only where the two
        face normals' dot product exceeds this (0.5: creases under 60 degrees).
    visibility_method: "raycast" (Embree rays through each pixel, the default: its cost is
        the rays plus one BVH, so every mesh gets all the views) or "render" (OpenGL face-id
        images: faster on a GPU, and on a CPU its cost grows with faces x views).
    visibility_face_budget: with "render", views x faces rendered at most; a bigger mesh gets
        fewer views (never under 16), which the flood fill makes up for.
    max_parts: at most this many parts (face labels) come out.
    part_concave_angle_deg: concave creases sharper than this split a component into parts.
    part_diameter_split: also split a component where its shape diameter (thickness) falls
        into two clearly separate classes across a smooth blend (``parts.diameter_classes``).
    min_part_share: geometric fragments under this area share merge into a neighbour.
    fill_holes: close every hole (the ``ar`` and ``print`` profiles need closed parts).
    require_closed: fail the asset (``ProcessingError``) when a part is still open or
        non-manifold after the repairs, instead of passing it on (the ``print`` profile).
    """

    min_component_area_share: float = 0.01
    merge_tolerance: float = 1e-6
    default_extent_m: float = 0.3
    up_axis: str = "y"
    imported_min_component_share: float = 1e-4
    sliver_ratio: float = 1e-3
    remove_interior: bool = True
    visibility_views: int = 64
    visibility_resolution: int = 256
    visibility_normal_dot: float = 0.5
    visibility_method: str = "raycast"
    visibility_face_budget: int = 20_000_000
    max_parts: int = 8
    part_concave_angle_deg: float = 30.0
    part_diameter_split: bool = True
    min_part_share: float = 0.02
    fill_holes: bool = True
    require_closed: bool = False

    def __post_init__(self) -> None:
        check(0.0 <= self.min_component_area_share < 1.0,
              f"min_component_area_share must be in [0, 1), got {self.min_component_area_share}")
        check(0.0 <= self.merge_tolerance < 0.01,
              f"merge_tolerance must be in [0, 0.01), got {self.merge_tolerance}")
        check(self.default_extent_m > 0, f"default_extent_m must be > 0, got {self.default_extent_m}")
        check(self.up_axis in UP_AXES, f"up_axis must be one of {UP_AXES}, got {self.up_axis!r}")
        check(0.0 <= self.imported_min_component_share < 1.0,
              "imported_min_component_share must be in [0, 1), got "
              f"{self.imported_min_component_share}")
        check(0.0 <= self.sliver_ratio < 0.1, f"sliver_ratio must be in [0, 0.1), got {self.sliver_ratio}")
        check(1 <= self.visibility_views <= 4096,
              f"visibility_views must be in [1, 4096], got {self.visibility_views}")
        check(16 <= self.visibility_resolution <= 4096,
              f"visibility_resolution must be in [16, 4096], got {self.visibility_resolution}")
        check(-1.0 <= self.visibility_normal_dot < 1.0,
              f"visibility_normal_dot must be in [-1, 1), got {self.visibility_normal_dot}")
        check(self.visibility_method in VISIBILITY_METHODS,
              f"visibility_method must be one of {VISIBILITY_METHODS}, got "
              f"{self.visibility_method!r}")
        check(self.visibility_face_budget > 0,
              f"visibility_face_budget must be > 0, got {self.visibility_face_budget}")
        check(1 <= self.max_parts <= 256, f"max_parts must be in [1, 256], got {self.max_parts}")
        check(0.0 < self.part_concave_angle_deg < 180.0,
              f"part_concave_angle_deg must be in (0, 180), got {self.part_concave_angle_deg}")
        check(0.0 <= self.min_part_share < 0.5,
              f"min_part_share must be in [0, 0.5), got {self.min_part_share}")


# ---------------------------------------------------------------------------- the steps


@dataclass
class Run:
    """What the steps share while cleaning one mesh: the inputs they read and the counts they
    write (``counts`` becomes the stage's metrics)."""

    options: CleanupOptions
    imported: bool = False
    renderer: Any = None
    sku: str = "-"
    had_normals: bool = False
    non_finite: int = 0
    scene_ahead: Future | None = None  # (mesh, its ray scene, its hull) built beside orienting
    counts: dict = field(default_factory=lambda: {
        "degenerate": 0, "duplicate": 0, "slivers_collapsed": 0, "slivers_flipped": 0,
        "non_manifold_edges": 0, "non_manifold_faces_removed": 0, "non_manifold_vertices": 0,
        "floaters": 0, "components": 0, "flipped": 0, "interior": 0, "holes": 0, "hole_faces": 0})


@dataclass(frozen=True)
class Step:
    """One cleanup step. ``record``: its after-counts become ``cleanup_*_after_<name>``
    metrics; ``needs_faces``: skipped (with every later step) once no face is left."""

    name: str
    run: Callable[[MeshData, Run], MeshData]
    record: bool = True
    needs_faces: bool = False


def drop_non_finite(mesh: MeshData, run: Run) -> MeshData:
    """Faces with a NaN / infinite corner have no geometry."""
    finite = np.isfinite(mesh.vertices).all(axis=1)
    if finite.all():
        return mesh
    non_finite = ~finite[mesh.faces].all(axis=1)
    run.non_finite = int(non_finite.sum())
    return mesh.subset_faces(~non_finite)


def weld_step(mesh: MeshData, run: Run) -> MeshData:
    return merge_vertices(mesh, run.options.merge_tolerance)


def degenerate_step(mesh: MeshData, run: Run) -> MeshData:
    """Zero-area faces (and the non-finite ones dropped before), then duplicate faces."""
    bad = degenerate_faces(mesh, run.options.merge_tolerance)
    run.counts["degenerate"] = int(bad.sum()) + run.non_finite
    mesh = mesh.subset_faces(~bad)
    dup = duplicate_faces(mesh.faces)
    run.counts["duplicate"] = int(dup.sum())
    return mesh.subset_faces(~dup)


def sliver_step(mesh: MeshData, run: Run) -> MeshData:
    """Collapse needles, flip caps, then drop what became degenerate or duplicate."""
    ratio = run.options.sliver_ratio
    if ratio <= 0 or mesh.n_faces == 0:
        return mesh
    mesh, collapsed = collapse_needles(mesh, ratio)
    mesh, flipped = flip_caps(mesh, ratio)
    if collapsed:
        mesh = mesh.subset_faces(~duplicate_faces(mesh.faces))
        mesh = mesh.subset_faces(~degenerate_faces(mesh, run.options.merge_tolerance))
    run.counts["slivers_collapsed"], run.counts["slivers_flipped"] = collapsed, flipped
    return mesh


def non_manifold_step(mesh: MeshData, run: Run) -> MeshData:
    """Non-manifold edges keep their two largest faces; bow-tie vertices are split."""
    mesh, run.counts["non_manifold_edges"], run.counts["non_manifold_faces_removed"] = (
        remove_nonmanifold_edges(mesh))
    mesh, run.counts["non_manifold_vertices"] = split_nonmanifold_vertices(mesh)
    return mesh


def orient_step(mesh: MeshData, run: Run) -> MeshData:
    run.had_normals = mesh.vertex_normals is not None
    options = run.options
    if (options.remove_interior and options.visibility_method == "raycast"
            and mesh.n_faces >= AHEAD_FACES and stage_cpus() >= 2):
        # the hidden-face test's BVH (one thread: Embree builds it serially) and the hull its
        # rays are aimed inside, on the second granted CPU while the faces are oriented; used
        # when orienting, floaters and holes left the mesh as it was (a well-made scan:
        # nothing flipped, nothing dropped)
        source = mesh
        run.scene_ahead = beside(lambda: (source, RayScene.built(source, 1),
                                          derived.hull_points(source)))
    mesh, run.counts["flipped"] = orient_faces(mesh)
    return mesh


def floater_step(mesh: MeshData, run: Run) -> MeshData:
    options = run.options
    drop, kept, dropped = floater_faces(
        mesh, options.min_component_area_share,
        options.imported_min_component_share if run.imported else None)
    run.counts["floaters"], run.counts["components"] = dropped, kept
    return mesh.subset_faces(~drop)


def hole_step(mesh: MeshData, run: Run) -> MeshData:
    """Every border loop filled (holes come before the hidden-face test: an interior shell
    seen through a hole counts as visible, and would survive)."""
    if not run.options.fill_holes:
        return mesh
    mesh, holes, faces = fill_holes(mesh)
    run.counts["holes"] += holes
    run.counts["hole_faces"] += faces
    return mesh


def interior_step(mesh: MeshData, run: Run) -> MeshData:
    """Faces no outside viewpoint sees go; the bow-ties and holes that leaves are repaired."""
    options = run.options
    if not options.remove_interior:
        return mesh
    if run.scene_ahead is not None:
        source, scene, hull = run.scene_ahead.result()
        run.scene_ahead = None
        derived.adopt_ray_scene(mesh, source, scene, hull)
    views = visibility_views(mesh.n_faces, options)
    hidden = hidden_faces(mesh, views, options.visibility_resolution,
                          options.visibility_normal_dot, run.renderer, options.visibility_method)
    run.counts["interior"] = int(hidden.sum())
    run.counts["visibility_views"] = views
    if hidden.all():
        raise ProcessingError(
            "no face of the mesh is visible from outside (every face was hidden)",
            "check the generator output for this SKU; or re-run with cleanup "
            "remove_interior=False")
    kept = np.flatnonzero(~hidden)
    out = mesh.subset_faces(~hidden)
    out, again = split_nonmanifold_vertices(out)  # removal can leave new bow-ties
    run.counts["non_manifold_vertices"] += again
    out = hole_step(out, run)  # and new holes where a wall met the surface
    run.counts["components"] = vertex_components(out)[0]
    if out is not mesh and out.n_faces == len(kept):
        # the same faces less the hidden ones: the parts' shape diameter casts its rays at
        # the hidden-face test's scene (a dense mesh's BVH is the cost of a ray query)
        derived.keep_ray_scene(mesh, out, kept)
    return out


def parts_step(mesh: MeshData, run: Run) -> MeshData:
    options = run.options
    return mesh.replace(face_labels=segment_parts(
        mesh, options.max_parts, options.part_concave_angle_deg, options.min_part_share,
        options.part_diameter_split))


def normals_step(mesh: MeshData, run: Run) -> MeshData:
    """Normals the input came with are stale after the repairs: recomputed."""
    return mesh.replace(vertex_normals=smooth_normals(mesh)) if run.had_normals else mesh


#: The repair steps, in order (see the module docstring for why this order).
STEPS: tuple[Step, ...] = (
    Step("non_finite", drop_non_finite, record=False),
    Step("weld", weld_step),
    Step("degenerate", degenerate_step),
    Step("slivers", sliver_step),
    Step("non_manifold", non_manifold_step),
    Step("orient", orient_step, record=False, needs_faces=True),
    Step("floaters", floater_step, needs_faces=True),
    Step("holes", hole_step, needs_faces=True),
    Step("interior", interior_step, needs_faces=True),
    Step("parts", parts_step, record=False, needs_faces=True),
    Step("normals", normals_step, record=False, needs_faces=True),
)


def clean_mesh(mesh: MeshData, options: CleanupOptions, *, imported: bool = False,
               renderer=None, sku: str = "-") -> tuple[MeshData, dict]:
    """All repair steps on an in-memory mesh (no placement); returns the mesh and counts.

    ``imported``: the mesh is a merchant's file (floaters use the imported threshold).
    ``renderer``: a ``geometry.render.Renderer`` for the hidden-face test (the process's own
    by default).
    """
    run = Run(options, imported, renderer, sku)
    steps: dict[str, tuple[int, int]] = {}
    for step in STEPS:
        if step.needs_faces and mesh.n_faces == 0:
            break
        before = (mesh.n_faces, mesh.n_vertices)
        mesh = step.run(mesh, run)
        log.info("%s %s %s: tris %d -> %d, verts %d -> %d", sku, NAME, step.name, before[0],
                 mesh.n_faces, before[1], mesh.n_vertices)
        if step.record:
            steps[step.name] = (mesh.n_faces, mesh.n_vertices)
    counts = dict(run.counts)
    counts["steps"] = steps
    return mesh, counts


def visibility_views(n_faces: int, options: CleanupOptions) -> int:
    """Views for the hidden-face test: all asked for; with the "render" method fewer (>= 16)
    for a very large mesh."""
    if options.visibility_method == "raycast":
        return options.visibility_views
    budget = options.visibility_face_budget // max(n_faces, 1)
    return int(max(min(options.visibility_views, 16), min(options.visibility_views, budget)))


def placement_for(mesh: MeshData, state: AssetState, options: CleanupOptions) -> Placement:
    """Rotate to +Y up, scale to metres, then put the bottom centre at the origin."""
    return place(mesh, state.spec.dims_m, state.metrics.get("generate_source_extent_m"),
                 options.up_axis, options.default_extent_m)


# ---------------------------------------------------------------------------- the stage

@stage(NAME, "0.3.2", CleanupOptions, Resources(cpus=1, memory_mb=2048),
       reads=("width_mm", "height_mm", "depth_mm"))
def cleanup(state: AssetState, options: CleanupOptions) -> StageResult:
    """Repair the dense mesh and place it in the asset frame (see the module docstring)."""
    dense = load_mesh(state, "dense_mesh")
    if dense.n_faces == 0:
        raise ProcessingError(
            "the generator produced an empty mesh (dense_mesh has no faces)",
            "check the photos' masks for this SKU (is the product visible?) or try another backend")
    imported = state.metrics.get("generate_backend") == "mesh"
    mesh, counts = clean_mesh(dense, options, imported=imported, sku=state.sku)
    if mesh.n_faces == 0:
        raise ProcessingError(
            f"nothing left after cleanup: all {dense.n_faces} faces of dense_mesh were degenerate "
            "or duplicates",
            "inspect the generator output for this SKU; lower cleanup merge_tolerance if the "
            "mesh is very small or finely detailed")
    if options.require_closed:
        _check_closed(mesh, counts)
    place = placement_for(mesh, state, options)
    mesh = mesh.transformed(place.matrix)
    # with 2 CPUs: the closedness checks and the part report while the mesh is saved
    closed = beside(lambda: (_welded_stats(mesh), part_report(mesh)))
    artifacts = {"clean_mesh": save_mesh(state, mesh),
                 "placement": save_json(state, place.to_json())}
    if "cameras" in state.artifacts:
        cams = [c.transformed(place.matrix) for c in load_cameras(state)]
        artifacts["cameras"] = save_cameras(state, cams)
    metrics = _metrics(dense, mesh, counts, place, *closed.result())
    log.info("%s cleanup: tris %d -> %d, floaters -%d, degenerate -%d, duplicates -%d, "
             "slivers %d+%d, non-manifold edges %d / vertices %d, interior -%d, holes +%d, "
             "parts %d (%d closed), flipped %d, scale %.4g (%s)", state.sku, dense.n_faces,
             mesh.n_faces, counts["floaters"], counts["degenerate"], counts["duplicate"],
             counts["slivers_collapsed"], counts["slivers_flipped"],
             counts["non_manifold_edges"], counts["non_manifold_vertices"], counts["interior"],
             counts["holes"], metrics["cleanup_parts"], metrics["cleanup_parts_watertight"],
             counts["flipped"], place.scale, place.scale_source)
    return StageResult(artifacts=artifacts, metrics=metrics)


def _check_closed(mesh: MeshData, counts: dict) -> None:
    """Refuse an asset whose parts are not all closed and manifold (``require_closed``)."""
    rep = part_report(mesh)
    if rep["parts_watertight"] == rep["parts"] and rep["parts_manifold"] == rep["parts"]:
        return
    _, _, edge_counts = derived.edge_table(mesh)  # part_report's, cached on the mesh
    raise ProcessingError(
        f"after repair {rep['parts'] - rep['parts_watertight']} of {rep['parts']} parts are "
        f"still open or non-manifold ({int((edge_counts == 1).sum())} border edges, "
        f"{int((edge_counts > 2).sum())} edges with more than two faces; "
        f"{counts.get('holes', 0)} holes were filled)",
        "the mesh has borders whose winding flips (or overlapping sheets) that cannot be closed "
        "automatically: repair it in a 3D tool (e.g. make manifold / remesh) and re-submit, or "
        "use a profile that does not need closed parts (web, render)")


def _welded_stats(mesh: MeshData) -> tuple[bool, float | None]:
    """(watertight, volume or None) of the mesh welded by position (split seams and bow-ties
    joined again)."""
    wv, wf = weld(mesh.vertices, mesh.faces, 1e-7)
    if len(wv) == mesh.n_vertices and len(wf) == mesh.n_faces:
        # nothing merged: the same edges as the mesh's own (renumbering vertices changes
        # neither the counts nor whether two faces agree), whose table the steps cached
        stats = edge_stats(mesh.faces, derived.edge_table(mesh))
    else:
        stats = edge_stats(wf)
    closed = stats.watertight
    return closed, abs(signed_volume(wv, wf)) if closed else None


def _metrics(dense: MeshData, mesh: MeshData, counts: dict, place: Placement,
             welded: tuple[bool, float | None], parts: dict) -> dict:
    closed, volume = welded
    errs = [e for e in place.dims_error if e is not None]
    metrics = {
        "cleanup_watertight": closed,
        "cleanup_manifold": parts["parts_manifold"] == parts["parts"],
        "cleanup_volume_m3": volume,
        "cleanup_tris_in": dense.n_faces,
        "cleanup_tris_out": mesh.n_faces,
        "cleanup_verts_in": dense.n_vertices,
        "cleanup_verts_out": mesh.n_vertices,
        "cleanup_floaters_removed": counts["floaters"],
        "cleanup_degenerate_removed": counts["degenerate"],
        "cleanup_duplicate_faces_removed": counts["duplicate"],
        "cleanup_slivers_collapsed": counts["slivers_collapsed"],
        "cleanup_slivers_flipped": counts["slivers_flipped"],
        "cleanup_non_manifold_edges": counts["non_manifold_edges"],
        "cleanup_non_manifold_faces_removed": counts["non_manifold_faces_removed"],
        "cleanup_non_manifold_vertices": counts["non_manifold_vertices"],
        "cleanup_interior_faces_removed": counts["interior"],
        "cleanup_visibility_views": counts.get("visibility_views"),
        "cleanup_holes_filled": counts["holes"],
        "cleanup_hole_faces_added": counts["hole_faces"],
        "cleanup_faces_flipped": counts["flipped"],
        "cleanup_components": counts["components"],
        "cleanup_parts": parts["parts"],
        "cleanup_parts_watertight": parts["parts_watertight"],
        "cleanup_parts_manifold": parts["parts_manifold"],
        "cleanup_scale": place.scale,
        "cleanup_scale_source": place.scale_source,
        "cleanup_dims_error_x": place.dims_error[0],
        "cleanup_dims_error_y": place.dims_error[1],
        "cleanup_dims_error_z": place.dims_error[2],
        "cleanup_dims_error_max": max(errs) if errs else None,
    }
    for step, (tris, verts) in counts["steps"].items():
        metrics[f"cleanup_tris_after_{step}"] = tris
        metrics[f"cleanup_verts_after_{step}"] = verts
    return metrics

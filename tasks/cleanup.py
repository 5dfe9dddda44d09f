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
8. hidden faces (``tasks.visibility``): faces seen from no viewpoint on a sphere and not reached
   by a normal-gated flood fill from seen faces (interior shells and walls) are removed; bow-ties
   and holes this leaves are repaired again;
9. parts (``tasks.parts.segment_parts``): input labels kept, or components split at concave
   creases and where the shape diameter changes class across a smooth blend, then merged to at
   most ``max_parts``;
10. place: metres, +Y up, front +Z, uniform scale from the catalog dimensions (least squares in
    log space), else the source's known extent, else an assumed extent; origin at the bottom
    centre.

Topology changes go through ``MeshData.subset_faces`` or remap ``face_labels`` explicitly, so
per-face labels stay aligned. Triangle and vertex counts after every step are recorded
(``cleanup_tris_after_<step>``, ``cleanup_verts_after_<step>``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.sparse import csgraph

from ..core.artifacts import load_cameras, load_mesh, save_cameras, save_json, save_mesh
from ..core.errors import ProcessingError
from ..core.mesh import MeshData
from ..core.stage import check, stage
from ..core.types import AssetState, Resources, StageResult
from . import kernels
from .parts import edge_table, face_areas, manifold_pairs, part_report, segment_parts, vertex_fans
from .visibility import METHODS as VISIBILITY_METHODS
from .visibility import hidden_faces

log = logging.getLogger(__name__)

NAME = "cleanup"
UP_AXES = ("y", "z")
#: Rotation taking a Z-up, front -Y source (Blender, most CAD) to +Y up, front +Z.
_Z_UP_TO_Y_UP = np.array([[1.0, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0], [0, 0, 0, 1]])


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


# ---------------------------------------------------------------------------- repair steps


def merge_vertices(mesh: MeshData, tolerance: float) -> MeshData:
    """Weld vertices on a grid of ``tolerance`` x bbox diagonal; unused vertices are dropped.

    UVs, when present, are part of the key, so texture seams stay split.
    """
    if mesh.n_vertices == 0:
        return mesh
    lo, hi = mesh.bounds()
    step = tolerance * float(np.linalg.norm(hi - lo))
    uv = None if mesh.uv is None else np.round(np.asarray(mesh.uv, np.float64) * 1e6)
    if step > 0 and np.isfinite(step):
        key = np.round((mesh.vertices - lo) / step).astype(np.int64)
        if uv is not None:
            key = np.hstack([key, (uv - uv.min(axis=0)).astype(np.int64)])
        # one int64 per row where it fits: a 1-d sort, much faster than unique(axis=0)
        _, first, inverse = np.unique(kernels.row_keys(key), return_index=True,
                                      return_inverse=True)
    else:  # merge_tolerance 0 (or a single point): only exact duplicates weld
        key = np.asarray(mesh.vertices, np.float64) + 0.0  # -0.0 -> 0.0
        if uv is not None:
            key = np.hstack([key, uv])
        _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    welded = inverse.reshape(-1)[mesh.faces]
    # number the welded vertices in order of first use by the faces (unused ones go): the
    # sort above left them in grid order, where a face's corners lie far apart in memory,
    # and every later step walks the faces
    rank, used = kernels.first_use(welded, len(first))
    src = first[used]
    pick = lambda a: None if a is None else np.asarray(a)[src]
    return MeshData(mesh.vertices[src], rank[welded], mesh.face_labels,
                    pick(mesh.uv), pick(mesh.vertex_colors), pick(mesh.vertex_normals))


def degenerate_faces(mesh: MeshData, tolerance: float) -> np.ndarray:
    """Faces with a repeated vertex or (numerically) zero area."""
    f = mesh.faces
    repeated = (f[:, 0] == f[:, 1]) | (f[:, 1] == f[:, 2]) | (f[:, 0] == f[:, 2])
    lo, hi = mesh.bounds()
    diag = float(np.linalg.norm(hi - lo))
    eps = max(tolerance * diag, 1e-12 * diag) ** 2
    return repeated | (face_areas(mesh) <= eps)


def duplicate_faces(faces: np.ndarray) -> np.ndarray:
    """True for every face that repeats an earlier face's vertex set (either winding)."""
    if len(faces) == 0:
        return np.zeros(0, bool)
    _, first = np.unique(kernels.row_keys(np.sort(faces, axis=1)), return_index=True)
    dup = np.ones(len(faces), bool)
    dup[first] = False
    return dup


def vertex_components(mesh: MeshData) -> tuple[int, np.ndarray]:
    """Connected components through shared vertices: (count, component id per face)."""
    n = mesh.n_vertices
    e = mesh.faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    graph = sparse.coo_matrix((np.ones(len(e), np.int8), (e[:, 0], e[:, 1])), shape=(n, n))
    count, labels = csgraph.connected_components(graph, directed=False)
    return int(count), labels[mesh.faces[:, 0]]


def floater_faces(mesh: MeshData, min_share: float,
                  imported_min_share: float | None = None) -> tuple[np.ndarray, int, int]:
    """(faces to drop, components kept, components dropped) by area share.

    ``imported_min_share`` (given for imported meshes) replaces ``min_share``: there every
    component is a modelled piece, and only the tiny ones are debris.
    """
    count, comp = vertex_components(mesh)
    area = np.bincount(comp, weights=face_areas(mesh), minlength=count)
    total = float(area.sum())
    share = area / total if total > 0 else np.ones(count)
    small = share < (min_share if imported_min_share is None else imported_min_share)
    small[int(np.argmax(area))] = False
    return small[comp], int(count - small.sum()), int(small.sum())


# ---------------------------------------------------------------------------- slivers


def _sliver_shape(mesh: MeshData) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per face: edge lengths (M, 3) (edge k runs corner k -> k + 1), index of the longest
    and shortest edge, and height over the longest edge."""
    return kernels.sliver_shape(mesh.vertices, mesh.faces)


def sliver_faces(mesh: MeshData, ratio: float) -> np.ndarray:
    """Faces whose height over their longest edge is under ``ratio`` (needles and caps)."""
    lengths, _, _, height = _sliver_shape(mesh)
    top = lengths.max(axis=1)
    return (top > 0) & (height < ratio * top)


def collapse_needles(mesh: MeshData, ratio: float, needle_frac: float = 0.1,
                     passes: int = 3) -> tuple[MeshData, int]:
    """Collapse the short edge of every needle sliver (shortest edge under ``needle_frac`` of
    the longest) to its midpoint. Each pass collapses a matching (no vertex twice), so chains
    of short edges never snowball; faces left with a repeated vertex are dropped."""
    collapsed = 0
    for _ in range(passes):
        lengths, _, shortest, height = _sliver_shape(mesh)
        top = lengths.max(axis=1)
        short = lengths[np.arange(mesh.n_faces), shortest]
        needle = (top > 0) & (height < ratio * top) & (short < needle_frac * top)
        if not needle.any():
            break
        f = np.flatnonzero(needle)
        a = mesh.faces[f, shortest[f]]
        b = mesh.faces[f, (shortest[f] + 1) % 3]
        pairs = np.unique(np.stack([np.minimum(a, b), np.maximum(a, b)], 1), axis=0)
        uses = np.bincount(pairs.ravel(), minlength=mesh.n_vertices)
        pairs = pairs[(uses[pairs] == 1).all(axis=1)]
        if len(pairs) == 0:
            break
        remap = np.arange(mesh.n_vertices)
        remap[pairs[:, 1]] = pairs[:, 0]
        verts = mesh.vertices.copy()
        verts[pairs[:, 0]] = (verts[pairs[:, 0]] + verts[pairs[:, 1]]) / 2.0
        faces = remap[mesh.faces]
        keep = (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (
            faces[:, 0] != faces[:, 2])
        mesh = mesh.replace(vertices=verts, faces=faces).subset_faces(keep)
        collapsed += len(pairs)
    return mesh, collapsed


def flip_caps(mesh: MeshData, ratio: float, passes: int = 2) -> tuple[MeshData, int]:
    """Flip the long edge of every cap sliver (apex close to the long edge) with the face on
    the other side: (a, b, c) + (b, a, d) -> (a, d, c) + (d, b, c). Topology stays closed;
    a flip is skipped where the neighbour is a sliver too, the new edge exists already, the
    windings disagree or the new faces would turn against the neighbour's normal."""
    flipped = 0
    for _ in range(passes):
        sliver = sliver_faces(mesh, ratio)
        if not sliver.any():
            break
        _, longest, _, _ = _sliver_shape(mesh)
        edges, face_edge, counts = edge_table(mesh.faces)
        pairs, e = manifold_pairs(face_edge, counts)
        other = np.full((len(edges), 2), -1, np.int64)
        other[e] = pairs
        f = np.flatnonzero(sliver)
        k = longest[f]
        ends = other[face_edge[f, k]]
        g = np.where(ends[:, 0] == f, ends[:, 1], ends[:, 0])
        ok = (g >= 0) & (ends[:, 1] >= 0)
        f, k, g = f[ok], k[ok], g[ok]
        ok = ~sliver[g]
        f, k, g = f[ok], k[ok], g[ok]
        a, b, c = (mesh.faces[f, (k + j) % 3] for j in range(3))
        gf = mesh.faces[g]
        d = gf.sum(axis=1) - a - b
        # g must run b -> a (consistent winding) for the quad a, d, b, c
        gb = np.argmax(gf == b[:, None], axis=1)
        ok = (gf[np.arange(len(g)), (gb + 1) % 3] == a) & (c != d)
        n = mesh.n_vertices
        existing = np.sort(edges[:, 0] * n + edges[:, 1])
        new_key = np.minimum(c, d) * n + np.maximum(c, d)
        pos = np.clip(np.searchsorted(existing, new_key), 0, len(existing) - 1)
        ok &= existing[pos] != new_key
        v = mesh.vertices
        ng = np.cross(v[gf[:, 1]] - v[gf[:, 0]], v[gf[:, 2]] - v[gf[:, 0]])
        n1 = np.cross(v[d] - v[a], v[c] - v[a])
        n2 = np.cross(v[b] - v[d], v[c] - v[d])
        ok &= (np.einsum("ij,ij->i", n1, ng) > 0) & (np.einsum("ij,ij->i", n2, ng) > 0)
        # independent flips only: no face in two of them
        both = np.concatenate([f[ok], g[ok]])
        once = np.bincount(both, minlength=mesh.n_faces)[both] == 1
        sel = np.flatnonzero(ok)[once[: ok.sum()] & once[ok.sum():]]
        if len(sel) == 0:
            break
        faces = mesh.faces.copy()
        faces[f[sel]] = np.stack([a[sel], d[sel], c[sel]], axis=1)
        faces[g[sel]] = np.stack([d[sel], b[sel], c[sel]], axis=1)
        mesh = mesh.replace(faces=faces)
        flipped += len(sel)
    return mesh, flipped


# ---------------------------------------------------------------------------- non-manifold


def remove_nonmanifold_edges(mesh: MeshData) -> tuple[MeshData, int, int]:
    """Keep the two largest faces on every edge used by more than two faces, drop the rest.

    Returns the mesh, the number of non-manifold edges and the number of faces dropped. A fin
    or a third sheet along the edge loses the row of faces on it and is then attached only at
    vertices, which ``split_nonmanifold_vertices`` separates.
    """
    if mesh.n_faces == 0:
        return mesh, 0, 0
    _, face_edge, counts = edge_table(mesh.faces)
    flat = face_edge.ravel()
    slots = np.flatnonzero(counts[flat] > 2)
    n_edges = int((counts > 2).sum())
    if len(slots) == 0:
        return mesh, 0, 0
    area = face_areas(mesh)
    owner = slots // 3
    order = np.lexsort((owner, -area[owner], flat[slots]))
    edge_sorted = flat[slots][order]
    start = np.searchsorted(edge_sorted, edge_sorted, side="left")
    rank = np.arange(len(order)) - start
    drop = np.zeros(mesh.n_faces, bool)
    drop[owner[order][rank >= 2]] = True
    return mesh.subset_faces(~drop), n_edges, int(drop.sum())


def split_nonmanifold_vertices(mesh: MeshData) -> tuple[MeshData, int]:
    """Give every fan of faces around a vertex its own copy of the vertex (bow-ties apart).

    Returns the mesh and the number of vertices that were non-manifold. Vertex attributes are
    copied to the new vertices; faces keep their order, so labels need no remapping.
    """
    if mesh.n_faces == 0:
        return mesh, 0
    fan, fan_vertex = vertex_fans(mesh.faces, mesh.n_vertices)
    fans_per_vertex = np.bincount(fan_vertex, minlength=mesh.n_vertices)
    n_bad = int((fans_per_vertex > 1).sum())
    if n_bad == 0:
        return mesh, 0
    order = np.lexsort((np.arange(len(fan_vertex)), fan_vertex))
    first = np.ones(len(order), bool)
    first[1:] = fan_vertex[order][1:] != fan_vertex[order][:-1]
    extra = order[~first]
    new_id = fan_vertex.copy()
    new_id[extra] = mesh.n_vertices + np.arange(len(extra))
    src = fan_vertex[extra]
    grow = lambda a: None if a is None else np.concatenate([a, np.asarray(a)[src]])
    out = MeshData(grow(mesh.vertices), new_id[fan], mesh.face_labels, grow(mesh.uv),
                   grow(mesh.vertex_colors), grow(mesh.vertex_normals))
    return out, n_bad


# ---------------------------------------------------------------------------- holes


def boundary_loops(faces: np.ndarray) -> list[tuple[list[int], list[int]]]:
    """Border loops, each as (vertices in fill order, the faces along it).

    "Fill order" runs opposite to the faces' own border edges, so a triangle (v[i], v[i+1], x)
    is wound like its neighbours. Expects an edge-manifold mesh; where a vertex still starts
    two border edges, the loop takes the first unused one.
    """
    _, face_edge, counts = edge_table(faces)
    slot = np.flatnonzero(counts[face_edge.ravel()] == 1)
    if len(slot) == 0:
        return []
    f, k = slot // 3, slot % 3
    start = faces[f, (k + 1) % 3]  # border edge a -> b is filled as b -> a
    end = faces[f, k]
    by_start: dict[int, list[int]] = {}
    for i, s in enumerate(start.tolist()):
        by_start.setdefault(s, []).append(i)
    used = np.zeros(len(slot), bool)
    loops = []
    end_l, start_l, f_l = end.tolist(), start.tolist(), f.tolist()
    for i in range(len(slot)):
        if used[i]:
            continue
        verts, owners, cur, closed = [], [], i, False
        while cur is not None and not used[cur]:
            used[cur] = True
            verts.append(start_l[cur])
            owners.append(f_l[cur])
            if end_l[cur] == verts[0]:
                closed = True
                break
            cur = next((j for j in by_start.get(end_l[cur], ()) if not used[j]), None)
        if closed:  # an open chain means the winding flips along the border: leave it
            loops.extend(_simple_loops(verts, owners))
    return loops


def _simple_loops(verts: list[int], owners: list[int]) -> list[tuple[list[int], list[int]]]:
    """Cut a closed walk that passes a vertex twice (a figure eight) into simple loops."""
    out = []
    stack_v: list[int] = []
    stack_f: list[int] = []
    where: dict[int, int] = {}
    for v, f in zip(verts + [verts[0]], owners + [-1]):
        if v in where:
            k = where[v]
            loop_v, loop_f = stack_v[k:], stack_f[k:]
            del stack_v[k:], stack_f[k:]
            for u in loop_v:
                where.pop(u, None)
            if len(loop_v) >= 3:
                out.append((loop_v, loop_f))
        where[v] = len(stack_v)
        stack_v.append(v)
        stack_f.append(f)
    return out


def fill_holes(mesh: MeshData, max_ear_vertices: int = 256) -> tuple[MeshData, int, int]:
    """Close every border loop; returns (mesh, loops filled, faces added).

    A planar loop (and every loop of three) is ear-clipped in its own plane; a loop that is not
    planar, too long, or that ear clipping cannot finish without reusing an existing edge, gets
    a fan around one new vertex at its centroid. New faces take the most common label of the
    faces around the loop, so each part closes with its own label.
    """
    loops = boundary_loops(mesh.faces)
    if not loops:
        return mesh, 0, 0
    edges, _, _ = edge_table(mesh.faces)
    n = mesh.n_vertices
    existing = np.sort(edges[:, 0] * n + edges[:, 1])
    new_faces, new_labels, centres, centre_src = [], [], [], []
    for verts, owners in loops:
        loop = np.asarray(verts, np.int64)
        label = int(np.bincount(mesh.face_labels[owners].astype(np.int64) -
                                int(mesh.face_labels.min())).argmax()) + int(mesh.face_labels.min())
        tris = None
        if len(loop) <= max_ear_vertices and len(np.unique(loop)) == len(loop):
            tris = _ear_clip_loop(mesh.vertices[loop], loop, existing, n)
        if tris is None:
            c = n + len(centres)
            centres.append(mesh.vertices[loop].mean(axis=0))
            centre_src.append(loop)
            tris = np.stack([loop, np.roll(loop, -1), np.full(len(loop), c)], axis=1)
        new_faces.append(tris)
        new_labels.append(np.full(len(tris), label, np.int32))
    faces = np.vstack([mesh.faces, *new_faces])
    labels = np.concatenate([mesh.face_labels, *new_labels])
    out = MeshData(np.vstack([mesh.vertices, *centres]) if centres else mesh.vertices, faces,
                   labels, _grow_mean(mesh.uv, centre_src), _grow_mean(mesh.vertex_colors, centre_src),
                   _grow_mean(mesh.vertex_normals, centre_src))
    return out, len(loops), int(sum(len(t) for t in new_faces))


def _grow_mean(attr: np.ndarray | None, sources: list[np.ndarray]) -> np.ndarray | None:
    """Append, per new vertex, the mean of an attribute over its source vertices."""
    if attr is None or not sources:
        return attr
    arr = np.asarray(attr)
    rows = [arr[s].astype(np.float64).mean(axis=0) for s in sources]
    return np.concatenate([arr, np.asarray(rows).astype(arr.dtype)])


def _ear_clip_loop(points: np.ndarray, loop: np.ndarray, existing: np.ndarray,
                   n_vertices: int) -> np.ndarray | None:
    """Ear clipping of a loop projected on its Newell plane; None if not planar or stuck."""
    m = len(loop)
    if m == 3:
        return loop[None, :].copy()
    centre = points.mean(axis=0)
    rel = points - centre
    normal = np.cross(rel, np.roll(rel, -1, axis=0)).sum(axis=0)
    size = float(np.linalg.norm(rel, axis=1).max())
    length = float(np.linalg.norm(normal))
    if length <= 1e-12 * max(size, 1e-300) ** 2:
        return None
    normal /= length
    if float(np.abs(rel @ normal).max()) > 0.2 * size:
        return None  # not planar enough: a flat triangulation would cut through the part
    u = np.cross(normal, [1.0, 0.0, 0.0] if abs(normal[0]) < 0.9 else [0.0, 1.0, 0.0])
    u /= np.linalg.norm(u)
    w = np.cross(normal, u)
    p2 = np.stack([rel @ u, rel @ w], axis=1)  # the loop is counter-clockwise in (u, w)
    idx = np.arange(m)
    tris = []
    while len(idx) > 3:
        ear = _find_ear(p2[idx], loop[idx], existing, n_vertices)
        if ear is None:
            return None
        j = len(idx)
        tris.append(loop[idx[[(ear - 1) % j, ear, (ear + 1) % j]]])
        idx = np.delete(idx, ear)
    tris.append(loop[idx])
    return np.asarray(tris, np.int64)


def _find_ear(p: np.ndarray, ids: np.ndarray, existing: np.ndarray, n: int) -> int | None:
    """Index of a convex vertex whose triangle holds no other loop vertex and whose diagonal
    is not already a mesh edge; the best-shaped such ear (largest smallest angle proxy)."""
    prev, nxt = np.roll(p, 1, axis=0), np.roll(p, -1, axis=0)
    e1, e2 = p - prev, nxt - p
    cross = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    scale = np.linalg.norm(e1, axis=1) * np.linalg.norm(e2, axis=1)
    cand = np.flatnonzero(cross > 1e-12 * np.maximum(scale, 1e-300))
    if len(cand) == 0:
        return None
    a, b, c = prev[cand], p[cand], nxt[cand]
    inside = np.ones((len(cand), len(p)), bool)
    for s, t in ((a, b), (b, c), (c, a)):  # on the left of (or on) every edge: inside
        d = t - s
        rel = p[None, :, :] - s[:, None, :]
        inside &= (d[:, None, 0] * rel[..., 1] - d[:, None, 1] * rel[..., 0]) >= 0
    j = len(p)
    inside[np.arange(len(cand)), cand] = False
    inside[np.arange(len(cand)), (cand - 1) % j] = False
    inside[np.arange(len(cand)), (cand + 1) % j] = False
    ok = ~inside.any(axis=1)
    lo, hi = np.minimum(ids[(cand - 1) % j], ids[(cand + 1) % j]), np.maximum(
        ids[(cand - 1) % j], ids[(cand + 1) % j])
    key = lo * n + hi
    pos = np.clip(np.searchsorted(existing, key), 0, max(len(existing) - 1, 0))
    if len(existing):
        ok &= existing[pos] != key
    if not ok.any():
        return None
    quality = cross[cand] / np.maximum(scale[cand], 1e-300)  # sine of the ear's angle
    best = np.flatnonzero(ok)[np.argmax(quality[ok])]
    return int(cand[best])


def _manifold_face_pairs(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs of faces sharing an edge used by exactly two faces; whether both traverse that
    edge in the same direction (i.e. their windings disagree); and, per face, whether it has a
    border or non-manifold edge (its patch is then not closed)."""
    _, face_edge, counts = edge_table(faces)
    slots, _ = kernels.manifold_slots(face_edge, counts)
    open_face = (counts[face_edge] != 2).any(axis=1)
    pairs = slots // 3
    keep = pairs[:, 0] != pairs[:, 1]
    slots, pairs = slots[keep], pairs[keep]
    # the vertex each face starts the shared edge from: the same vertex = the same direction
    start = np.ascontiguousarray(faces).reshape(-1)[slots]
    return pairs, start[:, 0] == start[:, 1], open_face


def orient_faces(mesh: MeshData) -> tuple[MeshData, int]:
    """Consistent winding per edge-connected patch, then the right side out.

    Winding: a BFS over the face graph per patch, each face's flip parity that of the face it
    was reached from, XOR whether the two disagree on their shared edge (a numba kernel, linear
    time). Side: a closed patch gets a positive signed volume; an open patch (where "outside"
    is undefined) keeps the orientation most of its area already had. Face order is unchanged,
    so per-face labels need no remapping. Returns the mesh and the number of faces flipped.
    """
    m = mesh.n_faces
    if m == 0:
        return mesh, 0
    pairs, disagree, open_face = _manifold_face_pairs(mesh.faces)
    n_patch, patch, flip = kernels.winding_patches(m, pairs, disagree)
    faces = np.where(flip[:, None], mesh.faces[:, ::-1], mesh.faces)
    vol = kernels.patch_volumes(mesh.vertices, faces, patch, n_patch)
    area = face_areas(mesh)
    flipped_area = np.bincount(patch, weights=area * flip, minlength=n_patch)
    kept_area = np.bincount(patch, weights=area * ~flip, minlength=n_patch)
    closed = np.bincount(patch, weights=open_face, minlength=n_patch) == 0
    invert = np.where(closed, vol < 0, flipped_area > kept_area)
    flip ^= invert[patch]
    faces = np.where(flip[:, None], mesh.faces[:, ::-1], mesh.faces)
    return mesh.replace(faces=faces), int(flip.sum())


def smooth_normals(mesh: MeshData) -> np.ndarray:
    """Area-weighted unit vertex normals (used where the input's normals are stale).

    Where the adjacent faces cancel out (a vertex on a two-sided sheet), the vertex takes the
    normal of one adjacent face, and +Y if even that is degenerate, so every normal is unit
    length as glTF requires.
    """
    v = mesh.vertices[mesh.faces]
    fn = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
    n = np.zeros((mesh.n_vertices, 3))
    for k in range(3):
        np.add.at(n, mesh.faces[:, k], fn)
    length = np.linalg.norm(n, axis=1)
    bad = length <= 1e-12 * max(float(length.max(initial=0.0)), 1e-300)
    if bad.any():
        flen = np.linalg.norm(fn, axis=1, keepdims=True)
        unit_fn = np.where(flen > 0, fn / np.where(flen > 0, flen, 1.0), [0.0, 1.0, 0.0])
        fallback = np.tile([0.0, 1.0, 0.0], (mesh.n_vertices, 1))
        for k in range(3):
            fallback[mesh.faces[:, k]] = unit_fn
        n[bad] = fallback[bad]
        length = np.linalg.norm(n, axis=1)
    return (n / np.where(length > 0, length, 1.0)[:, None]).astype(np.float32)


# ---------------------------------------------------------------------------- placement


@dataclass(frozen=True)
class Placement:
    """World -> asset transform and how its scale was chosen."""

    matrix: np.ndarray
    scale: float
    scale_source: str                      # "catalog" | "source" | "assumed"
    dims_error: tuple[float | None, float | None, float | None]

    def to_json(self) -> dict:
        return {"matrix": self.matrix.tolist(), "scale": self.scale,
                "scale_source": self.scale_source, "dims_error": list(self.dims_error)}


def catalog_scale(extent: np.ndarray, dims_m) -> tuple[float, tuple] | None:
    """Uniform scale fitting the known catalog dimensions (least squares in log space), with
    the relative mismatch per axis; None when no usable dimension is given."""
    axes = [i for i, d in enumerate(dims_m) if d is not None and d > 0 and extent[i] > 0]
    if not axes:
        return None
    logs = [math.log(dims_m[i]) - math.log(extent[i]) for i in axes]
    s = math.exp(sum(logs) / len(logs))
    err = tuple(float(abs(s * extent[i] - dims_m[i]) / dims_m[i]) if i in axes else None
                for i in range(3))
    return s, err


def placement_for(mesh: MeshData, state: AssetState, options: CleanupOptions) -> Placement:
    """Rotate to +Y up, scale to metres, then put the bottom centre at the origin."""
    R = _Z_UP_TO_Y_UP if options.up_axis == "z" else np.eye(4)
    v = mesh.vertices @ R[:3, :3].T
    lo, hi = v.min(0), v.max(0)
    extent = hi - lo
    largest = float(extent.max())
    if largest <= 0:
        raise ProcessingError(
            "the cleaned mesh has no extent (all vertices coincide)",
            "check the generator output for this SKU; re-run generate with more or better views")
    fitted = catalog_scale(extent, state.spec.dims_m)
    source_extent = state.metrics.get("generate_source_extent_m")
    if fitted is not None:
        s, err, src = float(fitted[0]), fitted[1], "catalog"
    elif isinstance(source_extent, (int, float)) and source_extent > 0:
        s, err, src = float(source_extent) / largest, (None, None, None), "source"
    else:
        s, err, src = options.default_extent_m / largest, (None, None, None), "assumed"
    bottom_centre = np.array([(lo[0] + hi[0]) / 2, lo[1], (lo[2] + hi[2]) / 2])
    S = np.eye(4)
    S[:3, :3] *= s
    S[:3, 3] = -s * bottom_centre
    return Placement(S @ R, float(s), src, err)


# ---------------------------------------------------------------------------- the stage


def clean_mesh(mesh: MeshData, options: CleanupOptions, *, imported: bool = False,
               renderer=None) -> tuple[MeshData, dict]:
    """All repair steps on an in-memory mesh (no placement); returns the mesh and counts.

    ``imported``: the mesh is a merchant's file (floaters use the imported threshold).
    ``renderer``: a ``core.render.Renderer`` for the hidden-face test (the process's own by
    default).
    """
    counts: dict = {}
    steps: dict[str, tuple[int, int]] = {}
    note = lambda step, m: steps.__setitem__(step, (m.n_faces, m.n_vertices))
    finite = np.isfinite(mesh.vertices).all(axis=1)
    if not finite.all():  # a NaN / inf corner: the face has no geometry
        non_finite = ~finite[mesh.faces].all(axis=1)
        mesh = mesh.subset_faces(~non_finite)
    else:
        non_finite = np.zeros(0, bool)
    mesh = merge_vertices(mesh, options.merge_tolerance)
    note("weld", mesh)
    bad = degenerate_faces(mesh, options.merge_tolerance)
    counts["degenerate"] = int(bad.sum()) + int(non_finite.sum())
    mesh = mesh.subset_faces(~bad)
    dup = duplicate_faces(mesh.faces)
    counts["duplicate"] = int(dup.sum())
    mesh = mesh.subset_faces(~dup)
    note("degenerate", mesh)
    mesh, counts["slivers_collapsed"], counts["slivers_flipped"] = _repair_slivers(mesh, options)
    note("slivers", mesh)
    mesh, counts["non_manifold_edges"], counts["non_manifold_faces_removed"] = (
        remove_nonmanifold_edges(mesh))
    mesh, counts["non_manifold_vertices"] = split_nonmanifold_vertices(mesh)
    note("non_manifold", mesh)
    counts.update(floaters=0, components=0, flipped=0, interior=0, holes=0, hole_faces=0)
    if mesh.n_faces == 0:
        counts["steps"] = steps
        return mesh, counts
    had_normals = mesh.vertex_normals is not None
    mesh, counts["flipped"] = orient_faces(mesh)
    drop, kept, dropped = floater_faces(
        mesh, options.min_component_area_share,
        options.imported_min_component_share if imported else None)
    counts["floaters"], counts["components"] = dropped, kept
    mesh = mesh.subset_faces(~drop)
    note("floaters", mesh)
    # holes first: an interior shell seen through a hole is visible, and would survive
    mesh = _fill(mesh, options, counts)
    note("holes", mesh)
    if options.remove_interior:
        views = visibility_views(mesh.n_faces, options)
        hidden = hidden_faces(mesh, views, options.visibility_resolution,
                              options.visibility_normal_dot, renderer, options.visibility_method)
        counts["interior"] = int(hidden.sum())
        counts["visibility_views"] = views
        if hidden.all():
            raise ProcessingError(
                "no face of the mesh is visible from outside (every face was hidden)",
                "check the generator output for this SKU; or re-run with cleanup "
                "remove_interior=False")
        mesh = mesh.subset_faces(~hidden)
        mesh, again = split_nonmanifold_vertices(mesh)  # removal can leave new bow-ties
        counts["non_manifold_vertices"] += again
        mesh = _fill(mesh, options, counts)  # and new holes where a wall met the surface
        counts["components"] = vertex_components(mesh)[0]
    note("interior", mesh)
    mesh = mesh.replace(face_labels=segment_parts(
        mesh, options.max_parts, options.part_concave_angle_deg, options.min_part_share,
        options.part_diameter_split))
    if had_normals:
        mesh = mesh.replace(vertex_normals=smooth_normals(mesh))
    counts["steps"] = steps
    return mesh, counts


def _fill(mesh: MeshData, options: CleanupOptions, counts: dict) -> MeshData:
    if not options.fill_holes:
        return mesh
    mesh, holes, faces = fill_holes(mesh)
    counts["holes"] += holes
    counts["hole_faces"] += faces
    return mesh


def _repair_slivers(mesh: MeshData, options: CleanupOptions) -> tuple[MeshData, int, int]:
    """Collapse needles, flip caps, then drop what became degenerate or duplicate."""
    if options.sliver_ratio <= 0 or mesh.n_faces == 0:
        return mesh, 0, 0
    mesh, collapsed = collapse_needles(mesh, options.sliver_ratio)
    mesh, flipped = flip_caps(mesh, options.sliver_ratio)
    if collapsed:
        mesh = mesh.subset_faces(~duplicate_faces(mesh.faces))
        mesh = mesh.subset_faces(~degenerate_faces(mesh, options.merge_tolerance))
    return mesh, collapsed, flipped


def visibility_views(n_faces: int, options: CleanupOptions) -> int:
    """Views for the hidden-face test: all asked for; with the "render" method fewer (>= 16)
    for a very large mesh."""
    if options.visibility_method == "raycast":
        return options.visibility_views
    budget = options.visibility_face_budget // max(n_faces, 1)
    return int(max(min(options.visibility_views, 16), min(options.visibility_views, budget)))


@stage(NAME, "0.3.1", CleanupOptions, Resources(cpus=1, memory_mb=2048))
def cleanup(state: AssetState, options: CleanupOptions) -> StageResult:
    """Repair the dense mesh and place it in the asset frame (see the module docstring)."""
    dense = load_mesh(state, "dense_mesh")
    if dense.n_faces == 0:
        raise ProcessingError(
            "the generator produced an empty mesh (dense_mesh has no faces)",
            "check the photos' masks for this SKU (is the product visible?) or try another backend")
    imported = state.metrics.get("generate_backend") == "mesh"
    mesh, counts = clean_mesh(dense, options, imported=imported)
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
    artifacts = {"clean_mesh": save_mesh(state, mesh), "placement": save_json(state, place.to_json())}
    if "cameras" in state.artifacts:
        cams = [c.transformed(place.matrix) for c in load_cameras(state)]
        artifacts["cameras"] = save_cameras(state, cams)
    metrics = _metrics(dense, mesh, counts, place)
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
    _, _, edge_counts = edge_table(mesh.faces)
    raise ProcessingError(
        f"after repair {rep['parts'] - rep['parts_watertight']} of {rep['parts']} parts are "
        f"still open or non-manifold ({int((edge_counts == 1).sum())} border edges, "
        f"{int((edge_counts > 2).sum())} edges with more than two faces; "
        f"{counts.get('holes', 0)} holes were filled)",
        "the mesh has borders whose winding flips (or overlapping sheets) that cannot be closed "
        "automatically: repair it in a 3D tool (e.g. make manifold / remesh) and re-submit, or "
        "use a profile that does not need closed parts (web, render)")


def _metrics(dense: MeshData, mesh: MeshData, counts: dict, place: Placement) -> dict:
    from .metrics import edge_stats, signed_volume, weld

    wv, wf = weld(mesh.vertices, mesh.faces, 1e-7)
    stats = edge_stats(wf)
    closed = stats.watertight
    parts = part_report(mesh)
    errs = [e for e in place.dims_error if e is not None]
    metrics = {
        "cleanup_watertight": closed,
        "cleanup_manifold": parts["parts_manifold"] == parts["parts"],
        "cleanup_volume_m3": abs(signed_volume(wv, wf)) if closed else None,
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

"""Which faces of a mesh can be seen from outside: the hidden-face half of cleanup.

Why: generators (marching cubes over a learned field, visual hulls, merged scans) leave
interior shells and walls that no one will ever see. They cost triangles, break UV packing and
baking, and make volumes wrong. The AssetGen recipe finds them without any notion of "inside":

1. cast a ray through every pixel of many views on a sphere around the object (a Fibonacci
   sphere; Embree through open3d by default, or face-id renders with ``geometry.render`` on EGL,
   the faster of the two on a GPU); a face first hit by a ray of any view is *visible*;
2. flood fill over face adjacency (faces sharing an edge) seeded from the visible faces,
   crossing an edge only where the two face normals agree (dot > ``normal_dot``). Exterior
   faces hidden in a cavity, in shadow, or smaller than a pixel are reached through their smooth
   neighbours and kept; an enclosed shell is never reached and is reported as hidden.

Everything is vectorised (numpy + the geometry layer's kernels), so a million faces is one BVH,
a few million rays and one connected-components pass. ``tasks.cleanup`` calls them.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from ..core.camera import Camera, orbit_camera
from ..core.mesh import MeshData
from ..geometry.closest import RayScene
from ..geometry.components import flood_from_seeds
from ..geometry.derived import (
    edge_face_pairs,
    edge_table,
    face_normals,
    hull_points,
    manifold_pairs,
    ray_scene,
)

log = logging.getLogger(__name__)

#: Vertical field of view of the visibility cameras (narrow: little perspective distortion).
FOV_Y_DEG = 30.0


def fibonacci_directions(n: int) -> np.ndarray:
    """(n, 3) unit vectors spread evenly over the sphere (golden-angle spiral), deterministic."""
    if n < 1:
        raise ValueError(f"need at least one direction, got {n}")
    i = np.arange(n) + 0.5
    y = 1.0 - 2.0 * i / n
    r = np.sqrt(np.maximum(0.0, 1.0 - y * y))
    theta = math.pi * (3.0 - math.sqrt(5.0)) * i
    return np.stack([r * np.sin(theta), y, r * np.cos(theta)], axis=1)


def sphere_cameras(mesh: MeshData, n_views: int = 64, resolution: int = 256) -> list[Camera]:
    """Cameras on a Fibonacci sphere, each looking at the bounding-box centre and framing the
    whole bounding sphere (so every face is inside every image)."""
    lo, hi = mesh.bounds()
    centre = (lo + hi) / 2.0
    radius = max(float(np.linalg.norm(hi - lo)) / 2.0, 1e-9)
    distance = 1.05 * radius / math.sin(math.radians(FOV_Y_DEG) / 2.0)
    cams = []
    for k, d in enumerate(fibonacci_directions(n_views)):
        azimuth = math.degrees(math.atan2(d[0], d[2]))
        elevation = math.degrees(math.asin(float(np.clip(d[1], -1.0, 1.0))))
        cams.append(orbit_camera(f"vis{k:03d}", azimuth, elevation, distance, FOV_Y_DEG,
                                 resolution, tuple(centre)))
    return cams


METHODS = ("raycast", "render")
RAY_BATCH = 1 << 19  # rays per Embree call (~24 MB of float32 rays + hits)


def camera_rays(cam: Camera, outline: np.ndarray | None = None) -> np.ndarray:
    """(H*W, 6) float32 rays (origin, direction) through every pixel centre of ``cam``, row
    by row from the top, the way the renderer's face-id image is laid out.

    ``outline``: points whose convex hull holds the whole surface (e.g. the mesh's hull
    vertices): then only the pixels whose ray can reach that hull, still in row order (a
    ray through any other pixel misses the surface). Each kept ray is the same as in the
    full image."""
    u, v = np.meshgrid(np.arange(cam.width, dtype=np.float64),
                       np.arange(cam.height, dtype=np.float64))
    if outline is not None:
        keep = _inside_outline(cam, outline).ravel()
        u, v = u.ravel()[keep], v.ravel()[keep]
    K = cam.K
    y = -(v - K[1, 2]) / K[1, 1]
    x = (u - K[0, 2] + K[0, 1] * y) / K[0, 0]
    d = np.stack([x, y, -np.ones_like(u)], axis=-1).reshape(-1, 3)
    d = d @ cam.world_to_camera[:3, :3]                       # camera -> world: R^T d
    o = np.broadcast_to(cam.position, d.shape)
    return np.concatenate([o, d], axis=1).astype(np.float32)


#: Pixels of slack around a surface's projected outline (float32 rays, rounding).
OUTLINE_MARGIN_PX = 2.0


def _inside_outline(cam: Camera, outline: np.ndarray) -> np.ndarray:
    """(H, W) bool: the pixels whose centre lies within ``OUTLINE_MARGIN_PX`` of the projected
    outline's convex hull (its points all in front of the camera: the sphere cameras frame
    the whole bounding sphere). A ray through another pixel cannot hit a face in the hull."""
    from scipy.spatial import ConvexHull, QhullError

    h, w = cam.height, cam.width
    q = (cam.world_to_camera[:3, :3] @ np.asarray(outline, np.float64).T
         + cam.world_to_camera[:3, 3:4])
    if len(outline) == 0 or not np.all(q[2] < 0):
        return np.ones((h, w), bool)  # a point behind the camera: every pixel
    K = cam.K
    y, x = q[1] / -q[2], q[0] / -q[2]
    # the inverse of camera_rays' pixel -> direction map
    pu, pv = K[0, 0] * x + K[0, 2] - K[0, 1] * y, K[1, 2] - K[1, 1] * y
    m = OUTLINE_MARGIN_PX
    rows = np.arange(h, dtype=np.float64)
    lo = np.where((rows >= pv.min() - m) & (rows <= pv.max() + m), pu.min() - m, np.inf)
    hi = np.full(h, pu.max() + m)
    try:
        eq = ConvexHull(np.stack([pu, pv], axis=1)).equations  # a u + b v + c <= 0 inside
    except (QhullError, ValueError):  # collinear: the rectangle alone
        eq = np.zeros((0, 3))
    # each row's span inside the hull grown by m: a u + b v + c <= m for every edge
    a, b, c = eq[:, 0], eq[:, 1], eq[:, 2]
    bound = m - c[None, :] - b[None, :] * rows[:, None]  # a u <= bound, (rows, edges)
    with np.errstate(divide="ignore", invalid="ignore"):
        lim = bound / a[None, :]
    lo = np.maximum(lo, np.max(np.where(a < 0, lim, -np.inf), axis=1, initial=-np.inf))
    hi = np.minimum(hi, np.min(np.where(a > 0, lim, np.inf), axis=1, initial=np.inf))
    shut = (np.where(a == 0, bound, 0.0) < 0).any(axis=1)  # edges along a row bound v alone
    lo[shut] = np.inf
    cols = np.arange(w, dtype=np.float64)
    return (cols[None, :] >= lo[:, None]) & (cols[None, :] <= hi[:, None])


#: Barycentric sample points per face for the point test: the centroid and three points
#: towards the corners (inside the face, so a ray aimed at one cannot graze a neighbour).
_POINT_WEIGHTS = np.array([[1 / 3, 1 / 3, 1 / 3], [0.6, 0.2, 0.2], [0.2, 0.6, 0.2],
                           [0.2, 0.2, 0.6]])


def every_face_seen_at_points(scene: RayScene, mesh: MeshData, cams: list[Camera]) -> bool:
    """True when every face is the first hit of a ray from some camera towards one of its
    sample points, i.e. every face provably shows from outside.

    The shortcut for small meshes: the pixel test costs ``views x resolution^2`` rays whatever
    the mesh (4.2M at the defaults; most of cleanup's time on a 12-triangle box), this one
    ``views x 4 x faces`` at most, stopping once every face was hit. When it proves every face
    visible the pixel test could only agree (it finds visible faces; none is left to find);
    otherwise the caller runs the pixel test as before.
    """
    points = np.einsum("sk,fkd->fsd", _POINT_WEIGHTS,
                       np.asarray(mesh.vertices, np.float64)[mesh.faces])  # (F, S, 3)
    owner = np.repeat(np.arange(mesh.n_faces), len(_POINT_WEIGHTS))
    points = points.reshape(-1, 3)
    unseen = np.ones(mesh.n_faces, bool)
    for cam in cams:
        todo = unseen[owner]
        if not todo.any():
            break
        p, who = points[todo], owner[todo]
        origin = np.broadcast_to(np.asarray(cam.position, np.float64), p.shape)
        rays = np.concatenate([origin, p - origin], axis=1).astype(np.float32)
        _, hit, _ = scene.first_hits(rays)
        unseen[who[hit == who]] = False
    return not unseen.any()


def visible_faces(mesh: MeshData, n_views: int = 64, resolution: int = 256,
                  renderer=None, method: str = "raycast") -> np.ndarray:
    """(M,) bool: faces covering at least one pixel centre in at least one view.

    ``method="raycast"`` (default): Embree rays through every pixel centre (open3d's
    ``RaycastingScene``); ``"render"``: face-id images from ``geometry.render`` (OpenGL). Both
    give the first face along each pixel's ray; on a CPU ray casting is ~9x faster at 1.6M
    faces and 64 views (benchmarks/cleanup.py), as Mesa's software rasteriser pays for every
    triangle in every view while a BVH pays for the triangles once.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    seen = np.zeros(mesh.n_faces, bool)
    if mesh.n_faces == 0:
        return seen
    cams = sphere_cameras(mesh, n_views, resolution)
    if method == "raycast":
        scene = ray_scene(mesh)  # cached on the mesh: the parts' shape diameter reuses it
        if (mesh.n_faces * len(_POINT_WEIGHTS) * 8 <= resolution * resolution
                and every_face_seen_at_points(scene, mesh, cams)):
            seen[:] = True
            return seen
        # only the pixels inside the surface's projected outline: on a compact object about
        # a third of each image (the cameras frame its bounding sphere), the others miss
        outline = hull_points(mesh)  # cached: cleanup computes it beside other work
        batch: list[np.ndarray] = []
        size = 0
        for cam in cams:
            batch.append(camera_rays(cam, outline))
            size += len(batch[-1])
            if size >= RAY_BATCH or cam is cams[-1]:
                seen[scene.seen_faces(np.concatenate(batch))] = True
                batch, size = [], 0
        return seen
    if renderer is None:
        from ..geometry.render import get_renderer

        renderer = get_renderer()
    for cam in cams:
        ids = renderer.face_ids(mesh, cam)
        seen[ids[ids >= 0]] = True
    return seen


def hidden_faces(mesh: MeshData, n_views: int = 64, resolution: int = 256,
                 normal_dot: float = 0.5, renderer=None, method: str = "raycast") -> np.ndarray:
    """(M,) bool: faces never seen and not reachable from a seen face across smooth edges.

    Normals must be consistently wound (cleanup orients before calling this); the gate
    ``normal_dot`` stops the fill at creases sharper than ``acos(normal_dot)`` so it does not
    leak from the outer surface into an interior wall that meets it at a sharp angle.
    """
    if mesh.n_faces == 0:
        return np.zeros(0, bool)
    seen = visible_faces(mesh, n_views, resolution, renderer, method)
    pairs = _face_pairs(mesh)
    n = face_normals(mesh)
    agree = np.einsum("ij,ij->i", n[pairs[:, 0]], n[pairs[:, 1]]) > normal_dot
    kept = flood_from_seeds(mesh.n_faces, pairs[agree], np.flatnonzero(seen))
    log.debug("visibility: %d faces, %d seen in %d views, %d reached, %d hidden",
              mesh.n_faces, int(seen.sum()), n_views, int(kept.sum()), int((~kept).sum()))
    return ~kept


def _face_pairs(mesh: MeshData) -> np.ndarray:
    """Faces sharing an edge, for the fill: on an edge-manifold mesh (cleanup repairs that
    first) the manifold pairs, the same connections for less work than the chained pairs of
    every edge, which the fill needs only where an edge has more than two faces."""
    _, _, counts = edge_table(mesh)  # cached: cleanup's other steps share the edge table
    if len(counts) and int(counts.max()) <= 2:
        return manifold_pairs(mesh)[0]
    return edge_face_pairs(mesh)[0]

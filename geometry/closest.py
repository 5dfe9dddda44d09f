"""Closest points and rays against a triangle mesh: Embree's BVH through open3d's
``RaycastingScene`` (about a million closest-point queries per second on a CPU core)."""

from __future__ import annotations

import threading

import numpy as np

from ..core.mesh import MeshData
from ..core.stage import stage_cpus
from .normals import unit, vertex_normals


def raycasting_scene(vertices: np.ndarray, faces: np.ndarray, threads: int = 0):
    """An open3d ``RaycastingScene`` holding one mesh (float32 positions, uint32 indices);
    ``threads`` bounds the threads that build its BVH (0 = the cores the running stage was
    granted)."""
    import open3d as o3d

    scene = o3d.t.geometry.RaycastingScene(nthreads=int(threads) or stage_cpus())
    scene.add_triangles(o3d.core.Tensor(np.asarray(vertices).astype(np.float32)),
                        o3d.core.Tensor(np.asarray(faces).astype(np.uint32)))
    return scene


def closest_points(scene, points: np.ndarray, threads: int = 0
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(closest points (T, 3), face ids (T,), barycentric coordinates (T, 3)) on the scene,
    on at most ``threads`` threads (0 = the cores the running stage was granted)."""
    import open3d as o3d

    out = scene.compute_closest_points(o3d.core.Tensor(np.asarray(points).astype(np.float32)),
                                       nthreads=int(threads) or stage_cpus())
    q = out["points"].numpy().astype(np.float64)
    prim = out["primitive_ids"].numpy().astype(np.int64)
    uv = out["primitive_uvs"].numpy().astype(np.float64)
    return q, prim, np.stack([1 - uv[:, 0] - uv[:, 1], uv[:, 0], uv[:, 1]], axis=1)


def cast_rays(scene, origins: np.ndarray, directions: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(distance along the ray (T,), inf on a miss; face ids (T,), -1 on a miss; barycentric
    coordinates (T, 3)) of the first hit of each ray on the scene."""
    import open3d as o3d

    rays = np.concatenate([np.asarray(origins), np.asarray(directions)], axis=1)
    hit = scene.cast_rays(o3d.core.Tensor(rays.astype(np.float32)))
    t = hit["t_hit"].numpy().astype(np.float64)
    prim = hit["primitive_ids"].numpy().astype(np.int64)
    miss = ~np.isfinite(t) | (prim == o3d.t.geometry.RaycastingScene.INVALID_ID)
    t[miss] = np.inf
    prim[miss] = -1
    uv = hit["primitive_uvs"].numpy().astype(np.float64)
    return t, prim, np.stack([1 - uv[:, 0] - uv[:, 1], uv[:, 0], uv[:, 1]], axis=1)


_SHARED_LOCK = threading.Lock()
_SHARED: list = []  # at most one (content key, scene)


def shared_scene(mesh: MeshData, threads: int = 0, keep: bool = True):
    """``raycasting_scene`` of the mesh from a one-entry cache of this process, keyed by the
    mesh's content (positions and faces).

    Why: simplify's error metric builds the BVH of the clean dense mesh and bake builds the
    same BVH again for its closest points (~0.5-0.9 s of CPU for a million faces); where the
    two stages run in one process (fused CPU stages; the dense benchmark) bake takes it from
    here. ``keep=True`` (the first user): the BVH is built now, with ``threads``, and the
    scene kept for a later user, replacing any other. ``keep=False`` (the last user): a kept
    scene is handed out and dropped, so the process holds no dense BVH between assets;
    without one a scene is made as ``raycasting_scene`` makes it. Embree's answers do not
    depend on who built the scene (the same triangles in the same order)."""
    key = mesh.content_key(("vertices", "faces"))
    with _SHARED_LOCK:
        if _SHARED and _SHARED[0][0] == key:
            scene = _SHARED[0][1]
            if not keep:
                _SHARED.clear()
            return scene
    scene = raycasting_scene(mesh.vertices, mesh.faces, threads)
    if keep:
        if mesh.n_faces:  # Embree builds the BVH at the first query: build it now
            closest_points(scene, mesh.vertices[mesh.faces[:1, 0]], threads or 1)
        with _SHARED_LOCK:
            _SHARED[:] = [(key, scene)]
    return scene


class CoherentGrid:
    """Exact closest points on a triangle mesh (float64) from a uniform grid of its faces,
    for query points that come in runs of neighbours (``_closest_numba.closest_in_grid``).

    Why: the bake asks for the closest dense point of every texel of the atlas (2-3M) in
    image order, where each texel lies a fraction of a face from the one before it. Starting
    each query from the previous texel's face bounds it to the grid cells within that
    distance (one to a few, a dozen faces each, most rejected by their boxes), where a BVH
    descends from its root every time. The cell edge is ``CELL_FACES`` times the mean face
    size (the square root of the mean area), the grid at most ``MAX_CELLS`` cells."""

    CELL_FACES = 1.5
    MAX_CELLS = 1 << 23

    def __init__(self, vertices: np.ndarray, faces: np.ndarray) -> None:
        from ._closest_numba import build_grid, face_boxes

        self.vertices = np.ascontiguousarray(vertices, np.float64)
        self.faces = np.ascontiguousarray(faces, np.int64)
        if len(self.faces) == 0:
            raise ValueError("CoherentGrid needs a mesh with faces")
        self.flo, self.fhi, self.lo, hi, area = face_boxes(self.vertices, self.faces)
        extent = np.maximum(hi - self.lo, 1e-12)
        h = max(self.CELL_FACES * float(np.sqrt(area)), float(extent.max()) * 1e-6)
        h = max(h, float(np.prod(extent) / self.MAX_CELLS) ** (1.0 / 3.0))
        dims = np.maximum(np.ceil(extent / h).astype(np.int64), 1)
        while int(np.prod(dims)) > self.MAX_CELLS:   # flat boxes: ceil() can overshoot
            h *= 1.1
            dims = np.maximum(np.ceil(extent / h).astype(np.int64), 1)
        self.h = h
        self.dims = tuple(int(d) for d in dims)
        self.start, self.items = build_grid(self.flo, self.fhi, self.lo, self.h, *self.dims)

    def query(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                  np.ndarray]:
        """(distance (T,), face (T,), u (T,), v (T,)): the closest point of each point is
        ``(1 - u - v) a + u b + v c`` of its face's corners a, b, c."""
        from ._closest_numba import closest_in_grid

        return closest_in_grid(np.ascontiguousarray(points, np.float64), self.vertices,
                               self.faces, self.lo, self.h, *self.dims, self.start,
                               self.items, self.flo, self.fhi)


class ClosestSurface:
    """Closest-point queries on one mesh, with its smooth normal at the answer, on at most
    ``threads`` threads (0 = the cores the running stage was granted)."""

    def __init__(self, mesh: MeshData, threads: int = 0, shared: bool = False) -> None:
        """``shared``: take the scene ``shared_scene`` kept for this mesh, if any (and drop
        it there)."""
        self.threads = int(threads)
        self.scene = (shared_scene(mesh, self.threads, keep=False) if shared
                      else raycasting_scene(mesh.vertices, mesh.faces, self.threads))
        self.faces = np.ascontiguousarray(mesh.faces, np.int64)
        self.vertices = np.ascontiguousarray(mesh.vertices, np.float64)
        self._grid: CoherentGrid | None = None
        self.normals = np.ascontiguousarray(vertex_normals(mesh.vertices, mesh.faces)
                        if mesh.vertex_normals is None
                        else unit(np.asarray(mesh.vertex_normals, np.float64)))

    def closest_coherent(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``closest`` for many points in an order where neighbours follow each other (texels
        in image order), exact in float64, on this thread (``CoherentGrid``): each query
        starts from the previous point's face, so it visits one or a few grid cells instead
        of descending Embree's BVH (2-3M texel queries on a 20-70k-face dense mesh: about
        a fifth of Embree's time on one core)."""
        from ._closest_numba import interpolate_normals

        if self._grid is None:
            self._grid = CoherentGrid(self.vertices, self.faces)
        dist, face, u, v = self._grid.query(points)
        return dist, interpolate_normals(face, u, v, self.faces, self.normals)

    def closest(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(distance (T,), unit normal (T, 3)) of the closest surface point.

        Embree's float32 answers go to one numba pass as they come (the numpy formulation's
        float64 copies, gathered (T, 3, 3) normals and temporaries cost about as much CPU
        as Embree's query on the bake's 2-3M texels)."""
        import open3d as o3d

        from ._closest_numba import closest_normals

        p = np.ascontiguousarray(points, np.float64)
        out = self.scene.compute_closest_points(o3d.core.Tensor(p.astype(np.float32)),
                                                nthreads=self.threads or stage_cpus())
        return closest_normals(p, out["points"].numpy(), out["primitive_ids"].numpy(),
                               out["primitive_uvs"].numpy(), self.faces, self.normals)


class RayScene:
    """First hits of rays on a mesh, through one Embree scene that several steps share.

    Building the BVH is most of the cost of a ray query on a dense mesh (~0.5-0.9 s of CPU for
    a million faces, where casting half a million rays takes ~0.1 s), and cleanup casts rays
    at the same surface twice: the hidden-face test, then the parts' shape diameter on the
    mesh less the hidden faces. ``face_of_prim`` lets a mesh that keeps a subset of an earlier
    mesh's faces (same corner positions, same order) use that mesh's scene: it maps the
    scene's triangles to this mesh's faces, -1 for a face since removed, and a ray that hits a
    removed face is cast on from just beyond it, as if the face were not in the scene.
    """

    #: Rays hitting removed faces are cast on at most this many times (then count as misses).
    MAX_SKIPS = 64

    def __init__(self, scene, face_of_prim: np.ndarray | None = None, extent: float = 1.0):
        self.scene = scene
        self.face_of_prim = face_of_prim
        self.extent = float(extent) or 1.0

    @classmethod
    def of(cls, mesh: MeshData, threads: int = 0) -> RayScene:
        extent = float(np.linalg.norm(np.ptp(mesh.vertices, axis=0))) if mesh.n_vertices else 1.0
        return cls(raycasting_scene(mesh.vertices, mesh.faces, threads), None, extent)

    @classmethod
    def built(cls, mesh: MeshData, threads: int = 0) -> RayScene:
        """``of(mesh, threads)`` with its BVH built now (Embree builds it at the first query),
        e.g. on a spare granted CPU before the rays are ready."""
        scene = cls.of(mesh, threads)
        if mesh.n_faces:
            c = np.asarray(mesh.vertices[mesh.faces[0]], np.float64).mean(axis=0)
            scene.first_hits(np.array([[*(c + 1.0), -1.0, -1.0, -1.0]]), threads=threads or 1)
        return scene

    def subset(self, kept: np.ndarray, n_before: int) -> RayScene:
        """This scene for a mesh keeping faces ``kept`` (indices, increasing) of the
        ``n_before`` faces of the mesh it serves now, in order."""
        new_of_old = np.full(n_before + 1, -1, np.int64)  # slot n_before: stays -1
        new_of_old[np.asarray(kept, np.int64)] = np.arange(len(kept))
        old = (np.arange(n_before) if self.face_of_prim is None
               else np.where(self.face_of_prim < 0, n_before, self.face_of_prim))
        return RayScene(self.scene, new_of_old[old], self.extent)

    def seen_faces(self, rays: np.ndarray, threads: int = 0) -> np.ndarray:
        """Faces (int64, unordered, with repeats) first hit by some of the (R, 6) rays: the
        hidden-face test's millions of pixel rays need no distances."""
        import open3d as o3d

        if self.face_of_prim is not None:
            face = self.first_hits(rays, threads=threads)[1]
            return face[face >= 0]
        ids = self.scene.cast_rays(o3d.core.Tensor(np.ascontiguousarray(rays, np.float32)),
                                   nthreads=int(threads) or stage_cpus())["primitive_ids"]
        ids = ids.numpy()
        return ids[ids != o3d.t.geometry.RaycastingScene.INVALID_ID].astype(np.int64)

    def first_hits(self, rays: np.ndarray, normals: bool = False, threads: int = 0
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(distance (R,) float64, inf on a miss; face (R,) int64, -1 on a miss; with
        ``normals`` the hit face's unit normal (R, 3), else None) for (R, 6) float32 rays
        (origin, direction), on at most ``threads`` threads (0: the running stage's cores)."""
        import open3d as o3d

        rays = np.ascontiguousarray(rays, np.float32)
        nthreads = int(threads) or stage_cpus()
        invalid = o3d.t.geometry.RaycastingScene.INVALID_ID
        hit = self.scene.cast_rays(o3d.core.Tensor(rays), nthreads=nthreads)
        prim = hit["primitive_ids"].numpy()
        miss = prim == invalid
        face = prim.astype(np.int64)
        if self.face_of_prim is not None:
            face[miss] = 0
            face = self.face_of_prim[face]
        face[miss] = -1
        t = hit["t_hit"].numpy().astype(np.float64)
        t[miss] = np.inf
        n = hit["primitive_normals"].numpy().astype(np.float64) if normals else None
        if self.face_of_prim is None:
            return t, face, n
        # distances are in units of each ray's direction vector (as Embree reports them)
        again = np.flatnonzero(~miss & (face < 0))
        for _ in range(self.MAX_SKIPS):
            if len(again) == 0:
                break
            sub = rays[again].astype(np.float64)
            step = t[again] + 1e-6 * self.extent / np.maximum(
                np.linalg.norm(sub[:, 3:], axis=1), 1e-300)
            sub[:, :3] += sub[:, 3:] * step[:, None]
            h = self.scene.cast_rays(o3d.core.Tensor(sub.astype(np.float32)), nthreads=nthreads)
            p = h["primitive_ids"].numpy()
            t2 = h["t_hit"].numpy().astype(np.float64)
            m2 = (p == invalid) | ~np.isfinite(t2)
            f2 = self.face_of_prim[np.where(m2, 0, p).astype(np.int64)]
            f2[m2] = -1
            t[again] = np.where(m2, np.inf, step + t2)
            face[again] = f2
            if n is not None:
                n[again] = h["primitive_normals"].numpy()
            again = again[~m2 & (f2 < 0)]
        if len(again):  # still behind removed faces after MAX_SKIPS: counted as misses
            t[again], face[again] = np.inf, -1
        return t, face, n


class ExactIndex:
    """What ``exact_distances`` searches a mesh with, built once per mesh: the float64
    positions, the faces, each face's bounding box and the faces in order of the box's low x.
    Built apart from the queries so that a stage can build it (with the Embree scene) beside
    other work, on a CPU it was granted."""

    def __init__(self, vertices: np.ndarray, faces: np.ndarray) -> None:
        self.vertices = np.ascontiguousarray(vertices, np.float64)
        self.faces = np.ascontiguousarray(faces, np.int64)
        if len(self.faces):
            tri = self.vertices[self.faces]
            self.lo, self.hi = tri.min(1), tri.max(1)
        else:
            self.lo = self.hi = np.zeros((0, 3))
        self.order = np.argsort(self.lo[:, 0], kind="stable")


def exact_distances(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray,
                    prim: np.ndarray, index: ExactIndex | None = None) -> np.ndarray:
    """Distances (T,) from ``points`` to the mesh, given Embree's closest faces ``prim``: each
    is the float64 distance to that face, and the largest are made exact by a search over
    every face near the point, so the maximum is exact. ``index``: the mesh's ``ExactIndex``
    when one was built already (else built here).

    Why: Embree's closest-point query (through open3d) works in float32, and on long, thin
    slivers (a flat face split into coplanar triangles, then collapsed) its point-triangle
    test can land up to ~1e-3 of the extent off; it then reports that distance, or a farther
    face. The float64 distance to the reported face is never below the true one, so
    searching the points in order of that bound, until the bound falls under the largest
    exact distance found, gives the exact maximum (a Hausdorff distance) at the cost of a few
    linear scans; the other points keep the float64 distance to the reported face."""
    from ._closest_numba import candidate_distances, exact_top

    ix = ExactIndex(vertices, faces) if index is None else index
    p = np.ascontiguousarray(points, np.float64)
    d = candidate_distances(p, ix.vertices, ix.faces, np.ascontiguousarray(prim, np.int64))
    if len(d) == 0 or len(ix.faces) == 0:
        return d
    idx, exact = exact_top(p, d, ix.vertices, ix.faces, ix.lo, ix.hi, ix.order)
    d[idx] = exact
    return d

"""Derived data of a mesh, computed once per content and shared (``MeshData.derived``).

The stages and metrics ask these of the same mesh several times (parts asks for face normals
in three places, cleanup's checks and metrics for the same edge table); each accessor computes
once and returns the cached value until the mesh's arrays change. Float arrays come back
read-only, so a caller cannot change the shared copy by accident; integer tables feed the
numba kernels as they are (a read-only array is a different type to numba).
"""

from __future__ import annotations

import numpy as np

from ..core.mesh import MeshData
from . import components as _components
from . import normals as _normals
from . import topology as _topology
from .closest import RayScene


def _frozen(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


def face_areas(mesh: MeshData) -> np.ndarray:
    """Area of each face (read-only, cached)."""
    return mesh.derived("face_areas", lambda: _frozen(
        _normals.face_areas(mesh.vertices, mesh.faces)))


def face_normals(mesh: MeshData) -> np.ndarray:
    """Unit geometric normal of each face, zero for degenerate faces (read-only, cached)."""
    return mesh.derived("face_normals", lambda: _frozen(
        _normals.face_normals(mesh.vertices, mesh.faces)))


def edge_table(mesh: MeshData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``topology.edge_table`` of the mesh's faces (cached; depends on the faces only)."""
    return mesh.derived("edge_table", lambda: _topology.edge_table(mesh.faces), ("faces",))


def manifold_pairs(mesh: MeshData) -> tuple[np.ndarray, np.ndarray]:
    """Face pairs across every edge exactly two faces use, and those edges (cached)."""
    def compute():
        _, face_edge, counts = edge_table(mesh)
        return _topology.manifold_pairs(face_edge, counts)

    return mesh.derived("manifold_pairs", compute, ("faces",))


def vertex_fans(mesh: MeshData) -> tuple[np.ndarray, np.ndarray]:
    """``topology.vertex_fans`` of the mesh (cached)."""
    return mesh.derived("vertex_fans", lambda: _topology.vertex_fans(
        mesh.faces, table=edge_table(mesh), pairs=manifold_pairs(mesh)), ("faces",))


def edge_face_pairs(mesh: MeshData) -> tuple[np.ndarray, np.ndarray]:
    """``topology.edge_face_pairs`` of the mesh (cached)."""
    return mesh.derived("edge_face_pairs", lambda: _topology.edge_face_pairs(
        mesh.faces, table=edge_table(mesh)), ("faces",))


def vertex_components(mesh: MeshData) -> tuple[int, np.ndarray]:
    """(count over all vertices, component per face) through shared vertices (cached)."""
    return mesh.derived("vertex_components", lambda: _components.vertex_components(mesh),
                        ("vertices", "faces"))


def ray_scene(mesh: MeshData) -> RayScene:
    """An Embree scene of the mesh for first-hit ray queries (cached: the BVH of a dense mesh
    costs far more than the rays cleanup casts at it)."""
    return mesh.derived("ray_scene", lambda: RayScene.of(mesh))


def hull_points(mesh: MeshData) -> np.ndarray:
    """The vertices of the convex hull of the vertices the faces use (read-only, cached);
    all of those vertices where no hull can be built (flat or tiny meshes). Every face lies
    inside their hull, so a ray that misses the hull misses the mesh."""
    return mesh.derived("hull_points", lambda: _frozen(_hull_points(mesh)),
                        ("vertices", "faces"))


def _hull_points(mesh: MeshData) -> np.ndarray:
    from scipy.spatial import ConvexHull, QhullError

    used = np.zeros(mesh.n_vertices, bool)
    used[np.asarray(mesh.faces).ravel()] = True
    pts = np.array(mesh.vertices, np.float64)[used]
    if len(pts) < 5:
        return pts
    try:
        return pts[ConvexHull(pts).vertices]
    except (QhullError, ValueError):
        return pts


def adopt_ray_scene(mesh: MeshData, source: MeshData, scene: RayScene,
                    hull: np.ndarray | None = None) -> bool:
    """Cache ``scene``, built for ``source``, as ``mesh``'s when the two have the same
    positions and faces (corner order included: it decides the hit normals); returns whether
    it did (``hull``: the source's ``hull_points``, cached the same way). For a scene built
    ahead of time, beside steps that usually leave the mesh as it was (cleanup builds the
    hidden-face test's scene and hull while it orients the faces)."""
    same = (source.vertices.shape == mesh.vertices.shape and source.faces.shape == mesh.faces.shape
            and np.array_equal(source.faces, mesh.faces)
            and np.array_equal(source.vertices, mesh.vertices))
    if same:
        mesh.derived("ray_scene", lambda: scene)
        if hull is not None:  # ``hull_points(source)``, computed beside it
            mesh.derived("hull_points", lambda: hull, ("vertices", "faces"))
    return same


def keep_ray_scene(before: MeshData, after: MeshData, kept: np.ndarray) -> None:
    """Let ``after``, which keeps faces ``kept`` (indices, increasing) of ``before`` in order
    with the same corner positions (a face subset, bow-ties split), use ``before``'s cached
    scene instead of building its own. Does nothing when ``before`` has none."""
    scene = before.cached("ray_scene")
    if scene is None:
        return
    kept = np.asarray(kept, np.int64)
    if len(kept) != after.n_faces:
        raise ValueError(f"{len(kept)} kept faces for a mesh of {after.n_faces}")
    after.derived("ray_scene", lambda: scene.subset(kept, before.n_faces))


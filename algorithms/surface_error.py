"""Two-sided surface error between a mesh and its simplification (Chamfer, Hausdorff, normal
error), from uniform area samples and Embree closest points, with float64 distances and an
exact maximum (see ``geometry.closest.exact_distances``).

The dense mesh's side (its samples, its Embree scene, its exact-search index) depends on the
dense mesh alone and is most of the cost on a dense input (the BVH of a million faces), so it
can be built first (``reference``), e.g. on a second granted CPU while the decimation runs;
the figures are the same either way."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.mesh import MeshData
from ..geometry.closest import (
    ExactIndex,
    closest_points,
    exact_distances,
    raycasting_scene,
    shared_scene,
)
from ..geometry.normals import face_normals
from ..geometry.sampling import sample_surface, surface_points


def _samples(mesh: MeshData, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` area-uniform points on the surface and the face each lies on."""
    idx, bary = sample_surface(mesh.vertices, mesh.faces, n, rng)
    return surface_points(mesh.vertices, mesh.faces, idx, bary), idx


@dataclass
class _Surface:
    """A mesh ready for exact closest-point queries: its Embree scene and exact index."""

    mesh: MeshData
    scene: object
    index: ExactIndex

    @classmethod
    def of(cls, mesh: MeshData, threads: int = 0, shared: bool = False) -> _Surface:
        """``shared``: the scene is kept for a later stage of this process that asks for the
        same mesh's (``geometry.closest.shared_scene``: bake's closest points)."""
        if shared:
            scene = shared_scene(mesh, threads)
        else:
            scene = raycasting_scene(mesh.vertices, mesh.faces, threads)
            if mesh.n_faces:  # Embree builds the BVH at the first query: build it now
                closest_points(scene, mesh.vertices[mesh.faces[:1, 0]], threads or 1)
        return cls(mesh, scene, ExactIndex(mesh.vertices, mesh.faces))

    def closest(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(distance, nearest face) of each point: Embree's face, the distance exact (float64,
        and the largest made exact by a search; see ``exact_distances``)."""
        _, prim, _ = closest_points(self.scene, points)
        return exact_distances(self.mesh.vertices, self.mesh.faces, points, prim,
                               self.index), prim


@dataclass
class Reference:
    """The dense mesh's side of ``surface_error``: its samples (drawn first from the seeded
    generator, which the simplified side's samples continue), its scene and exact index."""

    surface: _Surface
    samples: int
    points: np.ndarray
    faces: np.ndarray
    rng: np.random.Generator
    diag: float


def reference(dense: MeshData, samples: int = 100_000, seed: int = 0,
              threads: int = 0, share: bool = False) -> Reference:
    """The dense side of ``surface_error(dense, ..., samples, seed)``; ``threads`` bounds the
    threads of its BVH build (0: the cores the running stage was granted). ``share``: the
    dense mesh's scene is kept for a later stage of this process that asks for the same
    mesh's (``geometry.closest.shared_scene``; bake's closest points on the clean mesh)."""
    rng = np.random.default_rng(seed)
    lo, hi = dense.bounds()
    diag = float(np.linalg.norm(hi - lo)) or 1.0
    pd, fd = _samples(dense, samples, rng)
    return Reference(_Surface.of(dense, threads, shared=share), samples, pd, fd, rng, diag)


def surface_error(dense: MeshData, simple: MeshData, samples: int = 100_000,
                  seed: int = 0, ref: Reference | None = None) -> dict[str, float]:
    """Two-sided point-to-surface error of ``simple`` against ``dense``, with the dense mesh's
    bounding-box diagonal scaled to 1: ``chamfer`` (mean of the two mean distances),
    ``hausdorff`` (max of the two max distances), ``normal_error_deg`` (mean angle between a
    dense sample's face normal and the normal of the closest simplified face). ``ref``:
    ``reference(dense, samples, seed)`` when built already (used once: it holds the seeded
    generator the simplified side's samples continue from)."""
    if ref is None:
        ref = reference(dense, samples, seed)
    elif ref.surface.mesh is not dense or ref.samples != samples:
        raise ValueError("ref was built for another dense mesh or sample count")
    ps, _ = _samples(simple, samples, ref.rng)
    a, prim = _Surface.of(simple).closest(ref.points)
    b, _ = ref.surface.closest(ps)
    nd = face_normals(dense.vertices, dense.faces[ref.faces])
    ns = face_normals(simple.vertices, simple.faces[prim])
    angle = np.degrees(np.arccos(np.clip(np.einsum("ij,ij->i", nd, ns), -1, 1)))
    return {"chamfer": float((a.mean() + b.mean()) / 2 / ref.diag),
            "hausdorff": float(max(a.max(), b.max()) / ref.diag),
            "normal_error_deg": float(angle.mean())}


"""Normal-map baking: the dense surface's normals, per texel of the low mesh's atlas, encoded in
the tangent frame a viewer shades with (``geometry.tangents``); plus the ORM image.

``options`` below is any object with the fields of ``tasks.bake.BakeOptions`` it reads (size,
max_distance, dilate_px, ao_rays, ao_distance, ao_size, seed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..core.mesh import MeshData
from ..geometry.closest import ClosestSurface
from ..geometry.dilation import texels_to_image
from ..geometry.normals import seamless_normals
from ..geometry.normals import unit as _unit
from ..geometry.sampling import sample_surface
from ..geometry.tangents import (
    SurfaceFrames,
    decode_tangent_space,
    encode_tangent_space,
    normal_ao_bytes,
    surface_frames,
)
from ..geometry.texture_sampling import sample_bilinear_uv, texel_barycentric
from .ambient_occlusion import texel_ambient_occlusion

#: The bake's closest-point queries against the dense mesh.
DenseSurface = ClosestSurface


NEUTRAL = (128, 128, 255)


class BakeSettings(Protocol):
    """What baking reads of ``tasks.bake.BakeOptions`` (see there)."""

    size: int
    max_distance: float
    dilate_px: int
    ao_rays: int
    ao_distance: float
    ao_size: int
    seed: int


def low_normals(mesh: MeshData) -> np.ndarray:
    """The vertex normals the exporter will write: the mesh's own, else smooth normals of the
    mesh welded by position (``geometry.normals.seamless_normals``)."""
    if mesh.vertex_normals is not None:
        return _unit(np.asarray(mesh.vertex_normals, np.float64))
    return _unit(np.asarray(seamless_normals(mesh), np.float64))


def target_normals(frames: SurfaceFrames, dense: DenseSurface, max_dist: float
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Dense normal per point, or the low normal where the dense answer is not trusted.

    The points are texels in image order: ``closest_coherent`` answers them exactly from a
    grid, each query starting at the previous texel's dense face."""
    dist, n = dense.closest_coherent(frames.position)
    keep = (dist <= max_dist) & (np.einsum("ij,ij->i", n, frames.normal) > 0)
    return np.where(keep[:, None], n, frames.normal), keep


def to_rgb8(m: np.ndarray) -> np.ndarray:
    """Tangent-space unit vectors -> uint8 RGB (n * 0.5 + 0.5); the bake's own maps take
    these bytes from ``geometry.tangents.normal_ao_bytes`` but for exact halves, which
    alternate by row there."""
    return np.clip(np.round((m * 0.5 + 0.5) * 255.0), 0, 255).astype(np.uint8)


def normal_error(mesh: MeshData, normals: np.ndarray, tangents: np.ndarray,
                 normal_map: np.ndarray, dense: DenseSurface, count: int, seed: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Angles (deg) dense normal vs shaded normal, with the map and without, at uniform
    samples of the low surface."""
    faces, bary = sample_surface(mesh.vertices, mesh.faces, count,
                                 np.random.default_rng(seed + 1))
    frames = surface_frames(mesh, normals, tangents, faces, bary)
    uv = np.einsum("ik,ikc->ic", bary, np.asarray(mesh.uv, np.float64)[mesh.faces[faces]])
    m = _unit(sample_bilinear_uv(normal_map, uv) / 255.0 * 2.0 - 1.0)
    shaded = decode_tangent_space(frames, m)
    _, truth = dense.closest(frames.position)

    def angle(a: np.ndarray) -> np.ndarray:
        return np.degrees(np.arccos(np.clip(np.einsum("ij,ij->i", a, truth), -1.0, 1.0)))

    return angle(shaded), angle(frames.normal)


@dataclass(frozen=True)
class BakedMaps:
    normal: np.ndarray   # (S, S, 3) uint8
    ao: np.ndarray       # (S, S) float32 in [0, 1]
    texels: int          # covered texels
    dense_share: float   # share of covered texels that took the dense normal
    ao_mean: float       # mean AO over covered texels
    ao_points: int = 0   # points the AO traced rays from (lattice nodes + lone texels)
    ao8: np.ndarray | None = None  # (S, S) uint8: round(ao * 255)

    def ao_uint8(self) -> np.ndarray:
        """The AO map as bytes, round(ao * 255)."""
        return self.ao8 if self.ao8 is not None else np.round(self.ao * 255).astype(np.uint8)


def ao_stride(size: int, ao_size: int) -> int:
    """Texels between AO lattice nodes: the atlas size over the AO lattice's (at least 1)."""
    return max(1, int(size) // max(1, int(ao_size)))


def bake_maps(low: MeshData, dense: DenseSurface, options: BakeSettings, normals: np.ndarray,
              tangents: np.ndarray, threads: int = 0) -> BakedMaps:
    """Normal map and AO for ``low`` (with UVs) against the dense surface; ``threads`` bounds
    the ray tracer's threads (0 = all cores)."""
    from ..geometry.render import get_renderer

    size = options.size
    diag = float(np.linalg.norm(np.ptp(low.vertices, axis=0))) or 1.0
    face = get_renderer().rasterize_uv_faces(low, size).reshape(-1)
    index = np.flatnonzero(face >= 0)
    fids = face[index].astype(np.int64)
    bary = texel_barycentric(low, fids, index, size)
    frames = surface_frames(low, normals, tangents, fids, bary)
    target, took = target_normals(frames, dense, options.max_distance * diag)
    m = encode_tangent_space(frames, target)
    ao, traced = texel_ambient_occlusion(
        low, index, fids, frames.position, frames.normal, size,
        ao_stride(size, options.ao_size), options.ao_rays, options.ao_distance * diag,
        options.seed, threads)
    ao_mean = float(ao.mean()) if len(ao) else 1.0
    # one dilation for both maps: normal xyz + AO (float32, as the image holds them)
    values = np.empty((len(index), 4), np.float32)
    values[:, :3] = m
    values[:, 3] = ao
    img = texels_to_image(size, index, values, options.dilate_px, (0.0, 0.0, 1.0, ao_mean))
    normal, ao_img, ao8 = normal_ao_bytes(img)
    return BakedMaps(normal, ao_img, len(index), float(took.mean()) if len(took) else 0.0,
                     ao_mean, traced, ao8)


def orm_image(ao: np.ndarray, roughness: float, metallic: float) -> np.ndarray:
    """(S, S, 3) uint8: R = AO, G = roughness, B = metal (linear values, as glTF reads them);
    ``ao`` in 0-1, or already as bytes (uint8)."""
    orm = np.empty(ao.shape + (3,), np.uint8)
    orm[..., 0] = ao if ao.dtype == np.uint8 else np.round(np.clip(ao, 0, 1) * 255)
    orm[..., 1] = round(roughness * 255)
    orm[..., 2] = round(metallic * 255)
    return orm

"""The tangent frame a normal map is baked in and shaded with.

MikkTSpace-style per-vertex tangents: per face, T = dP/du from the UV gradients (V up, as
``MeshData.uv`` stores it), projected on each corner's vertex-normal plane (Gram-Schmidt) and
accumulated with corner-angle weights; handedness w = sign of the UV area (+1 for
counter-clockwise charts), bitangent B = cross(N, T) * w, pointing along +v, i.e. up in the
image. This is what Blender computes and exports. Per point a viewer interpolates N, T and B
and decodes n = normalize([T B N] m); ``encode_tangent_space`` inverts exactly that, so a
non-orthogonal interpolated frame still decodes to the target normal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.mesh import MeshData
from .normals import unit as _unit


def corner_angles(p: np.ndarray) -> np.ndarray:
    """(M, 3) interior angle at each corner of each triangle (M, 3, 3)."""
    out = np.empty(p.shape[:2])
    for k in range(3):
        a = _unit(p[:, (k + 1) % 3] - p[:, k])
        b = _unit(p[:, (k + 2) % 3] - p[:, k])
        out[:, k] = np.arccos(np.clip(np.einsum("ij,ij->i", a, b), -1.0, 1.0))
    return out


def vertex_tangents(mesh: MeshData, normals: np.ndarray) -> np.ndarray:
    """(N, 4) unit tangents + handedness w, MikkTSpace-style (see the module docstring).

    Vertices whose faces all have degenerate UVs get any unit vector orthogonal to the normal.
    """
    f = mesh.faces
    p = mesh.vertices[f]
    t = np.asarray(mesh.uv, np.float64)[f]
    e1, e2 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
    d1, d2 = t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]
    r = d1[:, 0] * d2[:, 1] - d2[:, 0] * d1[:, 1]
    ok = np.abs(r) > 1e-20
    tf = (e1 * d2[:, 1:2] - e2 * d1[:, 1:2]) / np.where(ok, r, 1.0)[:, None]
    tf[~ok] = 0.0
    weight = corner_angles(p) * ok[:, None]
    acc = np.zeros((mesh.n_vertices, 3))
    hand = np.zeros(mesh.n_vertices)
    for k in range(3):
        n = normals[f[:, k]]
        proj = _unit(tf - n * np.einsum("ij,ij->i", tf, n)[:, None]) * weight[:, k:k + 1]
        for c in range(3):
            acc[:, c] += np.bincount(f[:, k], proj[:, c], minlength=mesh.n_vertices)
        hand += np.bincount(f[:, k], np.sign(r) * weight[:, k], minlength=mesh.n_vertices)
    tang = acc - normals * np.einsum("ij,ij->i", acc, normals)[:, None]
    bad = np.linalg.norm(tang, axis=1) < 1e-12
    if bad.any():  # any perpendicular: cross with the axis least aligned with the normal
        axis = np.eye(3)[np.argmin(np.abs(normals[bad]), axis=1)]
        tang[bad] = np.cross(normals[bad], axis)
    return np.concatenate([_unit(tang), np.where(hand < 0, -1.0, 1.0)[:, None]], axis=1)


@dataclass(frozen=True)
class SurfaceFrames:
    """Points on a surface with the frame a viewer interpolates there."""

    position: np.ndarray   # (T, 3)
    normal: np.ndarray     # (T, 3) unit, interpolated vertex normal
    tangent: np.ndarray    # (T, 3) unit
    bitangent: np.ndarray  # (T, 3) unit, interpolated cross(N, T) * w
    degenerate: np.ndarray  # (T,) bool: the face has (nearly) no UV area


def surface_frames(mesh: MeshData, normals: np.ndarray, tangents: np.ndarray,
                   faces: np.ndarray, bary: np.ndarray) -> SurfaceFrames:
    """Interpolate position, normal, tangent and bitangent at barycentric points of faces
    (one numba pass; the bitangent is the interpolated cross(N, T) * w)."""
    from ._texel_numba import surface_frames as kernel

    f64 = lambda a: np.ascontiguousarray(a, np.float64)
    return SurfaceFrames(*kernel(f64(mesh.vertices), np.ascontiguousarray(mesh.faces, np.int64),
                                 f64(mesh.uv), f64(normals), f64(tangents),
                                 np.ascontiguousarray(faces, np.int64), f64(bary)))


def encode_tangent_space(frames: SurfaceFrames, target: np.ndarray) -> np.ndarray:
    """m with normalize([T B N] m) == target (the viewer's decode, inverted); unit, z >= 0;
    (0, 0, 1) where the frame is singular (|det| <= 1e-6) or the UVs are degenerate."""
    from ._texel_numba import encode_tangent_space as kernel

    f64 = lambda a: np.ascontiguousarray(a, np.float64)
    return kernel(f64(frames.tangent), f64(frames.bitangent), f64(frames.normal),
                  np.ascontiguousarray(frames.degenerate, np.bool_), f64(target))


def normal_ao_bytes(img: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An (S, S, 4) float image of tangent-space normals (xyz, any length) and AO -> (normal
    map (S, S, 3) uint8 of the unit normals, n * 0.5 + 0.5; AO clipped to 0-1 (S, S) float32;
    AO (S, S) uint8), in one numba pass over the image; exact halves of a normal code round
    up on even rows and down on odd ones (see the kernel)."""
    from ._texel_numba import encode_normal_ao as kernel

    return kernel(np.ascontiguousarray(img, np.float32))


def decode_tangent_space(frames: SurfaceFrames, m: np.ndarray) -> np.ndarray:
    """World normal a viewer shades with: normalize(T m.x + B m.y + N m.z)."""
    return _unit(frames.tangent * m[:, :1] + frames.bitangent * m[:, 1:2]
                 + frames.normal * m[:, 2:3])

"""The tangent frame at texels: interpolation as defined (barycentric blend, then unit), and
tangent-space encoding that the viewer's decode inverts."""

from __future__ import annotations

import numpy as np

from assetfactory.core.mesh import MeshData
from assetfactory.geometry.normals import unit as unit_rows
from assetfactory.geometry.tangents import (
    decode_tangent_space,
    encode_tangent_space,
    normal_ao_bytes,
    surface_frames,
    vertex_tangents,
)
from tests.builders import sphere


def unit(a):
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def sphere_with_uv() -> tuple[MeshData, np.ndarray, np.ndarray]:
    s = sphere(2)
    v = s.vertices
    uv = np.c_[0.5 + np.arctan2(v[:, 0], v[:, 2]) / (2 * np.pi), 0.5 + 0.5 * v[:, 1]]
    mesh = s.replace(uv=uv)
    normals = unit(v.copy())
    return mesh, normals, vertex_tangents(mesh, normals)


def test_surface_frames_interpolate_as_defined():
    mesh, normals, tangents = sphere_with_uv()
    rng = np.random.default_rng(2)
    fids = rng.integers(0, len(mesh.faces), 300)
    bary = rng.dirichlet((1, 1, 1), 300)
    fr = surface_frames(mesh, normals, tangents, fids, bary)
    tri = mesh.faces[fids]

    def interp(a):
        return np.einsum("ik,ikc->ic", bary, a[tri])

    bit = np.cross(normals, tangents[:, :3]) * tangents[:, 3:4]
    assert np.allclose(fr.position, interp(mesh.vertices))
    assert np.allclose(fr.normal, unit(interp(normals)))
    assert np.allclose(fr.tangent, unit(interp(tangents[:, :3])))
    assert np.allclose(fr.bitangent, unit(interp(bit)))
    t = mesh.uv[tri]
    d1, d2 = t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]
    assert np.array_equal(fr.degenerate, np.abs(d1[:, 0] * d2[:, 1] - d2[:, 0] * d1[:, 1])
                          < 1e-14)


def test_encode_then_decode_gives_the_target_back():
    mesh, normals, tangents = sphere_with_uv()
    rng = np.random.default_rng(4)
    fids = rng.integers(0, len(mesh.faces), 400)
    fr = surface_frames(mesh, normals, tangents, fids, rng.dirichlet((1, 1, 1), 400))
    # targets on the normal's side of the surface (a map cannot point into it)
    target = unit(fr.normal + 0.6 * rng.normal(size=(400, 3)))
    front = np.einsum("ij,ij->i", target, fr.normal) > 0.2
    m = encode_tangent_space(fr, target)
    assert np.allclose(np.linalg.norm(m, axis=1), 1.0) and (m[:, 2] >= 0).all()
    ok = front & ~fr.degenerate & (m[:, 2] > 1e-3)   # not clamped onto the surface
    assert ok.mean() > 0.5
    assert np.allclose(decode_tangent_space(fr, m)[ok], target[ok], atol=1e-6)
    assert np.allclose(m[fr.degenerate], (0, 0, 1))


def test_normal_ao_bytes_are_the_numpy_formulations():
    rng = np.random.default_rng(4)
    img = rng.normal(size=(64, 64, 4)).astype(np.float32)
    img[0, :4] = 0.0                                       # zero vectors
    img[1, :, 3] = np.linspace(-0.5, 1.5, 64)              # AO outside 0-1 is clipped
    img[2, :, :3] = np.float32([0.6, 0.8, 0.0])            # exact halves
    normal, ao, ao8 = normal_ao_bytes(img)
    m = unit_rows(img[..., :3].reshape(-1, 3)).reshape(64, 64, 3)
    code = (m * np.float32(0.5) + np.float32(0.5)) * np.float32(255.0)
    tie = code - np.floor(code) == 0.5
    even = (np.arange(64) % 2 == 0)[:, None, None]
    want = np.where(tie, np.floor(code) + even, np.round(code))   # halves: up on even rows
    assert tie[2, :, 1:].all() and tie.sum() > 128              # 229.5, 127.5; zero vectors
    assert np.array_equal(normal, np.clip(want, 0, 255).astype(np.uint8))
    assert np.array_equal(ao, np.clip(img[..., 3], 0.0, 1.0))
    assert np.array_equal(ao8, np.round(ao * 255).astype(np.uint8))


def test_a_flat_normal_map_averages_to_the_flat_normal_over_two_rows():
    img = np.zeros((8, 8, 4), np.float32)
    img[..., 2] = 1.0                                      # (0, 0, 1) everywhere
    normal, _, _ = normal_ao_bytes(img)
    assert (normal[0::2, :, :2] == 128).all() and (normal[1::2, :, :2] == 127).all()
    assert (normal[..., 2] == 255).all()
    decoded = normal[..., :2].astype(np.float64) / 255.0 * 2.0 - 1.0
    assert np.allclose(decoded.reshape(4, 2, 8, 2).mean(axis=1), 0.0)   # rows in pairs

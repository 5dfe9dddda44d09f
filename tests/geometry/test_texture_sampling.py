"""Texture sampling: glTF sampler wrap modes, as a viewer reads a vendor's texture; UV
barycentric coordinates (inside a face they reproduce the point; outside they are clamped to
the face and renormalised; degenerate faces do not divide by zero)."""

from __future__ import annotations

import numpy as np

from assetfactory.core.appearance import CLAMP, MIRROR, REPEAT
from assetfactory.core.mesh import MeshData
from assetfactory.geometry.texture_sampling import (
    sample_bilinear,
    sample_wrapped,
    texel_barycentric,
    texel_uv,
    uv_barycentric,
    wrap,
)


def test_wrap_modes():
    x = np.array([-0.25, 0.25, 1.25, 1.75])
    assert np.allclose(wrap(x, REPEAT), [0.75, 0.25, 0.25, 0.75])
    assert np.allclose(wrap(x, CLAMP), [0.0, 0.25, 1.0, 1.0])
    assert np.allclose(wrap(x, MIRROR), [0.25, 0.25, 0.75, 0.25])


def test_nearest_reads_the_texel_under_the_point():
    img = np.zeros((2, 2, 1), np.float32)
    img[0, 1] = 1.0                                  # top-right texel (t points down)
    assert sample_wrapped(img, np.array([[0.75, 0.25]]), REPEAT, REPEAT, nearest=True)[0, 0] == 1
    assert sample_wrapped(img, np.array([[0.25, 0.25]]), REPEAT, REPEAT, nearest=True)[0, 0] == 0


def test_repeat_blends_across_the_edge_and_clamp_does_not():
    img = np.zeros((1, 4, 1), np.float32)
    img[0, 0] = 1.0                                  # leftmost column
    at_right_edge = np.array([[1.0 - 1e-6, 0.5]])    # half way between the last and first texel
    assert abs(sample_wrapped(img, at_right_edge, REPEAT, CLAMP)[0, 0] - 0.5) < 1e-3
    assert sample_wrapped(img, at_right_edge, CLAMP, CLAMP)[0, 0] == 0.0


def test_clamped_bilinear_agrees_with_the_pixel_sampler():
    rng = np.random.default_rng(0)
    img = rng.random((8, 16, 3)).astype(np.float32)
    uv = rng.random((200, 2)) * 1.4 - 0.2
    pix = np.stack([np.clip(uv[:, 0], 0, 1) * 16 - 0.5, np.clip(uv[:, 1], 0, 1) * 8 - 0.5], 1)
    assert np.allclose(sample_wrapped(img, uv, CLAMP, CLAMP), sample_bilinear(img, pix),
                       atol=1e-5)


def test_uv_barycentric_inside_outside_and_degenerate():
    rng = np.random.default_rng(1)
    uv = rng.random((30, 2))
    uv[27:] = uv[27]                                  # one zero-area face
    faces = np.arange(30).reshape(10, 3)
    mesh = MeshData(np.c_[uv, np.zeros(30)], faces, uv=uv)
    fids = rng.integers(0, 9, 500)
    w = rng.dirichlet((1, 1, 1), 500)
    pts = np.einsum("ik,ikc->ic", w, uv[faces[fids]])
    assert np.allclose(uv_barycentric(mesh, fids, pts), w, atol=1e-9)
    far = uv_barycentric(mesh, fids, pts + 5.0)       # outside: clamped, sums to 1, >= 0
    assert (far >= 0).all() and np.allclose(far.sum(1), 1.0)
    deg = uv_barycentric(mesh, np.full(3, 9), rng.random((3, 2)))
    assert np.isfinite(deg).all()


def test_texel_uv_centres():
    assert np.allclose(texel_uv(np.array([0, 5]), 4), [[0.125, 0.875], [0.375, 0.625]])


def test_texel_barycentric_is_uv_barycentric_at_texel_centres():
    rng = np.random.default_rng(3)
    mesh = MeshData(rng.random((30, 3)), rng.integers(0, 30, (40, 3)), uv=rng.random((30, 2)))
    index = rng.integers(0, 256 * 256, 5000)
    fids = rng.integers(0, 40, 5000)
    assert np.array_equal(texel_barycentric(mesh, fids, index, 256),
                          uv_barycentric(mesh, fids, texel_uv(index, 256)))

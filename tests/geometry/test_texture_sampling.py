"""UV barycentric coordinates: inside a face they reproduce the point; outside they are
clamped to the face and renormalised; degenerate faces do not divide by zero."""

from __future__ import annotations

import numpy as np

from assetfactory.core.mesh import MeshData
from assetfactory.geometry.texture_sampling import texel_uv, uv_barycentric


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

"""Texture sampling: glTF sampler wrap modes, as a viewer reads a vendor's texture."""

from __future__ import annotations

import numpy as np

from assetfactory.core.appearance import CLAMP, MIRROR, REPEAT
from assetfactory.geometry.texture_sampling import sample_bilinear, sample_wrapped, wrap


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

"""Dilation: the front-only numba pass against the whole-image definition (each round, every
invalid texel with a valid 8-neighbour takes the mean of those neighbours)."""

from __future__ import annotations

import numpy as np

from assetfactory.geometry.dilation import dilate, texels_to_image


def reference(img: np.ndarray, ok: np.ndarray, rounds: int) -> tuple[np.ndarray, np.ndarray]:
    img, ok = img.astype(np.float64).copy(), ok.copy()
    h, w = ok.shape
    for _ in range(rounds):
        pad_ok = np.pad(ok, 1)
        pad = np.pad(img * ok[..., None], ((1, 1), (1, 1), (0, 0)))
        count = sum(pad_ok[1 + dy:h + 1 + dy, 1 + dx:w + 1 + dx]
                    for dy in (-1, 0, 1) for dx in (-1, 0, 1)).astype(np.float64)
        total = sum(pad[1 + dy:h + 1 + dy, 1 + dx:w + 1 + dx]
                    for dy in (-1, 0, 1) for dx in (-1, 0, 1))
        grow = ~ok & (count > 0)
        img[grow] = total[grow] / count[grow][:, None]
        ok = ok | grow
    return img, ok


def test_dilate_matches_the_whole_image_definition():
    rng = np.random.default_rng(0)
    ok = rng.random((40, 33)) > 0.93
    img = rng.random((40, 33, 4)).astype(np.float32)
    for rounds in (0, 1, 3, 50):
        out, grown = dilate(img, ok, rounds)
        ref, ref_ok = reference(img, ok, rounds)
        assert np.array_equal(grown, ref_ok)
        assert np.allclose(out[grown], ref[grown], atol=1e-5)
    assert grown.all()                              # 50 rounds fill the image
    assert np.array_equal(dilate(img, ok, 2)[0][~ok & ~reference(img, ok, 2)[1]],
                          img[~ok & ~reference(img, ok, 2)[1]])   # untouched beyond


def test_two_dimensional_image_and_background():
    out = texels_to_image(8, np.array([27]), np.array([[0.5]]), 1, 0.25)
    assert out.shape == (8, 8, 1)
    assert (out[2:5, 2:5] == 0.5).all() and out[0, 0] == 0.25
    flat, grown = dilate(np.zeros((5, 5), np.float32) + np.eye(5, dtype=np.float32),
                         np.eye(5, dtype=bool), 1)
    i, j = np.indices((5, 5))
    assert flat.shape == (5, 5) and np.array_equal(grown, abs(i - j) <= 2)
    assert flat[0, 1] == 1.0 and flat[0, 2] == 1.0

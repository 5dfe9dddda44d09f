"""algorithms.masking: object masks from product photos."""

from __future__ import annotations

import numpy as np

from assetfactory.algorithms.masking import object_mask


def _photo(seed: int) -> np.ndarray:
    """A textured object on a white studio background with a soft grey shadow beside it."""
    rng = np.random.default_rng(seed)
    h = w = 256
    y, x = np.mgrid[0:h, 0:w]
    img = np.full((h, w, 3), 250.0)
    shadow = np.exp(-(((x - 150) / 60.0) ** 2 + ((y - 200) / 18.0) ** 2))
    img -= 60.0 * shadow[..., None]
    body = ((x - 120) / 70.0) ** 2 + ((y - 120) / 90.0) ** 2 < 1
    colour = np.stack([120 + 60 * np.sin(x / 9.0), 80 + 50 * np.cos(y / 7.0),
                       140 + 40 * np.sin((x + y) / 13.0)], axis=-1)
    img[body] = colour[body] + rng.normal(0, 12, (int(body.sum()), 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def test_a_photo_gets_the_same_mask_whatever_was_masked_before():
    """GrabCut's k-means draws from OpenCV's per-thread generator: without a reset, a Ray
    worker's earlier SKUs changed the next SKU's mask (and its asset)."""
    photo = _photo(0)
    first = object_mask(photo, None)[0]
    for seed in (1, 2, 3):
        object_mask(_photo(seed), None)
    again = object_mask(photo, None)[0]
    assert first.any() and np.array_equal(first, again)

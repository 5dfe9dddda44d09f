"""algorithms.masking: object masks from product photos."""

from __future__ import annotations

import numpy as np

from assetfactory.algorithms.masking import _no_new_holes, object_mask


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


def _white_detail_photo(noise: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(photo, icing, opening): a grey product on a white sweep, with a near-white band inside
    it (icing, a lit white panel: 3 levels off the background) and a real opening through it
    (the background itself), both enclosed by the product."""
    h = w = 200
    y, x = np.mgrid[0:h, 0:w]
    img = np.full((h, w, 3), 255.0)
    body = (abs(x - 100) < 70) & (abs(y - 100) < 60)
    img[body] = (150 + 0.3 * (x - 100))[body][:, None]
    icing = (abs(x - 100) < 55) & (y > 55) & (y < 75)
    img[icing] = 252.0
    opening = (abs(x - 100) < 30) & (y > 105) & (y < 140)
    img[opening] = 255.0
    img += np.random.default_rng(7).normal(0, noise, img.shape)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8), icing, opening


def test_a_white_detail_inside_the_product_is_not_an_opening():
    """An enclosed region a few levels off the background (white icing on a white sweep) stays
    part of the object, also after GrabCut; real background seen through the product stays an
    opening. A false opening carves a tunnel through the visual hull in every photo that has
    one, so more photos made worse shapes."""
    for noise in (0.0, 1.5):
        photo, icing, opening = _white_detail_photo(noise)
        mask = object_mask(photo, None)[0]
        assert mask[icing].mean() > 0.99, noise
        assert mask[opening].mean() < 0.02, noise


def test_grabcut_trims_the_outline_and_openings_but_punches_no_hole():
    """What GrabCut removes where it touches the background (a halo at the outline, the rim of
    an accepted opening) stays removed; a patch it removed inside the object comes back."""
    fg = np.zeros((40, 40), bool)
    fg[5:35, 5:35] = True
    fg[25:30, 25:30] = False                 # an accepted opening
    refined = fg.copy()
    refined[5:7, 10:20] = False              # a halo along the outline
    refined[24, 24:31] = False               # the opening's rim
    refined[12:16, 12:16] = False            # a patch inside, away from both
    out = _no_new_holes(fg, refined)
    assert not out[5:7, 10:20].any() and not out[24, 24:31].any()
    assert out[12:16, 12:16].all()
    assert not out[25:30, 25:30].any()

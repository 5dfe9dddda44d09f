"""Dilation: grow texel values past the charts of a UV atlas.

Why: bilinear filtering and mipmaps read texels just outside a chart; without a margin they
read the empty background and seams show a dark line.
"""

from __future__ import annotations

import numpy as np


def dilate(image: np.ndarray, valid: np.ndarray, iterations: int) -> tuple[np.ndarray, np.ndarray]:
    """Grow the values ``iterations`` texels past the valid region (mean of valid neighbours);
    returns the image and the grown valid mask."""
    import cv2

    img = np.array(image, np.float32, copy=True)
    ok = np.array(valid, bool, copy=True)
    for _ in range(iterations):
        m = ok.astype(np.float32)
        count = cv2.boxFilter(m, -1, (3, 3), normalize=False, borderType=cv2.BORDER_CONSTANT)
        grow = (~ok) & (count > 0)
        if not grow.any():
            break
        summed = cv2.boxFilter(img * m[..., None], -1, (3, 3), normalize=False,
                               borderType=cv2.BORDER_CONSTANT)
        img[grow] = summed[grow] / count[grow][:, None]
        ok |= grow
    return img, ok


def texels_to_image(size: int, index: np.ndarray, values: np.ndarray, margin: int,
                    background) -> np.ndarray:
    """Per-texel values (T, C) at flat ``index`` of a size x size image -> an (S, S, C) float32
    image dilated ``margin`` texels past the charts; texels beyond get ``background``."""
    c = values.shape[1]
    img = np.zeros((size * size, c), np.float32)
    ok = np.zeros(size * size, bool)
    img[index] = values
    ok[index] = True
    img, ok = dilate(img.reshape(size, size, c), ok.reshape(size, size), margin)
    if (~ok).any():
        img[~ok] = background
    return img

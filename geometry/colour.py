"""Colour space: sRGB transfer functions (IEC 61966-2-1) and 8-bit conversions."""

from __future__ import annotations

import numpy as np


def srgb_to_linear(x: np.ndarray, dtype=np.float32) -> np.ndarray:
    """sRGB-encoded values in 0..1 -> linear light, computed in ``dtype`` (the power with the C
    library's ``pow`` in float64: the same bits on every machine, see ``_colour_numba``)."""
    from ._colour_numba import decode_into

    x = np.ascontiguousarray(x, dtype)
    t = np.dtype(dtype).type
    out = np.empty(x.shape, dtype)
    decode_into(x.reshape(-1), t(0.04045), t(0.055), t(1.055), t(12.92), out.reshape(-1))
    return out


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    """Linear light in 0..1 -> sRGB-encoded values (float32; the power with the C library's
    ``pow`` in float64: the same bits on every machine, see ``_colour_numba``)."""
    from ._colour_numba import encode_into

    x = np.ascontiguousarray(np.clip(np.asarray(x, np.float32), 0.0, 1.0))
    out = np.empty(x.shape, np.float32)
    encode_into(x.reshape(-1), np.float32(0.0031308), np.float32(12.92), out.reshape(-1))
    return out


#: Linear value of every 8-bit sRGB code.
SRGB_LUT = srgb_to_linear(np.arange(256, dtype=np.float32) / 255.0)


def image_to_linear(rgb: np.ndarray) -> np.ndarray:
    """A uint8 photo (gray, RGB or RGBA) -> (H, W, 3) float32 linear light."""
    a = np.asarray(rgb)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    a = a[..., :3]
    if a.dtype == np.uint8:
        return SRGB_LUT[a]
    return srgb_to_linear(a.astype(np.float32) / (255.0 if a.max() > 1.0 else 1.0))


def to_uint8(values: np.ndarray) -> np.ndarray:
    """Values in 0..1 -> uint8, rounded (float32 arrays in one numba pass, the same bytes)."""
    a = np.asarray(values)
    if a.dtype == np.float32:
        return _bytes(a, False)
    return np.clip(a * 255.0 + 0.5, 0, 255).astype(np.uint8)


def srgb_bytes(x: np.ndarray) -> np.ndarray:
    """``to_uint8(linear_to_srgb(x))`` for float32 linear light, in one numba pass with no
    float copy of the image (the same bytes)."""
    return _bytes(np.asarray(x, np.float32), True)


def _bytes(x: np.ndarray, srgb: bool) -> np.ndarray:
    from ._colour_numba import bytes_into

    x = np.ascontiguousarray(x, np.float32)
    out = np.empty(x.shape, np.uint8)
    bytes_into(x.reshape(-1), srgb, np.float32(0.0031308), np.float32(12.92), out.reshape(-1))
    return out

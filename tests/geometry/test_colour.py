"""geometry.colour: the sRGB transfer functions, the same bits on every machine."""

from __future__ import annotations

import math

import numpy as np

from assetfactory.geometry.colour import (
    SRGB_LUT,
    image_to_linear,
    linear_to_srgb,
    srgb_bytes,
    srgb_to_linear,
    to_uint8,
)


def _reference_to_srgb(x: np.float32) -> np.float32:
    """The IEC 61966-2-1 encoding with the C library's pow (Python's math.pow), value by value:
    the linear branch in float32, the power branch in float64, rounded once to float32."""
    v = np.float32(min(max(x, np.float32(0.0)), np.float32(1.0)))
    if v <= np.float32(0.0031308):
        return v * np.float32(12.92)
    return np.float32(1.055 * math.pow(float(v), 1 / 2.4) - 0.055)


def test_the_encoding_is_the_c_librarys_pow_for_every_value():
    # every float32 step of a dense sweep: numpy's vectorised power differs from the C
    # library's by an ulp on some CPUs, which moves 8-bit texels; the transfer must not
    x = np.linspace(0.0, 1.0, 200_001, dtype=np.float32)
    want = np.array([_reference_to_srgb(v) for v in x], np.float32)
    assert np.array_equal(linear_to_srgb(x), want)


def test_decoding_matches_the_c_librarys_pow_in_float32_and_float64():
    x = np.linspace(0.0, 1.0, 20_001)
    for dtype in (np.float32, np.float64):
        xs = x.astype(dtype)
        k = np.dtype(dtype).type
        want = np.array([a / k(12.92) if a <= k(0.04045)
                         else dtype(math.pow(float((a + k(0.055)) / k(1.055)), 2.4))
                         for a in xs], dtype)
        assert np.array_equal(srgb_to_linear(xs, dtype), want)


def test_round_trip_and_8_bit_codes():
    codes = np.arange(256, dtype=np.uint8)
    assert np.array_equal(to_uint8(linear_to_srgb(SRGB_LUT)), codes)
    rgb = np.stack([codes] * 3, axis=1)[None]          # (1, 256, 3)
    assert np.array_equal(image_to_linear(rgb)[0, :, 0], SRGB_LUT)
    assert SRGB_LUT[0] == 0.0 and SRGB_LUT[255] == np.float32(1.0)
    assert np.all(np.diff(SRGB_LUT) > 0)


def test_bytes_in_one_pass_are_the_numpy_formulation():
    rng = np.random.default_rng(3)
    x = np.concatenate([np.linspace(-0.2, 1.2, 300_000, dtype=np.float32),
                        np.full(1000, 0.25, np.float32),              # a run (a background)
                        rng.random(5000).astype(np.float32)]).reshape(-1, 3)
    numpy_bytes = lambda v: np.clip(v * 255.0 + 0.5, 0, 255).astype(np.uint8)
    assert np.array_equal(to_uint8(x), numpy_bytes(x))
    assert np.array_equal(srgb_bytes(x), numpy_bytes(linear_to_srgb(x)))
    assert np.array_equal(to_uint8(x.astype(np.float64)), numpy_bytes(x.astype(np.float64)))

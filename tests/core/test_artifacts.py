"""PNG artifacts between stages: lossless at any zlib level; the fast level is the default."""

from __future__ import annotations

import numpy as np

from assetfactory.core.artifacts import ARTIFACT_PNG_LEVEL, decode_png, encode_png


def _image() -> np.ndarray:
    rng = np.random.default_rng(0)
    smooth = np.linspace(0, 255, 256, dtype=np.float32)[None, :, None] * np.ones((128, 1, 3))
    return np.clip(smooth + rng.normal(0, 8, smooth.shape), 0, 255).astype(np.uint8)


def test_encode_png_round_trips_at_the_artifact_level_and_at_level_6():
    img = _image()
    fast, small = encode_png(img), encode_png(img, level=6)
    assert np.array_equal(decode_png(fast), img)
    assert np.array_equal(decode_png(small), img)
    assert ARTIFACT_PNG_LEVEL < 6
    assert fast != small            # the level reaches the encoder
    assert len(small) <= len(fast)


def test_encode_png_float_images_are_quantised_to_uint8():
    img = np.array([[[0.0, 0.5, 1.0]]], np.float32)
    assert decode_png(encode_png(img)).tolist() == [[[0, 128, 255]]]

"""PNG encoding: lossless with the run-length strategy (the default) and at any zlib level."""

from __future__ import annotations

import numpy as np

from assetfactory.core.artifacts import ARTIFACT_PNG_LEVEL, decode_png, encode_png


def _image() -> np.ndarray:
    rng = np.random.default_rng(0)
    smooth = np.linspace(0, 255, 256, dtype=np.float32)[None, :, None] * np.ones((128, 1, 3))
    return np.clip(smooth + rng.normal(0, 8, smooth.shape), 0, 255).astype(np.uint8)


def test_encode_png_round_trips_with_run_length_deflate_and_at_zlib_levels():
    img = _image()
    rle, plain6, plain1 = encode_png(img), encode_png(img, level=6), encode_png(img, level=1)
    assert ARTIFACT_PNG_LEVEL is None          # the default is the run-length strategy
    for data in (rle, plain6, plain1):
        assert np.array_equal(decode_png(data), img)
    assert rle != plain6 and plain6 != plain1   # the strategy and the level reach the encoder
    assert len(plain6) <= len(plain1)


def test_encode_png_run_length_is_compact_on_flat_texture_regions():
    """A texture atlas is mostly flat charts and flat background: run-length deflate must
    compress those like full deflate does (within 10 %), not store them raw."""
    img = np.zeros((256, 256, 3), np.uint8)
    img[32:200, 40:220] = (200, 120, 40)
    img[100:140, 60:90] = _image()[:40, :30]
    rle, plain6 = encode_png(img), encode_png(img, level=6)
    assert len(rle) <= 1.1 * len(plain6)
    assert len(rle) < img.nbytes / 10


def test_encode_png_float_images_are_quantised_to_uint8():
    img = np.array([[[0.0, 0.5, 1.0]]], np.float32)
    assert decode_png(encode_png(img)).tolist() == [[[0, 128, 255]]]

"""delight: the light fixed to the camera from brightness ratios of points seen twice."""

from __future__ import annotations

import numpy as np
import pytest

from assetfactory.algorithms.delight import Light, fit_light


def _pairs(light: Light, n: int = 4000, noise: float = 0.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    na = rng.normal(size=(n, 3))
    na[:, 2] = np.abs(na[:, 2])                 # facing camera a
    na /= np.linalg.norm(na, axis=1, keepdims=True)
    turn = np.radians(rng.choice([45.0, 90.0, -45.0, -90.0], n))
    c, s = np.cos(turn), np.sin(turn)           # the same normal seen from a camera turned
    nb = np.stack([c * na[:, 0] + s * na[:, 2], na[:, 1], -s * na[:, 0] + c * na[:, 2]], 1)
    keep = nb[:, 2] > 0.05
    na, nb = na[keep], nb[keep]
    ratio = np.log(light.shade(na)) - np.log(light.shade(nb))
    return na, nb, ratio + rng.normal(0, noise, len(ratio))


@pytest.mark.parametrize("direction", [(-0.25, 0.35, 1.0), (0.6, 0.2, 0.8), (0.0, 0.0, 1.0)])
def test_the_light_is_recovered_from_ratios(direction):
    d = np.asarray(direction) / np.linalg.norm(direction)
    truth = Light(d, 0.3)
    fit = fit_light(*_pairs(truth, noise=0.03))
    assert fit is not None
    assert fit.ambient == pytest.approx(0.3, abs=0.05)
    assert float(fit.direction @ d) > np.cos(np.radians(6))
    assert fit.explained > 0.8
    assert fit.shade(fit.direction[None])[0] == pytest.approx(1.0)   # full light: the albedo


def test_flat_light_or_noise_gives_no_light():
    rng = np.random.default_rng(1)
    n = rng.normal(size=(3000, 3))
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    assert fit_light(n, n[::-1], rng.normal(0, 0.2, 3000)) is None   # nothing explains noise
    assert fit_light(n[:50], n[:50], np.zeros(50)) is None            # too few, no contrast

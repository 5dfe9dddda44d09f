"""materials: the PBR table, catalog hints and the colour rule that picks one per part."""

from __future__ import annotations

import re

import numpy as np
import pytest

from assetfactory.algorithms import materials as mt

REQUIRED = {"metal", "plastic", "fabric", "wood", "glass", "ceramic", "rubber", "paper"}


def flat(rgb, n=200, noise=0.0, seed=0):
    """n sRGB colours around ``rgb`` (0-255) with uniform brightness noise."""
    rng = np.random.default_rng(seed)
    c = np.tile(np.asarray(rgb, float) / 255.0, (n, 1))
    return np.clip(c * (1 + noise * rng.uniform(-1, 1, (n, 1))), 0, 1)


def test_table_has_the_required_materials_with_sane_factors():
    assert REQUIRED <= set(mt.MATERIALS)
    for m in mt.MATERIALS.values():
        assert 0.0 <= m.metallic <= 1.0 and 0.0 <= m.roughness <= 1.0
    assert mt.MATERIALS["metal"].metallic == 1.0
    assert all(m.metallic == 0.0 for n, m in mt.MATERIALS.items() if n != "metal")
    assert mt.MATERIALS["glass"].roughness < mt.MATERIALS["plastic"].roughness \
        < mt.MATERIALS["fabric"].roughness


def test_parse_hint_maps_catalog_words():
    assert mt.parse_hint("Brushed Stainless Steel") == ["metal"]
    assert mt.parse_hint("oak / cotton, steel legs; oak") == ["wood", "fabric", "metal"]
    assert mt.parse_hint("cardboard box") == ["paper"]
    assert mt.parse_hint("") == [] and mt.parse_hint(None) == []
    assert mt.parse_hint("unobtainium") == []


def test_colour_stats_of_plain_colours():
    red = mt.colour_stats(flat([200, 20, 20]))
    assert red.saturation == pytest.approx(0.9) and red.value == pytest.approx(200 / 255)
    assert red.hue == pytest.approx(0.0, abs=1e-6) and red.contrast == pytest.approx(0.0)
    grey = mt.colour_stats(flat([128, 128, 128]))
    assert grey.hue is None and grey.saturation == 0.0
    assert mt.colour_stats(np.zeros((0, 3))).texels == 0


@pytest.mark.parametrize("rgb, noise, want", [
    ([200, 20, 20], 0.02, "plastic"),      # saturated, uniform
    ([236, 236, 232], 0.02, "ceramic"),    # white, glossy-clean
    ([25, 25, 28], 0.05, "rubber"),        # near black
    ([140, 90, 45], 0.4, "wood"),          # brown with grain
])
def test_colour_alone_picks_a_plausible_material(rgb, noise, want):
    mat, source = mt.choose(mt.colour_stats(flat(rgb, noise=noise)), [])
    assert (mat.name, source) == (want, "colour")


def test_hints_restrict_and_split_by_colour():
    grey = mt.colour_stats(flat([160, 160, 165], noise=0.6))
    brown = mt.colour_stats(flat([140, 90, 45], noise=0.4))
    assert mt.choose(brown, ["metal"])[0].name == "metal"          # one hint: always it
    assert mt.choose(grey, ["wood", "metal"]) == (mt.MATERIALS["metal"], "hint+colour")
    assert mt.choose(brown, ["wood", "metal"])[0].name == "wood"
    # glass and metal are never guessed from colour, only taken from a hint
    assert all(mt.choose(mt.colour_stats(flat(c, noise=n)), [])[0].name not in ("glass", "metal")
               for c in ([200, 200, 200], [240, 240, 250], [30, 60, 60], [160, 160, 165])
               for n in (0.0, 0.6))
    assert mt.choose(grey, ["glass"])[0].name == "glass"


def test_tiny_parts_take_the_hint_or_default():
    few = mt.colour_stats(flat([140, 90, 45], n=3))
    assert mt.choose(few, []) == (mt.MATERIALS["plastic"], "default")
    assert mt.choose(few, ["fabric", "wood"])[0].name == "fabric"


def test_assign_writes_one_row_per_part_with_valid_names():
    table = mt.assign({0: flat([236, 236, 232]), 3: flat([200, 20, 20])}, "", "mug-42")
    assert set(table["parts"]) == {"0", "3"}
    row = table["parts"]["3"]
    assert row["material"] == "plastic" and row["metallic"] == 0.0
    assert row["roughness"] == mt.MATERIALS["plastic"].roughness
    for r in table["parts"].values():
        assert re.fullmatch(r"[a-z][a-z0-9_-]*", r["name"]) and r["name"].startswith("mug-42-")
        assert set(r["stats"]) == {"saturation", "value", "contrast", "hue", "texels"}


def test_asset_name():
    assert mt.asset_name("SKU-001") == "sku-001"
    assert mt.asset_name("42 Chair") == "chair"
    assert mt.asset_name("!!!") == "asset"


def test_part_colour_stats_are_colour_stats_of_each_parts_srgb_texels():
    from assetfactory.geometry.colour import linear_to_srgb

    rng = np.random.default_rng(7)
    face_part = np.array([3, 3, 8, 8, 5, 9], np.int64)   # part 9's face has no texel
    texel_face = rng.integers(0, 5, 5000)
    colour = rng.uniform(-0.1, 1.1, (5000, 3)).astype(np.float32)   # clipped like the map
    colour[texel_face == 4] = (0.3, 0.3, 0.3)                        # part 5: grey
    colour[:50] = (0.2, 0.05, 0.01)
    observed = rng.random(5000) < 0.7
    observed[texel_face >= 2] &= texel_face[texel_face >= 2] != 3    # part 8: face 3 unseen
    observed[texel_face == 4] = False                                # part 5: nothing seen
    got = mt.part_colour_stats(colour, face_part, texel_face, observed)
    assert sorted(got) == [3, 5, 8]
    parts = face_part[texel_face]
    srgb = linear_to_srgb(colour)
    for part, stats in got.items():
        sel = parts == part
        want = mt.colour_stats(srgb[sel & observed if (sel & observed).any() else sel])
        assert stats.texels == want.texels
        for field in ("saturation", "value", "contrast"):
            assert getattr(stats, field) == pytest.approx(getattr(want, field), abs=1e-12)
        assert (stats.hue is None) == (want.hue is None)
        if want.hue is not None:
            assert stats.hue == pytest.approx(want.hue, abs=1e-9)
    assert got[5].texels == (texel_face == 4).sum() and got[5].hue is None
    by_part = {p: srgb[(parts == p) & observed] if ((parts == p) & observed).any()
               else srgb[parts == p] for p in (3, 5, 8)}
    assert mt.assign_stats(got, "", "x") == mt.assign(by_part, "", "x")

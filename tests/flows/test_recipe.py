"""Recipes: one profile override reaches every stage it concerns; bad overrides name the stage."""

from __future__ import annotations

import pytest

from assetfactory.core.errors import OptionsError
from assetfactory.flows.recipe import PROFILES, build_recipe


def _opts(recipe, name):
    return next(c.options for c in recipe.calls if c.name == name)


def test_texture_px_reaches_uv_bake_texture_and_export():
    recipe = build_recipe("ar", overrides={"profile": {"texture_px": 128}})
    assert _opts(recipe, "uv").resolution == 128
    assert _opts(recipe, "bake").size == 128
    assert _opts(recipe, "texture").size == 128
    assert _opts(recipe, "export").texture_size == 128
    default = build_recipe("ar")
    assert (_opts(default, "bake").size, _opts(default, "texture").size) == (2048, 2048)
    assert recipe.hash != default.hash


def test_target_tris_reaches_simplify_and_scales_the_lods():
    game = build_recipe("game")
    assert _opts(game, "export").lods == PROFILES["game"].lods == (8000, 2500)
    assert _opts(game, "simplify").collision_hulls == 16
    small = build_recipe("game", overrides={"profile": {"target_tris": 4600}})
    assert _opts(small, "simplify").target_tris == 4600
    assert _opts(small, "export").lods == (1600, 500)
    assert _opts(build_recipe("ar"), "export").lods == ()


def test_stage_overrides_still_win():
    recipe = build_recipe("web", overrides={"bake": {"ao_rays": 4}, "profile": {"texture_px": 256}})
    assert _opts(recipe, "bake").ao_rays == 4 and _opts(recipe, "bake").size == 256


@pytest.mark.parametrize("overrides,stage,text", [
    ({"profile": {"texture_px": 100}}, "profile", "power of two"),
    ({"profile": {"colour": "red"}}, "profile", "colour"),
    ({"bake": {"size": 100}}, "bake", "power of two"),
    ({"simplify": {"target_trs": 5}}, "simplify", "target_trs"),
    ({"simplfy": {"target_tris": 5}}, "recipe", "simplfy"),
])
def test_bad_overrides_name_what_they_belong_to(overrides, stage, text):
    with pytest.raises(OptionsError) as err:
        build_recipe("ar", overrides=overrides)
    assert err.value.stage == stage and text in str(err.value)
    assert str(err.value).startswith(f"{stage} options: ")


def test_unknown_profile():
    with pytest.raises(OptionsError, match="unknown profile 'nope'"):
        build_recipe("nope")

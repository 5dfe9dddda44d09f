"""Preflight: the tools a recipe needs are checked once, before any work, in one message."""

from __future__ import annotations

import shutil

import pytest

from assetfactory.core.errors import PreflightError
from assetfactory.flows.preflight import check_tools, needs, preflight
from assetfactory.flows.recipe import build_recipe


def test_what_each_profile_needs():
    assert set(needs(build_recipe("ar"))) == {"gltf-validator", "usd", "egl"}
    assert set(needs(build_recipe("web"))) == {"gltf-validator", "egl"}
    assert "usd" not in needs(build_recipe("web"))
    off = build_recipe("web", overrides={"export": {"validate": False}})
    assert "gltf-validator" not in needs(off)


def test_missing_node_is_reported_once_with_a_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("ASSETFACTORY_NODE", "")
    monkeypatch.setenv("PATH", str(tmp_path))  # no node on PATH
    recipe = build_recipe("web", overrides={"metrics": {"iou_views": "none"},
                                            "export": {"write_poster": False}})
    recipe = type(recipe)(recipe.profile, recipe.backend,
                          tuple(c for c in recipe.calls if c.name not in ("bake", "texture")))
    with pytest.raises(PreflightError) as err:
        preflight(recipe)
    text = str(err.value)
    assert "glTF-Validator, needed by export" in text and "Node.js" in text
    assert len(err.value.problems) == 1


def test_a_complete_machine_passes():
    if shutil.which("node") is None:
        pytest.skip("Node.js is not installed here")
    # make setup-test installs every tool the ar recipe needs: nothing may be missing here
    recipe = build_recipe("ar")
    assert check_tools(recipe) == []
    checked = preflight(recipe)
    assert [c.name for c in checked.calls] == [c.name for c in recipe.calls]


def _only(recipe, *names):
    """The recipe cut down to some stages (so no external tool is needed)."""
    return type(recipe)(recipe.profile, recipe.backend,
                        tuple(c for c in recipe.calls if c.name in names))


def test_models_are_checked_in_the_same_preflight(monkeypatch, tmp_path):
    from assetfactory.core.errors import MissingWeightsError
    from assetfactory.models.learned import MissingDependencyError

    plain = _only(build_recipe("web"), "ingest", "generate")
    assert needs(plain) == {}
    checked = preflight(plain)  # weight-free: the same recipe, the same identity
    assert checked.weights == () and checked.hash == plain.hash
    absent = tmp_path / "no-such-model"
    masked = _only(build_recipe("web", overrides={"ingest": {"mask_model": str(absent)}}),
                   "ingest", "generate")
    # a model problem alone: the model's own error, naming the folder (or the extra)
    with pytest.raises((MissingWeightsError, MissingDependencyError)) as err:
        preflight(masked)
    if isinstance(err.value, MissingWeightsError):
        assert str(absent) in str(err.value)
    # with a missing tool beside it: one message listing both
    monkeypatch.setenv("ASSETFACTORY_NODE", "")
    monkeypatch.setenv("PATH", str(tmp_path))
    both = _only(build_recipe("web", overrides={"ingest": {"mask_model": str(absent)},
                                                "export": {"write_poster": False}}),
                 "ingest", "generate", "export")
    with pytest.raises(PreflightError) as err:
        preflight(both)
    assert len(err.value.problems) == 2
    assert "Node.js" in str(err.value) and "a learned model" in str(err.value)
    assert isinstance(err.value.__cause__, (MissingWeightsError, MissingDependencyError))

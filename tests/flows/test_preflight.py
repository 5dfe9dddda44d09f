"""Preflight: the tools a recipe needs are checked once, before any work, in one message."""

from __future__ import annotations

import shutil

import pytest

from assetfactory.core.errors import PreflightError
from assetfactory.flows.preflight import needs, preflight
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
    try:
        preflight(build_recipe("ar"))
    except PreflightError as exc:  # pragma: no cover - depends on the machine
        pytest.skip(f"this machine lacks a tool: {exc}")

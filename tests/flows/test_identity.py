"""Asset identity: it changes with everything that changes the output, and with nothing else."""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass
from typing import ClassVar

import pytest

from assetfactory.core.types import ImageSpec, SkuSpec
from assetfactory.flows import recipe as recipe_mod
from assetfactory.flows.identity import (
    asset_identity,
    identity_columns,
    input_hashes,
    recipe_identity,
)
from assetfactory.flows.recipe import STAGE_ORDER, build_recipe, resolve_stage
from assetfactory.models import registry


@pytest.fixture()
def spec(tmp_path) -> SkuSpec:
    (tmp_path / "a.png").write_bytes(b"front photo")
    (tmp_path / "b.png").write_bytes(b"side photo")
    return SkuSpec(sku="Mug 01", title="Mug", category="kitchen", material="ceramic",
                   images=(ImageSpec("a.png", "front", 0.0, 10.0),
                           ImageSpec("b.png", "right", 90.0, 10.0)),
                   width_mm=80.0, height_mm=95.0, depth_mm=80.0,
                   metadata={"fov_deg": "35", "camera_distance": "3", "colour_name": "red"},
                   catalog_root=str(tmp_path))


def _aid(spec, recipe=None):
    return asset_identity(spec, recipe or build_recipe("web"))[0]


def test_identity_columns_are_the_union_of_what_stages_declare():
    recipe = build_recipe("ar")
    declared = set().union(*(resolve_stage(f"assetfactory.tasks.{n}:{n}").reads
                             for n in STAGE_ORDER))
    cols = identity_columns(recipe)
    assert set(cols) == declared
    # the columns the stages are known to read, ingest's camera hints among them
    assert {"images", "fov_deg", "camera_distance", "mesh_uri", "width_mm", "height_mm",
            "depth_mm", "material"} <= set(cols)
    assert not {"title", "category", "colour_name"} & set(cols)


@pytest.mark.parametrize("change", [
    {"metadata": {"fov_deg": "50", "camera_distance": "3", "colour_name": "red"}},
    {"metadata": {"fov_deg": "35", "camera_distance": "4", "colour_name": "red"}},
    {"material": "steel"},
    {"width_mm": 81.0},
    {"sku": "Mug_01"},
    {"images": (ImageSpec("a.png", "front", 0.0, 20.0), ImageSpec("b.png", "right", 90.0, 10.0))},
    {"images": (ImageSpec("b.png", "right", 90.0, 10.0), ImageSpec("a.png", "front", 0.0, 10.0))},
])
def test_a_change_a_stage_reads_changes_the_identity(spec, change):
    assert _aid(dataclasses.replace(spec, **change)) != _aid(spec)


@pytest.mark.parametrize("change", [
    {"title": "Big mug"}, {"category": "mugs"}, {"row": 9},
    {"metadata": {"fov_deg": "35", "camera_distance": "3", "colour_name": "blue"}},
])
def test_a_change_no_stage_reads_keeps_the_identity(spec, change):
    assert _aid(dataclasses.replace(spec, **change)) == _aid(spec)


def test_photo_bytes_count_not_their_path(spec, tmp_path):
    before = _aid(spec)
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.copy(tmp_path / "a.png", moved / "a.png")
    images = (dataclasses.replace(spec.images[0], uri="moved/a.png"), spec.images[1])
    assert _aid(dataclasses.replace(spec, images=images)) == before
    (tmp_path / "a.png").write_bytes(b"retouched front photo")
    assert _aid(spec) != before
    hashes = input_hashes(spec, identity_columns(build_recipe("web")))
    assert hashes["column:fov_deg"] == '"35"' and hashes["sku"] == "Mug 01"
    assert hashes["image:0:front"] != hashes["image:1:right"]


def test_recipe_profile_options_and_stage_versions_count(spec, monkeypatch):
    web = build_recipe("web")
    assert _aid(spec, build_recipe("ar")) != _aid(spec, web)
    assert _aid(spec, build_recipe("web", overrides={"bake": {"size": 512}})) != _aid(spec, web)
    before = _aid(spec, web)
    bake = resolve_stage("assetfactory.tasks.bake:bake")
    bumped = dataclasses.replace(bake, version=bake.version + "-next")
    real = recipe_mod.resolve_stage
    monkeypatch.setattr(recipe_mod, "resolve_stage",
                        lambda path: bumped if path.endswith(":bake") else real(path))
    assert _aid(spec, web) != before


@dataclass(frozen=True)
class _WeightsConfig:
    name: ClassVar[str] = "weighted"
    version: ClassVar[str] = "1"
    device: str = "cpu"
    resolution: int = 64
    path: str = ""

    def build(self):  # pragma: no cover - never built here
        raise NotImplementedError

    def weights_sha256(self):
        from assetfactory.models.weights import weights_digest

        return weights_digest(self.path)


def test_backend_weights_and_version_count(spec, tmp_path, monkeypatch):
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"weights v1")
    registry.register("weighted", _WeightsConfig)
    try:
        recipe = build_recipe("web", backend="weighted",
                              overrides={"generate": {"backend_options": {"path": str(weights)}}})
        first = recipe_identity(recipe)
        assert recipe_identity(recipe) == first
        weights.write_bytes(b"weights v2")
        second = recipe_identity(recipe)
        assert second != first
        monkeypatch.setattr(_WeightsConfig, "version", "2")
        assert recipe_identity(recipe) != second
    finally:
        registry.unregister("weighted")


def test_the_weights_digest_preflight_recorded_is_used_not_rehashed(spec):
    """A learned backend's weights (GBs) are hashed once, by preflight; the identity takes that
    digest from the recipe, and a different recorded digest is a different identity."""
    recipe = build_recipe("web")
    checked = dataclasses.replace(recipe, weights=(("generate", "a" * 64),))
    other = dataclasses.replace(recipe, weights=(("generate", "b" * 64),))
    assert len({recipe_identity(recipe), recipe_identity(checked), recipe_identity(other)}) == 3
    masks = dataclasses.replace(checked, weights=(("generate", "a" * 64),
                                                  ("ingest.mask_model", "c" * 64)))
    assert _aid(spec, masks) != _aid(spec, checked)

"""Learned object masks: a tiny random SegFormer saved with save_pretrained, used by ingest.

The random model's masks are noise; the tests check loading (local only), the label logic, the
fallback to the classical mask, the ingest hook, and the run-level checks of the weights.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformers", reason="the [learned] extra is not installed")
pytest.importorskip("torch", reason="the [learned] extra is not installed")

from tiny_learned import make_tiny_segformer, product_state

from assetfactory.algorithms.masking import clean_mask, object_mask
from assetfactory.core.errors import MissingWeightsError
from assetfactory.flows.preflight import check_models
from assetfactory.flows.recipe import build_recipe
from assetfactory.models.learned import WrongWeightsError
from assetfactory.models.masks import MaskModel, MaskModelConfig, load_mask_model
from assetfactory.tasks.ingest import IngestOptions, ingest, learned_mask


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return make_tiny_segformer(tmp_path_factory.mktemp("seg") / "segformer-tiny")


def _photo(h=90, w=120) -> np.ndarray:
    rgb = np.full((h, w, 3), (230, 180, 190), np.uint8)  # a pink wall
    rgb[20:80, 40:90] = (220, 170, 185)                  # a pink chair, barely different
    return rgb


def test_the_model_gives_a_full_size_mask_deterministically(weights):
    model = load_mask_model(MaskModelConfig(str(weights)))
    assert load_mask_model(MaskModelConfig(str(weights))) is model  # loaded once
    rgb = _photo()
    mask = model(rgb)
    assert mask.shape == rgb.shape[:2] and mask.dtype == bool
    assert np.array_equal(mask, model(rgb))
    assert model.background_ids == [0] and model.weights.digest == MaskModelConfig(
        str(weights)).preflight()


def test_implausible_masks_fall_back_to_the_classical_one(weights):
    strict = MaskModel(MaskModelConfig(str(weights), min_fraction=0.995, max_fraction=0.999))
    mask, flags = strict.object_mask(_photo())
    assert mask is None and flags == ["learned_mask_fallback"]


def test_ingest_uses_the_model_mask_and_keeps_alpha(weights):
    hook = learned_mask(IngestOptions(mask_model=str(weights)))
    rgb = _photo()
    mask, flags, source = object_mask(rgb, None, hook)
    expected = clean_mask(load_mask_model(MaskModelConfig(str(weights)))(rgb))
    assert source == "model" and flags == [] and np.array_equal(mask, expected)
    alpha = np.zeros(rgb.shape[:2], np.uint8)
    alpha[30:60, 50:80] = 255
    mask, _, source = object_mask(rgb, alpha, hook)
    assert source == "alpha" and mask.sum() == 30 * 30
    assert learned_mask(IngestOptions()) is None
    assert object_mask(rgb, None, None)[2] == "background"
    # an implausible model answer falls back to the classical mask, keeping the model's flag
    mask, flags, source = object_mask(rgb, None, lambda _: (None, ["learned_mask_fallback"]))
    assert source == "background" and flags[0] == "learned_mask_fallback"


def test_the_ingest_stage_runs_with_a_mask_model(tmp_path, weights):
    state = product_state(tmp_path)
    result = ingest(state, IngestOptions(size=64, mask_model=str(weights)))
    assert result.metrics["ingest_views"] == 1 and "mask/front" in result.artifacts
    assert result.record.options["mask_model"] == str(weights)
    assert result.metrics["ingest_mask_model_sha256"] == MaskModelConfig(
        str(weights)).preflight()


def test_scene_parsing_labels_count_walls_and_floors_as_background(tmp_path, weights):
    ade = tmp_path / "ade-like"
    shutil.copytree(weights, ade)
    config = json.loads((ade / "config.json").read_text())
    config.update(id2label={"0": "chair", "1": "wall"}, label2id={"chair": 0, "wall": 1})
    (ade / "config.json").write_text(json.dumps(config))
    model = MaskModel(MaskModelConfig(str(ade)))
    assert model.background_ids == [1]
    rgb = _photo()
    assert np.array_equal(model(rgb), ~load_mask_model(MaskModelConfig(str(weights)))(rgb))
    with pytest.raises(WrongWeightsError, match="set background_labels"):
        MaskModel(MaskModelConfig(str(weights), background_labels=("sky",)))


def test_missing_and_wrong_weights_stop_the_run_first(tmp_path, weights):
    recipe = build_recipe("web", overrides={"ingest": {"mask_model": str(tmp_path / "none")}})
    with pytest.raises(MissingWeightsError, match="none"):
        check_models(recipe)
    part = tmp_path / "part"
    shutil.copytree(weights, part)
    (part / "preprocessor_config.json").unlink()
    with pytest.raises(MissingWeightsError, match="preprocessor_config.json"):
        MaskModelConfig(str(part)).preflight()
    (part / "model.safetensors").unlink()
    shutil.copy(weights / "preprocessor_config.json", part)
    with pytest.raises(MissingWeightsError, match="model.safetensors"):
        MaskModelConfig(str(part)).preflight()
    import torch
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    other = tmp_path / "dino"
    Dinov2Model(Dinov2Config(hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                             intermediate_size=8, image_size=28, patch_size=14)
                ).save_pretrained(other)
    shutil.copy(weights / "preprocessor_config.json", other)
    with pytest.raises(WrongWeightsError, match="not a transformers semantic-segmentation"):
        MaskModel(MaskModelConfig(str(other)))
    ok = check_models(build_recipe("web", overrides={"ingest": {"mask_model": str(weights)}}))
    assert dict(ok.weights) == {"ingest.mask_model": MaskModelConfig(str(weights)).preflight()}

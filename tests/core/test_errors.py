"""Errors: options errors name their stage one way; a missing artifact is a typed error."""

from __future__ import annotations

import pickle

import pytest

from assetfactory.core.errors import AssetError, MissingArtifact, OptionsError
from assetfactory.core.types import AssetState, SkuSpec
from assetfactory.tasks.bake import BakeOptions, bake
from assetfactory.tasks.generate import GenerateOptions
from assetfactory.tasks.ingest import IngestOptions
from assetfactory.tasks.metrics import MetricsOptions
from assetfactory.tasks.simplify import SimplifyOptions
from assetfactory.tasks.texture import TextureOptions


@pytest.mark.parametrize("build,stage", [
    (lambda: BakeOptions(size=100), "bake"),
    (lambda: TextureOptions(size=100), "texture"),
    (lambda: SimplifyOptions(target_tris=1), "simplify"),
    (lambda: IngestOptions(size=1), "ingest"),
    (lambda: GenerateOptions(resolution=1), "generate"),
    (lambda: MetricsOptions(iou_views="all"), "metrics"),
])
def test_options_errors_name_the_stage_the_same_way(build, stage):
    with pytest.raises(OptionsError) as err:
        build()
    assert err.value.stage == stage
    text = str(err.value)
    assert text.startswith(f"{stage} options: ") and f"{stage}." not in text.split(": ", 1)[1]
    back = pickle.loads(pickle.dumps(err.value))
    assert str(back) == text


def test_missing_artifact_is_typed_with_a_fix(tmp_path):
    state = AssetState(sku="s1", spec=SkuSpec(sku="s1"), store_uri=str(tmp_path))
    with pytest.raises(MissingArtifact) as err:
        state.ref("clean_mesh")
    assert isinstance(err.value, AssetError) and isinstance(err.value, KeyError)
    assert "cleanup" in err.value.fix and err.value.sku == "s1"
    with pytest.raises(MissingArtifact) as err:
        bake(state, BakeOptions())
    assert err.value.stage == "bake" and "uv" in err.value.fix
    assert str(err.value).startswith("[s1:bake] ")

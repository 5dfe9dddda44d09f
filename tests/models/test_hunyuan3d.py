"""The Hunyuan3D-2 backend on a tiny random checkpoint in the published layout.

``hy3dgen`` builds its DiT, ShapeVAE and DINOv2 conditioner from the checkpoint folder's
config.yaml; the tiny config has the published structure with small sizes. The checkpoint is
saved as ``<subfolder>/model.fp16.safetensors`` with ``model.``/``vae.``/``conditioner.``
prefixes and loaded by the backend as published weights would be (no torchvision here: the
conditioner's transforms come from ``models.tv_transforms``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

torch = pytest.importorskip("torch", reason="the [learned] extra is not installed")
pytest.importorskip("hy3dgen", reason="hy3dgen is not installed (make setup-test installs it)")

from test_shap_e import _request, _view
from tiny_learned import (
    TINY_HUNYUAN3D_CONFIG,
    fast_overrides,
    make_tiny_hunyuan3d,
    product_state,
)

from assetfactory.core.errors import MissingWeightsError, OptionsError
from assetfactory.flows.preflight import preflight
from assetfactory.flows.recipe import build_recipe
from assetfactory.flows.runner import run_asset
from assetfactory.models.hunyuan3d import Hunyuan3DConfig
from assetfactory.models.learned import WrongWeightsError

FAST = {"steps": 2, "octree_resolution": 24, "device": "cpu", "subfolder": "tiny-dit"}


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return make_tiny_hunyuan3d(tmp_path_factory.mktemp("hy") / "Hunyuan3D-2mini", "tiny-dit")


@pytest.fixture(scope="module")
def generator(weights):
    return Hunyuan3DConfig(weights=str(weights), **FAST).build()


def test_generates_a_normalised_mesh_deterministically(generator, weights):
    a = generator.generate(_request(seed=5))
    m = a.mesh
    assert m.n_faces > 100 and m.faces.max() < m.n_vertices
    lo, hi = m.vertices.min(0), m.vertices.max(0)
    assert np.isclose((hi - lo).max(), 1.0) and np.allclose((hi + lo) / 2, 0, atol=1e-9)
    b = generator.generate(_request(seed=5))
    assert np.array_equal(a.mesh.vertices, b.mesh.vertices)
    assert np.array_equal(a.mesh.faces, b.mesh.faces)
    c = generator.generate(_request(seed=6))
    assert c.mesh.n_vertices != m.n_vertices or not np.array_equal(c.mesh.vertices, m.vertices)
    info = a.info
    assert info["method"] == "hunyuan3d" and info["octree_resolution"] == 24
    assert info["device"] == "cpu" and info["dtype"] == "float32" and info["weights_files"] == 2
    assert info["hy3dgen_version"] and len(info["weights_sha256"]) == 64
    batch = generator.generate_batch([_request(seed=5), _request(seed=6)])
    assert [d.mesh.n_faces > 0 for d in batch] == [True, True]


def test_runs_through_cleanup_and_export(tmp_path, weights):
    state = product_state(tmp_path, backend="hunyuan3d")
    recipe = preflight(build_recipe("web", "hunyuan3d", fast_overrides(
        {"weights": str(weights), **FAST})))
    out = run_asset(state, recipe)
    assert out.ok, out.failure
    m = out.metrics
    assert m["generate_backend"] == "hunyuan3d" and m["generate_weights_sha256"] == dict(
        recipe.weights)["generate"]
    assert {"dense_mesh", "mesh", "glb"} <= set(out.artifacts) and m["export_glb_bytes"] > 0


def test_missing_checkpoint_files_are_named(tmp_path, weights):
    with pytest.raises(MissingWeightsError, match="no tiny-dit/ checkpoint folder"):
        Hunyuan3DConfig(weights=str(tmp_path), **FAST).preflight()
    part = tmp_path / "part"
    shutil.copytree(weights, part)
    (part / "tiny-dit" / "model.fp16.safetensors").unlink()
    with pytest.raises(MissingWeightsError) as err:
        Hunyuan3DConfig(weights=str(part), **FAST).preflight()
    assert "tiny-dit/model.fp16.safetensors" in str(err.value) and str(part) in str(err.value)
    with pytest.raises(MissingWeightsError, match="tiny-dit/model.safetensors"):
        Hunyuan3DConfig(weights=str(weights), **{**FAST, "variant": None}).preflight()
    with pytest.raises(MissingWeightsError, match="huggingface-cli download"):
        Hunyuan3DConfig(weights="tencent/not-on-this-machine").preflight()


def _with_config(tmp_path, weights, config) -> Path:
    other = tmp_path / "other"
    shutil.copytree(weights, other)
    (other / "tiny-dit" / "config.yaml").write_text(yaml.safe_dump(config))
    return other


def test_configs_that_would_run_foreign_code_or_download_are_refused(tmp_path, weights):
    foreign = {**TINY_HUNYUAN3D_CONFIG, "vae": {"target": "os.system", "params": {}}}
    with pytest.raises(WrongWeightsError, match="'os.system'"):
        Hunyuan3DConfig(weights=str(_with_config(tmp_path / "a", weights, foreign)),
                        **FAST).preflight()
    hub = yaml.safe_load(yaml.safe_dump(TINY_HUNYUAN3D_CONFIG))
    hub["conditioner"]["params"]["main_image_encoder"]["kwargs"] = {
        "version": "facebook/dinov2-giant"}
    with pytest.raises(WrongWeightsError, match="would download"):
        Hunyuan3DConfig(weights=str(_with_config(tmp_path / "b", weights, hub)),
                        **FAST).preflight()


def test_a_checkpoint_that_does_not_match_its_config_is_named(tmp_path, weights):
    bigger = yaml.safe_load(yaml.safe_dump(TINY_HUNYUAN3D_CONFIG))
    bigger["model"]["params"]["depth"] = 2
    with pytest.raises(WrongWeightsError, match="does not load with"):
        Hunyuan3DConfig(weights=str(_with_config(tmp_path, weights, bigger)), **FAST).build()


def test_a_checkpoint_without_the_conditioner_is_refused(tmp_path, weights):
    from safetensors.torch import load_file, save_file

    other = tmp_path / "noenc"
    shutil.copytree(weights, other)
    ckpt = other / "tiny-dit" / "model.fp16.safetensors"
    save_file({k: v for k, v in load_file(str(ckpt)).items()
               if not k.startswith("conditioner.")}, str(ckpt))
    with pytest.raises(WrongWeightsError, match=r"no weights for \['conditioner'\]"):
        Hunyuan3DConfig(weights=str(other), **FAST).build()


def test_torchvision_is_not_left_behind():
    import importlib.util
    import sys

    from assetfactory.models.hunyuan3d import import_pipeline
    from assetfactory.models.tv_transforms import torchvision_imports

    import_pipeline()
    if not torchvision_imports():
        assert "torchvision" not in sys.modules
        assert importlib.util.find_spec("torchvision") is None


def test_tensor_transforms_match_torchvision_semantics():
    from assetfactory.models import tv_transforms as T

    x = torch.rand(2, 3, 40, 30)
    r = T.Resize(28, T.InterpolationMode.BILINEAR, antialias=True)(x)
    assert r.shape == (2, 3, 37, 28)  # the shorter side to 28, aspect kept (int(28 * 40 / 30))
    c = T.CenterCrop(28)(r)
    assert c.shape == (2, 3, 28, 28) and torch.equal(c, r[..., 4:32, :])  # round((37-28)/2)=4
    n = T.Normalize([0.5, 0.4, 0.3], [0.2, 0.2, 0.25])(c)
    assert torch.allclose(n[:, 1], (c[:, 1] - 0.4) / 0.2)
    flat = torch.full((1, 3, 16, 16), 0.25)
    assert torch.allclose(T.Resize(8)(flat), torch.full((1, 3, 8, 8), 0.25))
    assert T.CenterCrop(20)(flat).shape == (1, 3, 20, 20)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_tiny_pipeline_on_the_gpu(weights):
    generator = Hunyuan3DConfig(weights=str(weights), **{**FAST, "device": "cuda"}).build()
    a = generator.generate(_request(seed=3, views=[_view()]))
    b = generator.generate(_request(seed=3, views=[_view()]))
    assert a.info["device"] == "cuda" and a.info["dtype"] == "float16"
    assert np.array_equal(a.mesh.vertices, b.mesh.vertices)


def test_options_are_validated():
    for bad in ({"octree_resolution": 8}, {"subfolder": "../x"}, {"device": "gpu"},
                {"num_gpus": -1}):
        with pytest.raises(OptionsError):
            Hunyuan3DConfig(**bad)

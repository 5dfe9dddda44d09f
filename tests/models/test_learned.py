"""What the learned backends share: frames, device choice, the weights manifest, preflight."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from assetfactory.core.errors import MissingWeightsError, OptionsError
from assetfactory.flows.preflight import check_models
from assetfactory.flows.recipe import build_recipe, call_resources
from assetfactory.models import learned, registry
from assetfactory.models.weights import manifest_digest, weights_manifest


def test_model_axes_map_to_the_project_frame():
    shap_e = learned.to_project_frame("+z", "-y")   # Z up, front -Y (Blender-like)
    assert np.allclose(shap_e @ [0, 0, 1], [0, 1, 0]) and np.allclose(shap_e @ [0, -1, 0],
                                                                       [0, 0, 1])
    assert np.isclose(np.linalg.det(shap_e), 1.0)   # a rotation: windings stay outward
    assert np.allclose(learned.to_project_frame("+y", "+z"), np.eye(3))
    assert np.allclose(learned.yaw(90) @ [0, 0, 1], [1, 0, 0], atol=1e-12)
    with pytest.raises(OptionsError):
        learned.check_axes("+y", "-y", "x")


def test_the_manifest_hashes_each_file_and_notices_changes(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.bin").write_bytes(b"weights")
    (tmp_path / "sub" / "config.json").write_text("{}")
    files = ["a.bin", "sub/config.json"]
    first = weights_manifest(tmp_path, files)
    assert first == {"a.bin": hashlib.sha256(b"weights").hexdigest(),
                     "sub/config.json": hashlib.sha256(b"{}").hexdigest()}
    digest = manifest_digest(first)
    assert weights_manifest(tmp_path, files) == first
    (tmp_path / "a.bin").write_bytes(b"other weights")
    assert manifest_digest(weights_manifest(tmp_path, files)) != digest


def test_learned_backends_are_listed_without_importing_torch():
    import subprocess
    import sys

    code = ("import sys; from assetfactory.models import registry; "
            "names = registry.available(); [registry.find(n) for n in names]; "
            "import json; print(json.dumps(sorted(names))); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split("\n")
    assert {"shap-e", "hunyuan3d", "http"} <= set(json.loads(out[0]))
    assert out[1] == "False"


def test_weight_free_recipes_keep_their_identity():
    recipe = build_recipe("web")
    checked = check_models(recipe)
    assert checked.weights == () and checked.hash == recipe.hash
    assert call_resources(recipe.calls[1]).gpus == 0.0


def test_a_learned_recipe_asks_for_its_gpu_and_checks_weights_first(tmp_path):
    recipe = build_recipe("web", "hunyuan3d", {"generate": {"backend_options": {
        "weights": str(tmp_path / "absent"), "num_gpus": 0.5}}})
    generate = next(c for c in recipe.calls if c.name == "generate")
    assert call_resources(generate).gpus == 0.5
    with pytest.raises(MissingWeightsError, match="never downloaded"):
        check_models(recipe)
    cpu = build_recipe("web", "shap-e", {"generate": {"device": "cpu"}})
    assert call_resources(next(c for c in cpu.calls if c.name == "generate")).gpus == 0.0
    assert registry.find("shap-e").name == "shap-e"

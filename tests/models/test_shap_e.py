"""The Shap-E backend on a tiny random ShapEImg2ImgPipeline saved in diffusers' layout.

The pipeline is built like diffusers' own fast tests build it (same classes, tiny sizes), saved
with ``save_pretrained`` and loaded by the backend exactly as published weights would be: from a
folder or the local Hugging Face cache, never from the network. The meshes are noise; the tests
check the plumbing: shapes, seeds, hashes, errors, and that the mesh makes a GLB.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("diffusers", reason="the [learned] extra is not installed")
torch = pytest.importorskip("torch", reason="the [learned] extra is not installed")

from tiny_learned import fast_overrides, make_tiny_shap_e, product_state

from assetfactory.core.camera import orbit_camera
from assetfactory.core.errors import MissingWeightsError, OptionsError
from assetfactory.flows.preflight import check_models, preflight
from assetfactory.flows.recipe import build_recipe
from assetfactory.flows.runner import run_asset
from assetfactory.models.base import GenerateRequest, backend_resources
from assetfactory.models.learned import WrongWeightsError
from assetfactory.models.shap_e import ShapEConfig
from assetfactory.models.weights import manifest_digest

FAST = {"steps": 2, "mesh_grid_size": 20, "device": "cpu"}


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return make_tiny_shap_e(tmp_path_factory.mktemp("shap-e") / "shap-e-img2img")


@pytest.fixture(scope="module")
def generator(weights):
    return ShapEConfig(weights=str(weights), **FAST).build()


def _view(label="front", az=0.0):
    class View:
        pass

    v = View()
    v.label, v.camera, v.pose_known = label, orbit_camera(label, az, 0.0, 2.5, 30.0, 64), True
    v.rgb = np.full((64, 64, 3), 255, np.uint8)
    v.mask = np.zeros((64, 64), bool)
    v.mask[12:52, 20:44] = True
    v.rgb[v.mask] = (180, 40, 30)
    return v


def _request(seed=0, **kw):
    return GenerateRequest(sku="s", views=kw.pop("views", [_view()]), seed=seed, **kw)


def test_generates_a_normalised_coloured_mesh_deterministically(generator, weights):
    a = generator.generate(_request(seed=7))
    m = a.mesh
    assert m.n_faces > 100 and m.faces.max() < m.n_vertices
    lo, hi = m.vertices.min(0), m.vertices.max(0)
    assert np.isclose((hi - lo).max(), 1.0) and np.allclose((hi + lo) / 2, 0, atol=1e-9)
    assert m.vertex_colors.shape == (m.n_vertices, 4) and m.vertex_colors.dtype == np.uint8
    again = generator.generate(_request(seed=7))
    assert np.array_equal(a.mesh.vertices, again.mesh.vertices)
    assert np.array_equal(a.mesh.faces, again.mesh.faces)
    other = generator.generate(_request(seed=8))
    assert other.mesh.n_vertices != m.n_vertices or not np.array_equal(
        other.mesh.vertices, m.vertices)
    info = a.info
    assert info["device"] == "cpu" and info["cpu_fallback"] is False and info["seed"] == 7
    assert info["dtype"] == "float32" and info["diffusers_version"]
    # the provenance hash is the digest of the sha256 of every file the pipeline loads
    files = sorted(p.relative_to(weights).as_posix() for p in weights.rglob("*") if p.is_file())
    manifest = {f: hashlib.sha256((weights / f).read_bytes()).hexdigest() for f in files}
    assert info["weights_sha256"] == manifest_digest(manifest) == generator.weights.digest
    assert info["weights_files"] == len(files) == 9
    assert json.loads(info["weights_manifest"]) == manifest
    assert len(a.cameras) == 1


def test_a_batch_gives_each_sku_its_own_seeded_mesh(generator):
    requests = [_request(seed=3), _request(seed=4), _request(seed=3)]
    batch = generator.generate_batch(requests)
    assert all(np.array_equal(a.mesh.vertices, b.mesh.vertices)
               for a, b in zip(batch, generator.generate_batch(requests)))
    # the same seed at another place in the batch: the same mesh up to float32 rounding (on
    # some CPUs a batched product sums each row in another order); another seed: another mesh
    assert batch[0].mesh.n_vertices == batch[2].mesh.n_vertices
    assert np.allclose(batch[0].mesh.vertices, batch[2].mesh.vertices, atol=2e-3)
    assert batch[1].mesh.n_vertices != batch[0].mesh.n_vertices or not np.allclose(
        batch[1].mesh.vertices, batch[0].mesh.vertices, atol=2e-3)
    # batched float32 sums round differently from a single call: equal up to rounding
    single = generator.generate(_request(seed=3))
    assert batch[0].mesh.n_vertices == single.mesh.n_vertices
    assert np.allclose(batch[0].mesh.vertices, single.mesh.vertices, atol=2e-3)
    assert batch[1].mesh.n_vertices != batch[0].mesh.n_vertices or not np.allclose(
        batch[1].mesh.vertices, batch[0].mesh.vertices)


def test_the_mesh_faces_the_camera_of_its_photo(generator):
    front = generator.generate(_request(seed=5)).mesh
    right = generator.generate(_request(seed=5, views=[_view("right", 90.0)])).mesh
    # the same shape, turned by the view's azimuth: right's +X is front's +Z
    assert np.allclose(right.vertices[:, 0], front.vertices[:, 2], atol=1e-6)
    assert np.allclose(right.vertices[:, 2], -front.vertices[:, 0], atol=1e-6)


def test_runs_through_cleanup_and_export(tmp_path, weights):
    state = product_state(tmp_path, backend="shap-e")
    recipe = build_recipe("web", "shap-e", fast_overrides({"weights": str(weights),
                                                           **FAST}))
    checked = preflight(recipe)
    assert dict(checked.weights)["generate"] == ShapEConfig(weights=str(weights)).weights_sha256()
    assert checked.hash != recipe.hash  # the weights are part of every asset's identity
    out = run_asset(state, checked)
    assert out.ok, out.failure
    m = out.metrics
    assert m["generate_backend"] == "shap-e" and m["generate_device"] == "cpu"
    assert m["generate_weights_sha256"] == dict(checked.weights)["generate"]
    assert m["generate_cpu_fallback"] is False and m["generate_tris"] > 100
    assert {"dense_mesh", "mesh", "glb"} <= set(out.artifacts)
    assert 0 < m["export_glb_bytes"] <= 3e6
    gen = next(r for r in out.records if r.stage == "generate")
    assert gen.device == "cpu" and gen.options["backend_options"]["weights"] == str(weights)


def test_missing_and_incomplete_weights_fail_before_loading(tmp_path, weights):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(MissingWeightsError, match="model_index.json"):
        ShapEConfig(weights=str(empty)).build()
    with pytest.raises(MissingWeightsError, match="never downloaded"):
        ShapEConfig(weights=str(tmp_path / "nowhere")).preflight()
    part = tmp_path / "part"
    shutil.copytree(weights, part)
    (part / "prior" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(MissingWeightsError) as err:
        check_models(build_recipe("web", "shap-e", fast_overrides({"weights": str(part)})))
    assert str(part) in str(err.value) and "prior/diffusion_pytorch_model" in str(err.value)
    with pytest.raises(MissingWeightsError, match="variant"):
        ShapEConfig(weights=str(weights), variant="fp16").preflight()


def test_wrong_weights_are_named(tmp_path, weights):
    other = tmp_path / "other"
    shutil.copytree(weights, other)
    index = json.loads((other / "model_index.json").read_text())
    (other / "model_index.json").write_text(json.dumps({**index,
                                                        "_class_name": "ShapEPipeline"}))
    with pytest.raises(WrongWeightsError, match="'ShapEPipeline'.*not 'ShapEImg2ImgPipeline'"):
        ShapEConfig(weights=str(other)).preflight()
    good = ShapEConfig(weights=str(weights)).weights_sha256()
    with pytest.raises(WrongWeightsError, match="not the pinned"):
        ShapEConfig(weights=str(weights), expected_sha256="0" * 64).preflight()
    assert ShapEConfig(weights=str(weights), expected_sha256=good).preflight() == good
    broken = tmp_path / "broken"
    shutil.copytree(weights, broken)
    (broken / "prior" / "diffusion_pytorch_model.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(WrongWeightsError, match="could not be loaded"):
        ShapEConfig(weights=str(broken), **FAST).build()


def test_loads_from_the_local_hub_cache_offline(tmp_path, weights, monkeypatch):
    """A repo id resolves through the hub cache layout (snapshots linked to blobs)."""
    repo = tmp_path / "hub" / "models--acme--shap-e-img2img"
    snap = repo / "snapshots" / "0123abc"
    for f in weights.rglob("*"):
        if f.is_file():
            blob = repo / "blobs" / hashlib.sha256(f.read_bytes()).hexdigest()
            blob.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(f, blob)
            link = snap / f.relative_to(weights)
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(blob, link)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abc")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cached = ShapEConfig(weights="acme/shap-e-img2img", **FAST)
    assert cached.weights_sha256() == ShapEConfig(weights=str(weights)).weights_sha256()
    mesh = cached.build().generate(_request(seed=1)).mesh
    assert mesh.n_faces > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: no fallback")
def test_without_a_gpu_it_falls_back_to_the_cpu_flagged(weights):
    config = ShapEConfig(weights=str(weights), **{**FAST, "device": "cuda"})
    assert backend_resources(config).gpus == 1.0
    dense = config.build().generate(_request(seed=2))
    assert dense.info["cpu_fallback"] is True and dense.info["device"] == "cpu"
    assert dense.info["device_requested"] == "cuda" and "no CUDA" in dense.info[
        "cpu_fallback_reason"]
    with pytest.raises(OptionsError, match="allow_cpu_fallback"):
        dataclasses.replace(config, allow_cpu_fallback=False).build()
    assert backend_resources(ShapEConfig(device="cpu")).gpus == 0.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_tiny_pipeline_on_the_gpu(weights):
    generator = ShapEConfig(weights=str(weights), **{**FAST, "device": "cuda"}).build()
    a = generator.generate(_request(seed=11))
    b = generator.generate(_request(seed=11))
    assert a.info["device"] == "cuda" and a.info["dtype"] == "float16"
    assert a.info["cpu_fallback"] is False and a.mesh.n_faces > 0
    assert np.array_equal(a.mesh.vertices, b.mesh.vertices)


def test_options_are_validated():
    for bad in ({"device": "tpu"}, {"dtype": "int8"}, {"steps": 0}, {"mesh_grid_size": 4},
                {"up_axis": "+y", "front_axis": "-y"}, {"up_axis": "up"}):
        with pytest.raises(OptionsError):
            ShapEConfig(**bad)

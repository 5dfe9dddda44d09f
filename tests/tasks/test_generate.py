"""The generate stage: contract, backend choice, mesh_uri resolution, errors, metrics."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
import trimesh

from assetfactory.core.artifacts import load_cameras, load_mesh, save_cameras, save_image
from assetfactory.core.camera import orbit_camera
from assetfactory.core.errors import InputError, OptionsError
from assetfactory.core.mesh import MeshData
from assetfactory.core.types import AssetState, SkuSpec
from assetfactory.models import registry
from assetfactory.models.base import DenseMesh
from assetfactory.tasks.generate import GenerateOptions, build_generator, generate, resolve_mesh_uri

SIZE = 96


def _sphere_mask(cam, radius: float = 0.45) -> np.ndarray:
    v, u = np.mgrid[0:cam.height, 0:cam.width].astype(float)
    d = np.stack([(u - cam.K[0, 2]) / cam.K[0, 0], -(v - cam.K[1, 2]) / cam.K[1, 1],
                  -np.ones_like(u)], -1).reshape(-1, 3) @ cam.world_to_camera[:3, :3]
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    o = cam.position
    t = d @ -o
    return ((o @ o - t ** 2 < radius ** 2) & (t > 0)).reshape(cam.height, cam.width)


def _state(tmp_path, labels=("front", "right", "back", "left"), **spec) -> AssetState:
    state = AssetState(sku="t", spec=SkuSpec(sku="t", **spec), store_uri=str(tmp_path / "store"))
    arts = {}
    cams = []
    for label, az in zip(labels, (0.0, 90.0, 180.0, 270.0)):
        cam = orbit_camera(label, az, 15.0, 2.5, 30.0, SIZE)
        mask = _sphere_mask(cam)
        arts[f"image/{label}"] = save_image(state, np.where(mask[..., None], 128, 255)
                                            .astype(np.uint8).repeat(3, axis=2))
        arts[f"mask/{label}"] = save_image(state, mask.astype(np.uint8) * 255)
        cams.append(cam)
    if cams:
        arts["cameras"] = save_cameras(state, cams)
    return dataclasses.replace(state, artifacts=arts)


def test_contract_views_to_dense_mesh(tmp_path):
    state = _state(tmp_path)
    before = dict(state.artifacts)
    result = generate(state, GenerateOptions(resolution=40))
    assert dict(state.artifacts) == before and state.metrics == {}  # input untouched
    assert result.record is not None and result.record.stage == "generate"
    assert set(result.artifacts) == {"dense_mesh", "cameras"}
    nxt = state.apply(result)
    mesh = load_mesh(nxt, "dense_mesh")
    assert mesh.n_faces == result.metrics["generate_tris"] > 1000
    assert mesh.n_vertices == result.metrics["generate_verts"]
    assert [c.label for c in load_cameras(nxt)] == ["front", "right", "back", "left"]
    m = result.metrics
    assert m["generate_backend"] == "silhouette" and m["generate_method"] == "visual_hull"
    assert m["generate_views"] == 4 and m["generate_watertight"] is True
    assert all(k.startswith("generate_") for k in m)
    assert all(isinstance(v, (int, float, str, bool)) for v in m.values())


def test_one_view_inflates(tmp_path):
    result = generate(_state(tmp_path, labels=("front",)), GenerateOptions(resolution=32))
    assert result.metrics["generate_method"] == "inflate"


def test_mesh_uri_relative_to_catalog_wins_over_views(tmp_path):
    (tmp_path / "meshes").mkdir()
    box = trimesh.creation.box(extents=(0.3, 0.6, 0.2))
    (tmp_path / "meshes" / "box.obj").write_text(box.export(file_type="obj"))
    state = _state(tmp_path, mesh_uri="meshes/box.obj", catalog_root=str(tmp_path))
    result = generate(state, GenerateOptions())
    m = result.metrics
    assert m["generate_backend"] == "mesh" and m["generate_method"] == "import"
    assert m["generate_source_extent_m"] == pytest.approx(0.6)
    assert m["generate_tris"] == 12
    cams = load_cameras(state.apply(result))
    assert [c.label for c in cams] == ["front", "right", "back", "left"]  # passed through


def test_mesh_only_row_writes_empty_cameras(tmp_path):
    path = tmp_path / "box.glb"
    path.write_bytes(trimesh.creation.box().export(file_type="glb"))
    state = _state(tmp_path, labels=(), mesh_uri=str(path))
    result = generate(state, GenerateOptions())
    assert load_cameras(state.apply(result)) == []


def test_no_views_and_no_mesh_is_an_input_error(tmp_path):
    with pytest.raises(InputError) as err:
        generate(_state(tmp_path, labels=()), GenerateOptions())
    assert err.value.stage == "generate" and err.value.sku == "t" and err.value.fix


def test_broken_mesh_is_an_input_error_naming_the_file(tmp_path):
    (tmp_path / "shoe.glb").write_text("version https://git-lfs.github.com/spec/v1\n")
    state = _state(tmp_path, labels=(), mesh_uri="shoe.glb", catalog_root=str(tmp_path))
    with pytest.raises(InputError, match="shoe.glb is a Git LFS pointer"):
        generate(state, GenerateOptions())


def test_options_validate_and_reach_the_backend(tmp_path):
    with pytest.raises(OptionsError):
        GenerateOptions(resolution=2)
    with pytest.raises(OptionsError):
        GenerateOptions(seed=-1)
    state = _state(tmp_path, labels=("front",))
    thin = generate(state, GenerateOptions(resolution=32, backend_options={"inflation": 0.2}))
    fat = generate(state, GenerateOptions(resolution=32, backend_options={"inflation": 0.8}))
    assert thin.metrics["generate_volume"] < fat.metrics["generate_volume"]
    with pytest.raises(OptionsError, match="accepts"):
        generate(state, GenerateOptions(backend_options={"colour": "red"}))
    with pytest.raises(registry.UnknownBackendError):
        generate(state, GenerateOptions(backend="nope"))


@dataclass(frozen=True)
class CountingConfig:
    name: ClassVar[str] = "counting"
    device: str = "cpu"
    resolution: int = 8
    builds: ClassVar[list] = []

    def build(self):
        CountingConfig.builds.append(self)
        return self

    def weights_sha256(self):
        return "f" * 64

    def generate(self, request):
        mesh = MeshData(np.eye(3), np.array([[0, 1, 2]]))
        return DenseMesh(mesh, [v.camera for v in request.views],
                         {"method": "fake", "seed": request.seed})


def test_backends_build_once_per_config_and_report_weights(tmp_path):
    registry.register("counting", CountingConfig)
    try:
        state = _state(tmp_path, labels=("front",))
        opts = GenerateOptions(backend="counting", resolution=17, seed=3)
        generate(state, opts)
        result = generate(state, opts)
        assert len([b for b in CountingConfig.builds if b.resolution == 17]) == 1
        assert build_generator(CountingConfig(resolution=17)) is CountingConfig.builds[-1]
        m = result.metrics
        assert m["generate_backend"] == "counting" and m["generate_seed"] == 3
        assert m["generate_weights_sha256"] == "f" * 64 and m["generate_method"] == "fake"
    finally:
        registry.unregister("counting")


def test_resolve_mesh_uri():
    assert resolve_mesh_uri("/abs/m.glb", "/cat") == "/abs/m.glb"
    assert resolve_mesh_uri("m/x.glb", "/cat") == "/cat/m/x.glb"
    assert resolve_mesh_uri("x.glb", "s3://bucket/cat/") == "s3://bucket/cat/x.glb"
    assert resolve_mesh_uri("s3://b/x.glb", "/cat") == "s3://b/x.glb"
    assert resolve_mesh_uri("x.glb", "") == "x.glb"
    with pytest.raises(InputError, match="outside the catalog"):
        resolve_mesh_uri("../../etc/passwd", "/cat")


def test_labels_only_photos_get_estimated_cameras_in_metrics_report_and_cameras(tmp_path):
    # ingest wrote level cameras from the labels and ``camera_hints`` saying the catalog gave
    # no elevation or lens; generate estimates them and records what it found and how far the
    # cameras moved (metrics, the ``generate_report`` artifact, the saved cameras)
    from unittest import mock

    from assetfactory.algorithms import camera_fit
    from assetfactory.core.artifacts import load_json, save_json
    from tests.procedural_shoot import LABELS4, product, shoot

    views, _ = shoot(product("asym"), LABELS4, elevation=18.0, fov=30.0, photo=256, size=128)
    state = AssetState(sku="t", spec=SkuSpec(sku="t"), store_uri=str(tmp_path / "store"))
    arts = {}
    for v in views:
        arts[f"image/{v.label}"] = save_image(state, v.rgb)
        arts[f"mask/{v.label}"] = save_image(state, v.mask.astype(np.uint8) * 255)
    arts["cameras"] = save_cameras(state, [v.camera for v in views])
    arts["camera_hints"] = save_json(state, {
        "fov_deg": 30.0, "fov_known": False, "distance": 2.5, "distance_known": False,
        "elevation_known": [False] * 4, "default_elevation_deg": 0.0})
    state = dataclasses.replace(state, artifacts=arts)
    fit, fast = camera_fit.fit_cameras, camera_fit.FitOptions(
        coarse_px=64, fine_px=96, coarse_grid=24, fine_grid=30)
    with mock.patch.object(camera_fit, "fit_cameras", lambda c, m, h: fit(c, m, h, fast)):
        result = generate(state, GenerateOptions(resolution=40))
    m = result.metrics
    assert m["generate_camera_elevation_deg"] == pytest.approx(18.0, abs=3.5)
    assert m["generate_camera_consistency"] > m["generate_camera_consistency_start"]
    assert m["generate_camera_outliers"] == "" and m["generate_camera_dropped"] == ""
    assert "generate_report" in result.artifacts
    nxt = state.apply(result)
    report = load_json(nxt, "generate_report")["camera_fit"]
    assert report["hints"]["elevation_known"] == [False] * 4
    assert set(report["azimuth_shift_deg"]) == set(LABELS4)
    cams = load_cameras(nxt)
    assert [c.label for c in cams] == list(LABELS4)
    for c in cams:  # the saved cameras look down as the true ones did
        el = np.degrees(np.arcsin(c.position[1] / np.linalg.norm(c.position)))
        assert el == pytest.approx(18.0, abs=6.0), c.label

"""bake: tangent-space normal map (glTF / OpenGL convention) and AO from dense to low."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from assetfactory.algorithms.ambient_occlusion import ambient_occlusion
from assetfactory.algorithms.normal_bake import low_normals
from assetfactory.core.artifacts import load_image, read_bytes, save_bytes, save_mesh
from assetfactory.core.errors import MissingArtifact, OptionsError, ProcessingError
from assetfactory.core.mesh import MeshData
from assetfactory.core.types import AssetState, SkuSpec, StageResult
from assetfactory.geometry.tangents import vertex_tangents
from assetfactory.tasks.bake import BakeOptions, bake


def make_state(tmp_path, low: MeshData, dense: MeshData | None) -> AssetState:
    state = AssetState(sku="t", spec=SkuSpec(sku="t"), store_uri=str(tmp_path))
    arts = {"mesh": save_mesh(state, low)}
    if dense is not None:
        arts["clean_mesh"] = save_bytes(state, dense.to_bytes(), ".npz")
    return state.apply(StageResult(artifacts=arts))


def grid(n: int, height=lambda x, y: 0.0 * x) -> MeshData:
    """A square [0, 1]^2 in the XY plane (normal +Z), z = height(x, y), UV = (x, y) squeezed
    into [0.1, 0.9] (V up, so v grows with +y)."""
    xs, ys = np.meshgrid(np.linspace(0, 1, n + 1), np.linspace(0, 1, n + 1))
    x, y = xs.ravel(), ys.ravel()
    verts = np.stack([x, y, height(x, y)], axis=1)
    idx = np.arange((n + 1) ** 2).reshape(n + 1, n + 1)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, 1:].ravel(), idx[1:, :-1].ravel()
    faces = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])
    uv = (0.1 + 0.8 * np.stack([x, y], axis=1)).astype(np.float32)
    return MeshData(verts, faces, uv=uv)


def decoded_map(tmp_path, dense: MeshData, **options) -> tuple[np.ndarray, np.ndarray]:
    """Bake a flat low quad against ``dense``; the map's mean decoded vector over the chart
    interior, and the whole image."""
    state = make_state(tmp_path, grid(2), dense)
    result = bake(state, BakeOptions(size=64, ao_rays=0, max_distance=1.0, error_samples=500,
                                     **options))
    img = load_image(state.apply(result), "texture/normal")
    inner = img[16:48, 16:48].reshape(-1, 3).astype(np.float64)  # well inside the chart
    m = inner / 255.0 * 2.0 - 1.0
    return m.mean(0) / np.linalg.norm(m.mean(0)), img


@pytest.mark.parametrize("height, expected", [
    (lambda x, y: -0.2 * y, (0.0, 0.2, 1.0)),   # surface tilts to face +y: green up
    (lambda x, y: 0.2 * y, (0.0, -0.2, 1.0)),
    (lambda x, y: -0.2 * x, (0.2, 0.0, 1.0)),   # faces +x: red up
])
def test_gltf_convention_red_right_green_up(tmp_path, height, expected):
    # low: flat, T = +x (u), B = +y (v up), N = +z; so the decoded tangent-space vector is the
    # dense normal itself, as a glTF viewer (OpenGL green) reads it
    m, _ = decoded_map(tmp_path, grid(16, height))
    want = np.asarray(expected) / np.linalg.norm(expected)
    assert np.degrees(np.arccos(np.clip(m @ want, -1, 1))) < 1.5


def test_flat_on_flat_is_neutral_everywhere_after_dilation(tmp_path):
    _, img = decoded_map(tmp_path, grid(8))
    # inside the chart, in the dilated margin and beyond it: (128, 128, 255)
    assert np.abs(img.astype(int) - (128, 128, 255)).max() <= 1


def test_far_dense_surface_is_ignored(tmp_path):
    far = grid(8, lambda x, y: 0.5 - 0.3 * y)  # 0.2-0.5 away, tilted
    state = make_state(tmp_path, grid(2), far)
    result = bake(state, BakeOptions(size=64, ao_rays=0, max_distance=0.05, error_samples=100))
    img = load_image(state.apply(result), "texture/normal")
    assert np.abs(img.astype(int) - (128, 128, 255)).max() <= 1
    assert result.metrics["bake_dense_share"] == 0.0


def test_tangents_follow_u_and_mirrored_charts_flip_handedness():
    flat = grid(2)
    t = vertex_tangents(flat, low_normals(flat))
    np.testing.assert_allclose(t, np.tile([1.0, 0, 0, 1.0], (flat.n_vertices, 1)), atol=1e-9)
    mirrored = flat.replace(uv=np.stack([1 - flat.uv[:, 0], flat.uv[:, 1]], 1))
    t = vertex_tangents(mirrored, low_normals(mirrored))
    np.testing.assert_allclose(t, np.tile([-1.0, 0, 0, -1.0], (flat.n_vertices, 1)), atol=1e-9)
    # bitangent = cross(N, T) * w = +y in both cases: green still points along +v
    np.testing.assert_allclose(np.cross([0, 0, 1.0], t[0, :3]) * t[0, 3], [0, 1.0, 0])


def sphere_state(tmp_path):
    from assetfactory.tasks.uv import UVOptions, uv

    low, dense = trimesh.creation.icosphere(2), trimesh.creation.icosphere(5)
    # a bumpy dense sphere: the map must carry detail the 320-face low mesh lacks
    d = np.asarray(dense.vertices)
    d = d * (1 + 0.02 * np.sin(8 * d[:, :1]) * np.sin(8 * d[:, 1:2]))
    state = make_state(tmp_path, MeshData(low.vertices, low.faces), MeshData(d, dense.faces))
    return state.apply(uv(state, UVOptions(resolution=256)))


def test_sphere_bake_recovers_the_dense_normals(tmp_path):
    state = sphere_state(tmp_path)
    result = bake(state, BakeOptions(size=256, ao_rays=4, error_samples=5000))
    m = result.metrics
    # the map must beat the low mesh's own normals by a wide margin
    assert m["bake_normal_error_mean_deg"] < 0.5 * m["bake_normal_error_low_mean_deg"]
    assert m["bake_normal_error_median_deg"] < 3.0
    assert m["bake_dense_share"] > 0.99
    assert m["bake_ao_mean"] > 0.95  # convex: hardly anything occludes
    normal = load_image(state.apply(result), "texture/normal")
    assert normal[..., 2].min() >= 128  # no texel points into the surface


def test_ambient_occlusion_darkens_a_corner():
    # a floor (y = 0) meeting a wall (x = 0): points near the wall see half the sky
    floor = trimesh.creation.box((2, 0.01, 2))
    floor.apply_translation((1, -0.005, 1))
    wall = trimesh.creation.box((0.01, 2, 2))
    wall.apply_translation((-0.005, 1, 1))
    both = trimesh.util.concatenate([floor, wall])
    scene = MeshData(both.vertices, both.faces)
    pts = np.array([[0.02, 0.0, 1.0], [1.5, 0.0, 1.0]])
    up = np.array([[0, 1.0, 0], [0, 1.0, 0]])
    ao = ambient_occlusion(scene, pts, up, rays=256, distance=0.5, seed=0)
    assert ao[1] > 0.97
    assert 0.3 < ao[0] < 0.75


def test_contract_input_unchanged_and_outputs(tmp_path):
    state = sphere_state(tmp_path)
    before = dict(state.artifacts), read_bytes(state, "mesh"), read_bytes(state, "clean_mesh")
    result = bake(state, BakeOptions(size=128, ao_rays=2, error_samples=200))
    after = dict(state.artifacts), read_bytes(state, "mesh"), read_bytes(state, "clean_mesh")
    assert after == before
    assert result.record is not None and result.record.stage == "bake"
    assert set(result.artifacts) == {"texture/normal", "texture/ao", "texture/orm"}
    out = state.apply(result)
    normal, ao, orm = (load_image(out, k) for k in ("texture/normal", "texture/ao", "texture/orm"))
    assert normal.shape == (128, 128, 3) and orm.shape == (128, 128, 3) and ao.shape == (128, 128)
    np.testing.assert_array_equal(orm[..., 0], ao)
    assert (orm[..., 1] == round(0.6 * 255)).all() and (orm[..., 2] == 0).all()
    m = result.metrics
    assert m["bake_size"] == 128 and m["bake_seconds"] > 0 and 0 <= m["bake_ao_mean"] <= 1


def test_missing_inputs_are_reported(tmp_path):
    flat = grid(2)
    with pytest.raises(MissingArtifact, match="clean_mesh") as err:
        bake(make_state(tmp_path, flat, None))
    assert "cleanup" in err.value.fix
    with pytest.raises(ProcessingError, match="no UVs"):
        bake(make_state(tmp_path, flat.replace(uv=None), flat))


def test_options_are_validated():
    for bad in ({"size": 1000}, {"ao_rays": -1}, {"max_distance": 0}, {"device": "cuda"},
                {"roughness": 2.0}):
        with pytest.raises(OptionsError):
            BakeOptions(**bad)

"""uv: one square 0-1 atlas, faces and labels untouched, attributes split along seams."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from assetfactory.core.artifacts import load_mesh, read_bytes, save_mesh
from assetfactory.core.errors import OptionsError
from assetfactory.core.mesh import MeshData
from assetfactory.core.types import AssetState, SkuSpec, StageResult
from assetfactory.tasks.uv import UVOptions, uv, uv_face_areas


def make_state(tmp_path, mesh: MeshData) -> AssetState:
    state = AssetState(sku="t", spec=SkuSpec(sku="t"), store_uri=str(tmp_path))
    return state.apply(StageResult(artifacts={"mesh": save_mesh(state, mesh)}))


def labelled_sphere() -> MeshData:
    s = trimesh.creation.icosphere(3)
    labels = (s.vertices[s.faces].mean(axis=1)[:, 0] > 0).astype(np.int32) + 1
    colors = np.full((len(s.vertices), 4), 255, np.uint8)
    colors[:, 0] = np.arange(len(s.vertices)) % 256
    return MeshData(s.vertices, s.faces, labels, vertex_colors=colors)


def unwrap(tmp_path, mesh: MeshData, options: UVOptions | None = None):
    state = make_state(tmp_path, mesh)
    result = uv(state, options)
    return state, result, load_mesh(state.apply(result), "mesh")


def test_uvs_inside_unit_square_and_faces_kept(tmp_path):
    mesh = labelled_sphere()
    _, result, out = unwrap(tmp_path, mesh)
    assert out.uv is not None and out.uv.shape == (out.n_vertices, 2)
    assert out.uv.min() >= 0.0 and out.uv.max() <= 1.0
    assert result.metrics["uv_inside_01"] is True
    assert out.n_faces == mesh.n_faces
    np.testing.assert_array_equal(out.face_labels, mesh.face_labels)
    # same triangles, in the same order, only vertices split along seams
    np.testing.assert_array_equal(out.vertices[out.faces], mesh.vertices[mesh.faces])
    assert out.n_vertices >= mesh.n_vertices
    assert result.metrics["uv_verts_out"] == out.n_vertices


def test_no_degenerate_charts_and_sane_packing(tmp_path):
    _, result, out = unwrap(tmp_path, labelled_sphere(), UVOptions(resolution=512, padding=2))
    areas = np.abs(uv_face_areas(out))
    assert areas.min() > 0
    assert result.metrics["uv_degenerate_faces"] == 0
    assert result.metrics["uv_charts"] >= 1
    assert 0.3 < result.metrics["uv_utilization"] <= 1.0
    # a sanity bound on the packing: the charts' total area fits in the unit square
    assert areas.sum() <= 1.0


def test_vertex_attributes_follow_the_split(tmp_path):
    mesh = labelled_sphere()
    _, _, out = unwrap(tmp_path, mesh)
    # every output vertex copies one input vertex: its colour must be that vertex's colour
    tree_idx = {tuple(v): i for i, v in enumerate(mesh.vertices)}
    src = np.array([tree_idx[tuple(v)] for v in out.vertices])
    np.testing.assert_array_equal(out.vertex_colors, mesh.vertex_colors[src])


def test_options_are_validated():
    with pytest.raises(OptionsError):
        UVOptions(resolution=10)
    with pytest.raises(OptionsError):
        UVOptions(padding=-1)


def test_contract_input_unchanged_and_record(tmp_path):
    state = make_state(tmp_path, labelled_sphere())
    before = dict(state.artifacts), read_bytes(state, "mesh")
    result = uv(state)
    assert (dict(state.artifacts), read_bytes(state, "mesh")) == before
    assert MeshData.from_bytes(read_bytes(state, "mesh")).uv is None
    assert result.record is not None and result.record.stage == "uv"
    assert set(result.artifacts) == {"mesh"}

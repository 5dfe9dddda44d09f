"""simplify: QEM to the triangle budget, per-face labels and vertex colours carried over."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from assetfactory.core.artifacts import load_mesh, read_bytes, save_mesh
from assetfactory.core.errors import OptionsError
from assetfactory.core.mesh import MeshData
from assetfactory.core.types import AssetState, SkuSpec, StageResult
from assetfactory.tasks.simplify import SimplifyOptions, simplify


def make_state(tmp_path, mesh: MeshData) -> AssetState:
    state = AssetState(sku="t", spec=SkuSpec(sku="t"), store_uri=str(tmp_path))
    return state.apply(StageResult(artifacts={"clean_mesh": save_mesh(state, mesh)}))


def sphere(subdiv: int, centre=(0.0, 0.0, 0.0), label: int = 0) -> MeshData:
    s = trimesh.creation.icosphere(subdiv)
    return MeshData(s.vertices + np.asarray(centre), s.faces, np.full(len(s.faces), label, np.int32))


def two_parts() -> MeshData:
    a, b = sphere(4, (-1.5, 0, 0), label=3), sphere(4, (1.5, 0, 0), label=7)
    return MeshData(np.vstack([a.vertices, b.vertices]),
                    np.vstack([a.faces, b.faces + a.n_vertices]),
                    np.concatenate([a.face_labels, b.face_labels]))


def test_reaches_the_target_closely(tmp_path):
    state = make_state(tmp_path, sphere(5))  # 20480 faces
    result = simplify(state, SimplifyOptions(target_tris=2000))
    out = load_mesh(state.apply(result), "mesh")
    assert 1900 <= out.n_faces <= 2000
    assert result.metrics["simplify_tris_in"] == 20480
    assert result.metrics["simplify_tris_out"] == out.n_faces
    assert result.metrics["simplify_verts_out"] == out.n_vertices
    assert np.all(np.isin(np.arange(out.n_vertices), out.faces))  # no unused vertices
    tm = out.to_trimesh()
    assert tm.is_watertight and tm.volume > 0.9 * (4 / 3 * np.pi)


def test_labels_follow_their_part(tmp_path):
    state = make_state(tmp_path, two_parts())
    out = load_mesh(state.apply(simplify(state, SimplifyOptions(target_tris=1000))), "mesh")
    assert out.n_faces <= 1000
    x = out.vertices[out.faces].mean(axis=1)[:, 0]
    assert np.all(out.face_labels[x < 0] == 3)
    assert np.all(out.face_labels[x > 0] == 7)


def test_vertex_colours_carried_over(tmp_path):
    mesh = sphere(4)
    colors = np.zeros((mesh.n_vertices, 4), np.uint8)
    colors[:, 3] = 255
    colors[mesh.vertices[:, 1] > 0, 0] = 255  # red top, black bottom
    state = make_state(tmp_path, mesh.replace(vertex_colors=colors))
    out = load_mesh(state.apply(simplify(state, SimplifyOptions(target_tris=500))), "mesh")
    assert out.vertex_colors is not None and len(out.vertex_colors) == out.n_vertices
    top = out.vertices[:, 1] > 0.2
    bottom = out.vertices[:, 1] < -0.2
    assert np.all(out.vertex_colors[top, 0] == 255) and np.all(out.vertex_colors[bottom, 0] == 0)


def test_under_budget_passes_through(tmp_path):
    state = make_state(tmp_path, sphere(2))
    result = simplify(state)
    assert result.artifacts["mesh"] == state.ref("clean_mesh")
    assert result.metrics["simplify_tris_out"] == 320


def test_options_are_validated():
    with pytest.raises(OptionsError):
        SimplifyOptions(target_tris=0)


def test_contract_input_unchanged_and_record(tmp_path):
    state = make_state(tmp_path, sphere(4))
    before = dict(state.artifacts), read_bytes(state, "clean_mesh")
    result = simplify(state, SimplifyOptions(target_tris=300))
    assert (dict(state.artifacts), read_bytes(state, "clean_mesh")) == before
    assert result.record is not None and result.record.stage == "simplify"
    assert set(result.artifacts) == {"mesh"}

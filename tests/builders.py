"""Builders of the test meshes and asset states many test modules use (one copy of each)."""

from __future__ import annotations

import numpy as np
import trimesh

from assetfactory.core.artifacts import save_mesh
from assetfactory.core.mesh import MeshData
from assetfactory.core.types import AssetState, SkuSpec, StageResult


def sphere(subdiv: int = 3, radius: float = 1.0, centre=(0.0, 0.0, 0.0),
           label: int = 0) -> MeshData:
    """An icosphere, every face labelled ``label``."""
    s = trimesh.creation.icosphere(subdiv, radius)
    return MeshData(s.vertices + np.asarray(centre, float), s.faces,
                    np.full(len(s.faces), label, np.int32))


def from_trimesh(tm: trimesh.Trimesh, label: int = 0) -> MeshData:
    """A trimesh mesh as MeshData, every face labelled ``label``."""
    return MeshData(tm.vertices, tm.faces, np.full(len(tm.faces), label, np.int32))


def concat(*meshes: MeshData | trimesh.Trimesh) -> MeshData:
    """One mesh holding all the given ones (trimesh meshes are converted, labels 0)."""
    return MeshData.concatenate(m if isinstance(m, MeshData) else MeshData(m.vertices, m.faces)
                                for m in meshes)


def unit_cube(split_seams: bool = False) -> MeshData:
    """A 1 m cube in the asset frame (origin at the bottom centre), faces wound outward.

    ``split_seams`` gives every face its own vertices, as a UV unwrap does along seams.
    """
    box = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    v = np.asarray(box.vertices) + [0, 0.5, 0]
    f = np.asarray(box.faces)
    if split_seams:
        v, f = v[f.reshape(-1)], np.arange(f.size).reshape(-1, 3)
    return MeshData(v, f)


def state(tmp_path, sku: str = "t", metrics=None, **spec) -> AssetState:
    """An empty asset state storing its artifacts under ``tmp_path``."""
    return AssetState(sku=sku, spec=SkuSpec(sku=sku, **spec), store_uri=str(tmp_path),
                      metrics=metrics or {})


def state_with_mesh(tmp_path, mesh: MeshData, key: str = "mesh", metrics=None,
                    **spec) -> AssetState:
    """An asset state holding ``mesh`` as artifact ``key`` (dense_mesh, clean_mesh, mesh)."""
    st = state(tmp_path, metrics=metrics, **spec)
    return st.apply(StageResult(artifacts={key: save_mesh(st, mesh)}))

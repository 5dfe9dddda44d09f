"""catalog_from_renders: a labelled render set (view_*.png + cameras.json) as a catalog row."""

from __future__ import annotations

import json

import numpy as np
import pytest
import trimesh
from PIL import Image

from assetfactory.catalog.input import read_catalog
from assetfactory.catalog.renders import catalog_from_renders


def render_set(folder, labels=("front", "left", "back")):
    folder.mkdir(parents=True)
    views = []
    for i, label in enumerate(labels):
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(folder / f"view_{label}.png")
        views.append({"label": label, "azimuth_deg": 90.0 * i, "elevation_deg": 15.0,
                      "distance": 2.5})
    (folder / "cameras.json").write_text(json.dumps({"fov_y_deg": 40.0, "views": views}))
    return folder


def test_renders_become_a_valid_row_with_view_directions(tmp_path):
    src = render_set(tmp_path / "renders")
    mesh = tmp_path / "box.obj"
    trimesh.creation.box().export(mesh)
    path = catalog_from_renders(src, tmp_path / "cat", "box-1", mesh)
    parse = read_catalog(path)
    assert not parse.errors, parse.errors
    (spec,) = parse.specs
    assert spec.sku == "box-1" and spec.mesh_uri == "models/box.obj"
    assert [(i.view, i.azimuth_deg, i.elevation_deg) for i in spec.images] == [
        ("front", 0.0, 15.0), ("left", 90.0, 15.0), ("back", 180.0, 15.0)]
    # copies inside the catalog folder, byte for byte
    for i in spec.images:
        copy = tmp_path / "cat" / i.uri
        assert copy.read_bytes() == (src / f"view_{i.view}.png").read_bytes()
    assert spec.metadata["camera_distance"] == "2.5" and spec.metadata["fov_deg"] == "40.0"


def test_labels_only_rows_carry_no_camera_values(tmp_path):
    src = render_set(tmp_path / "renders")
    parse = read_catalog(catalog_from_renders(src, tmp_path / "cat", "box-1", labels_only=True))
    assert not parse.errors, parse.errors
    (spec,) = parse.specs
    # the parser reads the azimuth from the label; the elevation stays unknown
    assert [(i.view, i.azimuth_deg, i.elevation_deg) for i in spec.images] == [
        ("front", 0.0, None), ("left", 270.0, None), ("back", 180.0, None)]
    assert not spec.metadata.get("camera_distance") and not spec.metadata.get("fov_deg")


def test_missing_cameras_or_view_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="cameras.json"):
        catalog_from_renders(tmp_path, tmp_path / "cat", "x")
    src = render_set(tmp_path / "renders")
    (src / "view_left.png").unlink()
    with pytest.raises(FileNotFoundError, match="view_left.png"):
        catalog_from_renders(src, tmp_path / "cat2", "x")

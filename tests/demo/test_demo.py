"""The demo catalog: products, photos, catalog.csv and ground truth are consistent."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from assetfactory.core.camera import orbit_camera
from assetfactory.core.mesh import MeshData
from assetfactory.demo import BROKEN_SKU, make_demo_catalog
from assetfactory.demo.products import CATALOG, _merged, build_product


@pytest.fixture(scope="module")
def demo(tmp_path_factory, renderer) -> Path:
    return make_demo_catalog(tmp_path_factory.mktemp("demo") / "cat")


@pytest.fixture(scope="module")
def rows(demo) -> list[dict]:
    with open(demo, newline="") as f:
        return list(csv.DictReader(f))


def _entries(cell: str) -> list[tuple[str, str, float, float]]:
    out = []
    for item in cell.split(";"):
        view, rest = item.split("=", 1)
        path, angles = rest.split("@")
        az, el = (float(a) for a in angles.split(","))
        out.append((view, path, az, el))
    return out


def test_catalog_rows(demo, rows):
    assert list(rows[0])[:8] == ["sku", "title", "category", "images", "width_mm", "height_mm",
                                 "depth_mm", "material"]
    assert len(rows) == 13
    assert rows[-1]["sku"] == BROKEN_SKU
    good = rows[:-1]
    assert len({r["sku"] for r in good}) == 12
    counts = [len(_entries(r["images"])) for r in good]
    assert sum(c == 1 for c in counts) >= 5
    assert sum(4 <= c <= 8 for c in counts) >= 5
    for r in rows:
        assert float(r["fov_deg"]) == 30 and float(r["camera_distance"]) == 2.5
        assert all(float(r[k]) > 0 for k in ("width_mm", "height_mm", "depth_mm"))


def test_photos_decode_and_look_like_product_shots(demo, rows):
    for r in rows[:-1]:
        for view, rel, _, _ in _entries(r["images"]):
            with Image.open(demo.parent / rel) as im:
                arr = np.asarray(im)
            assert arr.shape[:2] == (512, 512), rel
            assert view in rel
            rgb = arr[..., :3].astype(int)
            if arr.shape[2] == 4:          # transparent background
                assert arr[0, 0, 3] == 0 and arr[..., 3].max() == 255
                obj = arr[..., 3] > 127
            else:                          # opaque white background
                assert (rgb[0, 0] == 255).all() and (rgb[-1, -1] == 255).all()
                obj = (rgb < 245).any(-1)
            assert 0.03 < obj.mean() < 0.8, rel
            assert len(np.unique(rgb[obj].reshape(-1, 3), axis=0)) > 20   # textured, shaded
    assert any(Image.open(demo.parent / _entries(r["images"])[0][1]).mode == "RGBA"
               for r in rows[:-1])
    assert any(Image.open(demo.parent / _entries(r["images"])[0][1]).mode == "RGB"
               for r in rows[:-1])


def test_broken_row_is_a_truncated_png(demo, rows):
    (_, rel, _, _), = _entries(rows[-1]["images"])
    data = (demo.parent / rel).read_bytes()
    assert data.startswith(b"\x89PNG")
    with pytest.raises(OSError), Image.open(demo.parent / rel) as im:
        im.load()


def test_ground_truth(demo, rows):
    truth = json.loads((demo.parent / "ground_truth.json").read_text())
    assert set(truth) == {r["sku"] for r in rows}
    for r in rows:
        t = truth[r["sku"]]
        assert t["volume_m3"] > 0
        assert t["watertight"] is True
        assert t["dims_mm"] == pytest.approx([float(r["width_mm"]), float(r["height_mm"]),
                                              float(r["depth_mm"])], abs=0.11)
        box = np.prod(t["dims_mm"]) * 1e-9
        assert t["volume_m3"] < box                        # a shape inside its bounding box
        assert [v["view"] for v in t["views"]][:1] == [_entries(r["images"])[0][0]]
    assert truth[BROKEN_SKU]["broken"] is True
    assert (demo.parent / "truth" / f"{rows[0]['sku']}.glb").stat().st_size > 1000


@pytest.mark.parametrize("index", range(len(CATALOG)))
def test_products_are_closed_and_in_the_product_frame(index):
    p = build_product(index)
    m = p.mesh
    lo, hi = m.bounds()
    assert lo[1] == pytest.approx(0.0, abs=1e-9)                     # origin at the bottom
    assert (lo + hi)[[0, 2]] == pytest.approx([0.0, 0.0], abs=1e-9)  # centred in X and Z
    assert 0.05 < (hi - lo).max() < 1.5                              # real-world metres
    assert m.uv is not None and m.uv.min() >= 0 and m.uv.max() <= 1
    assert p.texture.shape[2] == 3 and p.texture.std() > 10          # busy enough to judge
    assert len(np.unique(m.face_labels)) == len(p.part_names)
    for part in p.parts:                    # each part alone, seams merged, is a closed shell
        shell = _merged(part.vertices, part.faces)
        assert shell.is_watertight and shell.is_winding_consistent
        assert shell.volume > 0
    truth = p.truth()
    assert truth["watertight"]
    if truth["volume_method"] == "sum_of_parts":
        assert truth["volume_m3"] == pytest.approx(
            sum(_merged(q.vertices, q.faces).volume for q in p.parts))


def test_glb_round_trip():
    import trimesh

    from assetfactory.demo import to_glb

    p = build_product(0)
    scene = trimesh.load(trimesh.util.wrap_as_stream(to_glb(p)), file_type="glb")
    (geom,) = scene.geometry.values()
    assert len(geom.faces) == p.mesh.n_faces
    assert geom.visual.uv is not None
    assert np.allclose(geom.visual.uv, p.mesh.uv, atol=1e-6)


def test_photo_matches_the_factory_camera_assumption(demo, rows, renderer):
    """Normalised product (largest extent 1, bbox centre at origin), orbit camera at 2.5."""
    sku = "mug-01"
    index = [c[0] for c in CATALOG].index(sku)
    p = build_product(index)
    lo, hi = p.mesh.bounds()
    T = np.eye(4) / (hi - lo).max()
    T[:3, 3] = -(lo + hi) / 2 / (hi - lo).max()
    T[3, 3] = 1.0
    norm = p.mesh.transformed(T)
    row = next(r for r in rows if r["sku"] == sku)
    for view, rel, az, el in _entries(row["images"])[:3]:
        cam = orbit_camera(view, az, el, 2.5, fov_y_deg=30.0, size=512)
        expected = renderer.mask(MeshData(norm.vertices, norm.faces), cam)
        photo = np.asarray(Image.open(demo.parent / rel))
        seen = (photo[..., :3].astype(int) < 250).any(-1)
        assert (expected != seen).mean() < 0.01, view


def test_idempotent_and_n(tmp_path, renderer):
    a = make_demo_catalog(tmp_path / "a", n=3, seed=1)

    def digest(root: Path) -> dict:
        return {str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest()
                for f in sorted(root.rglob("*")) if f.is_file()}

    first = digest(a.parent)
    assert make_demo_catalog(tmp_path / "a", n=3, seed=1) == a
    assert digest(a.parent) == first
    b = make_demo_catalog(tmp_path / "b", n=3, seed=1)
    assert digest(b.parent) == first
    with open(a, newline="") as f:
        assert [r["sku"] for r in csv.DictReader(f)] == ["mug-01", "bottle-01", BROKEN_SKU]
    with pytest.raises(ValueError):
        make_demo_catalog(tmp_path / "c", n=1)

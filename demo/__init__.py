"""The demo catalog: procedurally modelled, textured products, photographed headlessly.

``make_demo_catalog`` writes everything ``assetfactory demo`` needs into one folder:

* ``photos/<sku>/<view>.png`` - 512 px product photos on white (some RGBA with transparency);
* ``catalog.csv`` - ``sku,title,category,images,width_mm,height_mm,depth_mm,material`` plus
  ``fov_deg`` and ``camera_distance`` (the shoot's camera; the factory's defaults);
* ``ground_truth.json`` - per SKU volume, dimensions, views, watertightness;
* ``truth/<sku>.glb`` - each true product, textured, for eyeballing.

The last row is deliberately broken (a truncated PNG) so that the demo shows an error row.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path

import numpy as np

from ..core.artifacts import encode_png
from .products import CATALOG, Product, build_product
from .shoot import DISTANCE, FOV_DEG, shoot

log = logging.getLogger(__name__)

COLUMNS = ("sku", "title", "category", "images", "width_mm", "height_mm", "depth_mm",
           "material", "fov_deg", "camera_distance")
BROKEN_SKU = "broken-01"

__all__ = ["BROKEN_SKU", "COLUMNS", "make_demo_catalog", "to_glb"]


def make_demo_catalog(out_dir: Path, n: int = 13, seed: int = 0) -> Path:
    """Write the demo catalog to ``out_dir``: ``n - 1`` good SKUs and one broken last row.

    Idempotent: the same seed gives the same bytes on the same renderer. Returns the path of
    ``catalog.csv``.
    """
    if not 2 <= n <= len(CATALOG) + 1:
        raise ValueError(f"n must be between 2 and {len(CATALOG) + 1} (got {n})")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows, truth = [], {}
    for i in range(n - 1):
        product = build_product(i, seed)
        rows.append(_write_product(out, product, product.sku))
        truth[product.sku] = product.truth()
        log.info("demo: %s photographed from %d views", product.sku, len(product.views))
    broken = build_product((n - 1) % len(CATALOG), seed)
    rows.append(_write_product(out, broken, BROKEN_SKU, truncate=True))
    truth[BROKEN_SKU] = {**broken.truth(), "views": broken.truth()["views"][:1], "broken": True,
                         "shape_of": broken.sku}
    csv_path = out / "catalog.csv"
    _write_if_changed(csv_path, _csv_bytes(rows))
    _write_if_changed(out / "ground_truth.json",
                      json.dumps(truth, indent=1, sort_keys=True).encode())
    log.info("demo: wrote %d SKUs (%d good, 1 broken) to %s", len(rows), len(rows) - 1, out)
    return csv_path


def _write_product(out: Path, product: Product, sku: str, truncate: bool = False) -> dict:
    """Photos (and the truth GLB) of one product; its catalog row."""
    entries = []
    views = product.views[:1] if truncate else product.views
    for label, az, el in views:
        img = shoot(product.mesh, product.texture, label, az, el, rgba=product.rgba_photos)
        data = encode_png(img)
        if truncate:   # a download cut short: the PNG header is fine, the image data is not
            data = data[: len(data) // 3]
        rel = f"photos/{sku}/{label}.png"
        _write_if_changed(out / rel, data)
        entries.append(f"{label}={rel}@{_num(az)},{_num(el)}")
    if not truncate:
        _write_if_changed(out / "truth" / f"{sku}.glb", to_glb(product))
    ext = np.ptp(product.mesh.vertices, axis=0) * 1000.0
    return {"sku": sku, "title": product.title + (" (corrupt photo)" if truncate else ""),
            "category": product.category, "images": ";".join(entries),
            "width_mm": f"{ext[0]:.1f}", "height_mm": f"{ext[1]:.1f}",
            "depth_mm": f"{ext[2]:.1f}", "material": product.material,
            "fov_deg": _num(FOV_DEG), "camera_distance": _num(DISTANCE)}


def to_glb(product: Product) -> bytes:
    """The true product as a textured GLB (trimesh flips V for glTF)."""
    import trimesh
    from PIL import Image

    mesh = product.mesh
    material = trimesh.visual.material.PBRMaterial(
        baseColorTexture=Image.fromarray(product.texture), metallicFactor=0.0,
        roughnessFactor=0.8)
    visual = trimesh.visual.TextureVisuals(uv=mesh.uv, material=material)
    tm = trimesh.Trimesh(mesh.vertices, mesh.faces, vertex_normals=mesh.vertex_normals,
                         visual=visual, process=False)
    return trimesh.Scene({product.sku: tm}).export(file_type="glb")


def _csv_bytes(rows: list[dict]) -> bytes:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue().encode()


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _write_if_changed(path: Path, data: bytes) -> None:
    """Atomic write that leaves an identical file untouched (idempotent re-runs)."""
    if path.exists() and path.read_bytes() == data:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)

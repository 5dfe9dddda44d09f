"""A one-row catalog from a labelled render set: photos with known cameras.

A turntable rig or a renderer that writes ``view_<label>.png`` images beside a
``cameras.json`` (``fov_y_deg`` and one entry per view under ``views`` or ``cameras``, each
with ``label``, ``azimuth_deg``, ``elevation_deg`` and ``distance``) describes one product shot
from known directions. ``catalog_from_renders`` copies the images (and an optional mesh) into a
catalog folder, as the catalog rules require (paths inside the catalog's folder), and writes
the CSV row: images labelled with their view direction, ``camera_distance`` and ``fov_deg``.
With ``labels_only`` the row says no more than a merchant's catalog usually does: each photo's
view label, without azimuth, elevation, distance or field of view.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

MESH_SUFFIXES = (".glb", ".gltf", ".obj", ".ply", ".stl")


def catalog_from_renders(views_dir: Path, root: Path, sku: str,
                         mesh: Path | None = None, labels_only: bool = False) -> Path:
    """Write ``root/catalog.csv`` (one row, ``sku``) for the renders in ``views_dir``.

    ``mesh``: a mesh file, or a folder holding one (a glTF with its buffers and textures), to
    give as the row's ``mesh_uri``. ``labels_only``: write view labels only (no camera
    values). Raises FileNotFoundError when ``views_dir`` has no
    ``cameras.json`` or a view's image is missing.
    """
    views_dir, root = Path(views_dir), Path(root)
    cams_path = views_dir / "cameras.json"
    if not cams_path.is_file():
        raise FileNotFoundError(f"no cameras.json in {views_dir}")
    cams = json.loads(cams_path.read_text())
    views = cams.get("views") or cams["cameras"]
    (root / "photos").mkdir(parents=True, exist_ok=True)
    images = []
    for v in views:
        src = views_dir / f"view_{v['label']}.png"
        if not src.is_file():
            raise FileNotFoundError(f"{src} (listed in {cams_path}) not found")
        name = f"{sku}_{v['label']}.png"
        shutil.copy(src, root / "photos" / name)
        pose = "" if labels_only else f"@{v['azimuth_deg']},{v['elevation_deg']}"
        images.append(f"{v['label']}=photos/{name}{pose}")
    mesh_uri = ""
    if mesh is not None:
        mesh = Path(mesh)
        if mesh.is_dir():
            shutil.copytree(mesh, root / "models" / sku, dirs_exist_ok=True)
            mesh_uri = next(f"models/{sku}/{p.name}" for p in sorted(mesh.iterdir())
                            if p.suffix.lower() in MESH_SUFFIXES)
        else:
            (root / "models").mkdir(exist_ok=True)
            shutil.copy(mesh, root / "models" / mesh.name)
            mesh_uri = f"models/{mesh.name}"
    path = root / "catalog.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["sku", "images", "mesh_uri", "camera_distance", "fov_deg"])
        if labels_only:
            w.writerow([sku, "; ".join(images), mesh_uri, "", ""])
        else:
            w.writerow([sku, "; ".join(images), mesh_uri, views[0]["distance"],
                        cams["fov_y_deg"]])
    return path

"""Small real catalogs for flow tests: boxes as OBJ meshes through the `mesh` backend."""

from __future__ import annotations

import csv
from pathlib import Path

#: Cheap settings: web profile, 128 px maps, so a box converts in about a second.
FAST = {"uv": {"resolution": 128}, "bake": {"size": 128, "ao_rays": 4, "error_samples": 2000},
        "texture": {"size": 128}, "export": {"texture_size": 128, "poster_size": 64},
        "simplify": {"target_tris": 200}}
PROFILE = "web"


def box_obj(path: Path, size: tuple[float, float, float]) -> Path:
    """A closed box as OBJ text (12 triangles), ``size`` in metres."""
    x, y, z = (s / 2 for s in size)
    verts = [(-x, -y, -z), (x, -y, -z), (x, y, -z), (-x, y, -z),
             (-x, -y, z), (x, -y, z), (x, y, z), (-x, y, z)]
    quads = [(1, 4, 3, 2), (5, 6, 7, 8), (1, 2, 6, 5), (2, 3, 7, 6), (3, 4, 8, 7), (4, 1, 5, 8)]
    lines = [f"v {a:.4f} {b:.4f} {c:.4f}" for a, b, c in verts]
    for a, b, c, d in quads:
        lines += [f"f {a} {b} {c}", f"f {a} {c} {d}"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def write_catalog(path: Path, rows: list[dict]) -> Path:
    """A CSV catalog of mesh rows: {"sku", "mesh_uri", optional "material"}."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["sku", "mesh_uri", "material"])
        writer.writeheader()
        for row in rows:
            writer.writerow({"material": "plastic", **row})
    return path

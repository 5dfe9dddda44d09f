"""Placement: the world -> asset transform (+Y up, front +Z, metres, origin at the bottom
centre) and how its scale was chosen."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..core.errors import ProcessingError
from ..core.mesh import MeshData

#: Rotation taking a Z-up, front -Y source (Blender, most CAD) to +Y up, front +Z.
Z_UP_TO_Y_UP = np.array([[1.0, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0], [0, 0, 0, 1]])


@dataclass(frozen=True)
class Placement:
    """World -> asset transform and how its scale was chosen."""

    matrix: np.ndarray
    scale: float
    scale_source: str                      # "catalog" | "source" | "assumed"
    dims_error: tuple[float | None, float | None, float | None]

    def to_json(self) -> dict:
        return {"matrix": self.matrix.tolist(), "scale": self.scale,
                "scale_source": self.scale_source, "dims_error": list(self.dims_error)}


def catalog_scale(extent: np.ndarray, dims_m) -> tuple[float, tuple] | None:
    """Uniform scale fitting the known catalog dimensions (least squares in log space), with
    the relative mismatch per axis; None when no usable dimension is given."""
    axes = [i for i, d in enumerate(dims_m) if d is not None and d > 0 and extent[i] > 0]
    if not axes:
        return None
    logs = [math.log(dims_m[i]) - math.log(extent[i]) for i in axes]
    s = math.exp(sum(logs) / len(logs))
    err = tuple(float(abs(s * extent[i] - dims_m[i]) / dims_m[i]) if i in axes else None
                for i in range(3))
    return s, err


def place(mesh: MeshData, dims_m, source_extent: float | None, up_axis: str = "y",
          default_extent_m: float = 0.3) -> Placement:
    """Rotate to +Y up (``up_axis`` "z": a Z-up source), scale to metres (the catalog's
    dimensions ``dims_m`` when given, else the source's known largest extent, else
    ``default_extent_m``), then put the bottom centre at the origin."""
    R = Z_UP_TO_Y_UP if up_axis == "z" else np.eye(4)
    v = mesh.vertices @ R[:3, :3].T
    lo, hi = v.min(0), v.max(0)
    extent = hi - lo
    largest = float(extent.max())
    if largest <= 0:
        raise ProcessingError(
            "the cleaned mesh has no extent (all vertices coincide)",
            "check the generator output for this SKU; re-run generate with more or better views")
    fitted = catalog_scale(extent, dims_m)
    if fitted is not None:
        s, err, src = float(fitted[0]), fitted[1], "catalog"
    elif isinstance(source_extent, (int, float)) and source_extent > 0:
        s, err, src = float(source_extent) / largest, (None, None, None), "source"
    else:
        s, err, src = default_extent_m / largest, (None, None, None), "assumed"
    bottom_centre = np.array([(lo[0] + hi[0]) / 2, lo[1], (lo[2] + hi[2]) / 2])
    S = np.eye(4)
    S[:3, :3] *= s
    S[:3, 3] = -s * bottom_centre
    return Placement(S @ R, float(s), src, err)

"""materials: a small PBR material table and the rule that picks one material per part.

Why a table and not a learned estimate: photos taken under one light cannot separate albedo from
gloss, and a wrong metal is far more visible in a viewer than a slightly wrong roughness. So the
factory ships a few well-known (metallic, roughness) pairs (values in the range the Khronos PBR
guides and Substance's material references give) and chooses among them per part:

1. the catalog's ``material`` column, when it names a material we know (``"steel"``, ``"oak,
   cotton"``...), restricts the candidates; several hints mean several materials, one per part;
2. the part's colour statistics (saturation, value, contrast, hue) pick the closest candidate's
   prototype. Without a hint, a prior favours plastic (the most common product surface) and never
   picks glass (colour cannot tell glass from a grey plastic).

The result is a plain dict per part, written by ``texture`` as the ``materials`` artifact and read
by ``export`` (one glTF material per distinct material, named ``<asset>-<material>``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Material:
    """One row of the table: PBR metal/rough factors and the colour prototype used to guess it.

    The prototype (saturation, value, contrast: std of value) is in sRGB 0-1; ``hue`` (degrees)
    is only used when not None (wood and paper are brownish; most materials come in any hue).
    ``prior`` is the weight of the material when nothing hints at it.
    """

    name: str
    metallic: float
    roughness: float
    saturation: float
    value: float
    contrast: float
    hue: float | None = None
    prior: float = 1.0


MATERIALS: dict[str, Material] = {m.name: m for m in (
    Material("metal", 1.0, 0.35, 0.06, 0.62, 0.20, prior=0.0),
    Material("plastic", 0.0, 0.45, 0.45, 0.60, 0.06, prior=2.0),
    Material("fabric", 0.0, 0.90, 0.25, 0.45, 0.12),
    Material("wood", 0.0, 0.70, 0.60, 0.50, 0.13, hue=30.0),
    Material("glass", 0.0, 0.05, 0.05, 0.70, 0.10, prior=0.0),
    Material("ceramic", 0.0, 0.25, 0.06, 0.88, 0.05),
    Material("rubber", 0.0, 0.85, 0.08, 0.12, 0.04),
    Material("leather", 0.0, 0.60, 0.45, 0.35, 0.08, hue=25.0, prior=0.5),
    Material("paper", 0.0, 0.95, 0.35, 0.72, 0.06, hue=35.0, prior=0.5),
)}

#: Catalog words -> table rows.
ALIASES: dict[str, str] = {
    **{w: "metal" for w in ("metal", "metallic", "steel", "stainless", "aluminium", "aluminum",
                            "iron", "chrome", "brass", "copper", "bronze", "gold", "silver",
                            "titanium", "zinc", "tin")},
    **{w: "plastic" for w in ("plastic", "abs", "pvc", "polypropylene", "polycarbonate",
                              "acrylic", "vinyl", "resin", "nylon", "melamine", "pp", "pe")},
    **{w: "fabric" for w in ("fabric", "textile", "cloth", "cotton", "wool", "linen",
                             "polyester", "velvet", "felt", "canvas", "denim", "silk")},
    **{w: "wood" for w in ("wood", "wooden", "oak", "walnut", "pine", "beech", "birch", "maple",
                           "bamboo", "teak", "timber", "plywood", "mdf")},
    **{w: "glass" for w in ("glass", "crystal")},
    **{w: "ceramic" for w in ("ceramic", "porcelain", "stoneware", "earthenware", "terracotta",
                              "china")},
    **{w: "rubber" for w in ("rubber", "silicone", "latex", "neoprene")},
    **{w: "leather" for w in ("leather", "suede")},
    **{w: "paper" for w in ("paper", "cardboard", "carton", "paperboard")},
}

DEFAULT = "plastic"
#: A part needs this many coloured texels before its statistics decide anything.
MIN_TEXELS = 16
_SCALE = {"saturation": 0.25, "value": 0.25, "contrast": 0.08, "hue": 40.0}


def parse_hint(hint: str | None) -> list[str]:
    """Table rows named by a catalog ``material`` cell, in order, without repeats."""
    out: list[str] = []
    for word in re.findall(r"[a-z]+", (hint or "").lower()):
        name = ALIASES.get(word)
        if name and name not in out:
            out.append(name)
    return out


@dataclass(frozen=True)
class ColourStats:
    """Colour statistics of one part (sRGB 0-1): mean HSV saturation and value, contrast
    (std of value) and the circular mean hue in degrees (None when nearly grey)."""

    saturation: float
    value: float
    contrast: float
    hue: float | None
    texels: int


def colour_stats(srgb: np.ndarray) -> ColourStats:
    """Statistics of (N, 3) sRGB colours in 0-1."""
    c = np.asarray(srgb, np.float64).reshape(-1, 3)
    if len(c) == 0:
        return ColourStats(0.0, 0.0, 0.0, None, 0)
    mx, mn = c.max(1), c.min(1)
    sat = np.where(mx > 1e-6, (mx - mn) / np.maximum(mx, 1e-6), 0.0)
    hue = _hue_deg(c, mx, mn)
    chroma = mx - mn
    weight = chroma.sum()
    mean_hue = None
    if weight > 1e-6 and float(sat.mean()) > 0.1:
        ang = np.radians(hue)
        mean_hue = math.degrees(math.atan2((np.sin(ang) * chroma).sum(),
                                           (np.cos(ang) * chroma).sum())) % 360.0
    return ColourStats(float(sat.mean()), float(mx.mean()), float(mx.std()), mean_hue, len(c))


def part_colour_stats(colour: np.ndarray, face_part: np.ndarray, texel_face: np.ndarray,
                      observed: np.ndarray) -> dict[int, ColourStats]:
    """``colour_stats`` of every part's texels from their linear colours, in one numba pass
    (``_materials_numba.part_sums``), as ``colour_stats`` of ``geometry.colour.linear_to_srgb``
    of each part's observed texels (all of its texels when none was observed) gives them, up
    to the order of the sums. ``face_part``: (M,) part of each face; ``texel_face``: (T,) face
    of each texel; parts without texels are left out.

    Why: the sRGB copy of every texel and a boolean selection per part cost ~0.5-1 s at
    2048 px where the statistics need one pass."""
    from ._materials_numba import part_sums

    labels, face_index = np.unique(np.asarray(face_part, np.int64), return_inverse=True)
    part = np.ascontiguousarray(face_index.reshape(-1)[np.asarray(texel_face, np.int64)],
                                np.int64)
    sums = part_sums(np.ascontiguousarray(colour, np.float32), part,
                     np.ascontiguousarray(observed, np.bool_), len(labels))
    out: dict[int, ColourStats] = {}
    for k, label in enumerate(labels):
        if sums[k, 1, 0] == 0:
            continue
        n, sat, value, dev, chroma, sin, cos = sums[k, 0 if sums[k, 0, 0] > 0 else 1]
        mean_sat = sat / n
        hue = None
        if chroma > 1e-6 and mean_sat > 0.1:
            hue = math.degrees(math.atan2(sin, cos)) % 360.0
        out[int(label)] = ColourStats(float(mean_sat), float(value / n), float(math.sqrt(dev / n)),
                                      hue, int(n))
    return out


def _hue_deg(c: np.ndarray, mx: np.ndarray, mn: np.ndarray) -> np.ndarray:
    d = np.maximum(mx - mn, 1e-12)
    r, g, b = c[:, 0], c[:, 1], c[:, 2]
    h = np.where(mx == r, ((g - b) / d) % 6, np.where(mx == g, (b - r) / d + 2, (r - g) / d + 4))
    return h * 60.0


def score(material: Material, stats: ColourStats) -> float:
    """Log-likelihood-like score of a material for a part's colours (higher is better)."""
    z = ((stats.saturation - material.saturation) / _SCALE["saturation"]) ** 2
    z += ((stats.value - material.value) / _SCALE["value"]) ** 2
    z += ((stats.contrast - material.contrast) / _SCALE["contrast"]) ** 2
    if material.hue is not None:
        if stats.hue is None:
            z += 2.0
        else:
            dh = abs((stats.hue - material.hue + 180.0) % 360.0 - 180.0)
            z += (dh / _SCALE["hue"]) ** 2
    return -0.5 * z


def choose(stats: ColourStats, hints: list[str]) -> tuple[Material, str]:
    """(material, source) for one part; source is "hint", "hint+colour", "colour" or "default"."""
    if len(hints) == 1:
        return MATERIALS[hints[0]], "hint"
    if stats.texels < MIN_TEXELS:
        return MATERIALS[hints[0] if hints else DEFAULT], "hint" if hints else "default"
    if hints:
        best = max(hints, key=lambda n: score(MATERIALS[n], stats))
        return MATERIALS[best], "hint+colour"
    cands = [m for m in MATERIALS.values() if m.prior > 0]
    best = max(cands, key=lambda m: score(m, stats) + math.log(m.prior))
    return best, "colour"


def assign(part_colours: dict[int, np.ndarray], hint: str | None, asset_name: str) -> dict:
    """Choose a material per part; return the ``materials`` artifact's JSON.

    ``part_colours`` maps part id -> (N, 3) sRGB 0-1 colours of the part's observed texels.
    The JSON maps ``str(part)`` -> {material, metallic, roughness, name, source, stats}.
    """
    return assign_stats({part: colour_stats(c) for part, c in part_colours.items()}, hint,
                        asset_name)


def assign_stats(part_stats: dict[int, ColourStats], hint: str | None, asset_name: str) -> dict:
    """``assign`` from each part's ``ColourStats`` (``colour_stats``, ``part_colour_stats``)."""
    hints = parse_hint(hint)
    parts: dict[str, dict] = {}
    for part in sorted(part_stats):
        stats = part_stats[part]
        mat, source = choose(stats, hints)
        parts[str(part)] = {
            "material": mat.name, "metallic": mat.metallic, "roughness": mat.roughness,
            "name": f"{asset_name}-{mat.name}", "source": source,
            "stats": {"saturation": round(stats.saturation, 4), "value": round(stats.value, 4),
                      "contrast": round(stats.contrast, 4),
                      "hue": None if stats.hue is None else round(stats.hue, 1),
                      "texels": stats.texels},
        }
    return {"hint": hint or "", "hints": hints, "parts": parts}


def asset_name(sku: str) -> str:
    """A name matching ``[a-z][a-z0-9_-]*`` derived from the SKU (viewers show it)."""
    name = re.sub(r"[^a-z0-9_-]+", "-", sku.lower()).strip("-_")
    name = re.sub(r"^[^a-z]+", "", name)
    return name or "asset"

"""Read an OBJ's materials (its MTL libraries) onto the glTF material model.

Why by hand: trimesh reads OBJ geometry, UVs and the ``usemtl`` grouping well, but of the MTL it
keeps only a diffuse colour and image, loses names with spaces and map options, and knows
nothing of cut-outs (``d``, ``map_d``), normal maps, emission or the PBR extension (``Pr``,
``Pm``). So trimesh gives the geometry per material and this module turns each named MTL
material into a ``SourceMaterial``:

- ``Kd`` / ``map_Kd`` -> base colour (``-o``/``-s`` map options become a texture transform,
  ``-clamp on`` clamps); ``d`` (or ``Tr`` = 1 - d, when strictly between 0 and 1: ``Tr 1`` is
  written by many exporters for "opaque") -> alpha, BLEND below 1;
- ``map_d``: its luminance becomes the base colour's alpha (a new RGBA image); MASK when the
  alpha is (nearly) binary, as cut-outs are, else BLEND;
- ``norm`` / ``map_Bump`` / ``bump`` -> normal map when the image is a tangent-space normal
  map (blue-dominant); a grey height map has no glTF equivalent and is skipped;
- ``Ke`` / ``map_Ke`` -> emissive; ``Pr``/``Pm`` (and their maps) -> roughness / metallic, else
  roughness from the Phong exponent ``Ns`` (sqrt of the Beckmann-equivalent alpha);
- texture file names may contain spaces, sit in relative folders and use Windows separators.
"""

from __future__ import annotations

import logging
import math
import re
import shlex

import numpy as np

from ..core.appearance import CLAMP, REPEAT, SourceImage, SourceMaterial, TextureSlot, decode_image
from ..core.errors import InputError

log = logging.getLogger(__name__)

_MAP_OPTIONS = {"-blendu": 1, "-blendv": 1, "-bm": 1, "-boost": 1, "-cc": 1, "-clamp": 1,
                "-imfchan": 1, "-mm": 2, "-o": 3, "-s": 3, "-t": 3, "-texres": 1}


def mtl_libraries(obj_text: str) -> list[str]:
    """The MTL file names an OBJ declares (a name may contain spaces)."""
    out = []
    for line in obj_text.splitlines():
        if line.startswith("mtllib"):
            name = line[6:].strip()
            if name:
                out.append(name.replace("\\", "/"))
    return out


def parse_map(args: str) -> tuple[str, dict]:
    """(file name, options) of a ``map_*`` statement; the name is everything after the
    options, spaces included."""
    args = args.replace("\\", "/")  # Windows separators (shlex would eat them)
    try:
        tokens = shlex.split(args, posix=True)
    except ValueError:
        tokens = args.split()
    opts: dict = {}
    i = 0
    while i < len(tokens) and tokens[i].lower() in _MAP_OPTIONS:
        key = tokens[i].lower()
        n = _MAP_OPTIONS[key]
        vals = []
        j = i + 1
        while j < len(tokens) and len(vals) < n:
            try:
                vals.append(float(tokens[j]))
            except ValueError:
                if key in ("-clamp", "-blendu", "-blendv", "-imfchan"):
                    vals.append(tokens[j])
                else:
                    break
            j += 1
        opts[key] = vals
        i = j
    name = " ".join(tokens[i:]) if i < len(tokens) else ""
    return name.replace("\\", "/"), opts


def parse_mtl(text: str) -> dict[str, dict]:
    """{material name: {statement: value}} (maps as (file, options))."""
    mats: dict[str, dict] = {}
    cur: dict | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, rest = line.partition(" ")
        key, rest = key.lower(), rest.strip()
        if key == "newmtl":
            cur = mats.setdefault(rest, {})
            continue
        if cur is None:
            continue
        if key.startswith("map_") or key in ("bump", "norm", "disp", "decal", "refl"):
            cur[key] = parse_map(rest)
        else:
            try:
                cur[key] = [float(x) for x in rest.split()]
            except ValueError:
                cur[key] = rest
    return mats


class _Images:
    """Loads each texture file once; images are indexed in load order."""

    def __init__(self, resolve, file: str) -> None:
        self.resolve, self.file = resolve, file
        self.images: list[SourceImage] = []
        self._index: dict[str, int] = {}
        self._pixels: dict[int, np.ndarray] = {}

    def load(self, name: str, what: str) -> int | None:
        from .gltf_reader import checked_image

        if not name:
            return None
        if name in self._index:
            return self._index[name]
        try:
            data = self.resolve(name)
        except InputError as exc:
            raise InputError(f"{self.file}: the {what} texture {name!r} of the MTL is missing "
                             f"({exc.message})", "keep the OBJ, its MTL and its textures in one "
                             "folder (relative paths as the MTL writes them) and point mesh_uri "
                             "at the OBJ") from None
        self.images.append(checked_image(data, name, self.file))
        self._index[name] = len(self.images) - 1
        return self._index[name]

    def pixels(self, index: int) -> np.ndarray:
        if index not in self._pixels:
            self._pixels[index] = decode_image(self.images[index].data)
        return self._pixels[index]

    def add(self, name: str, rgba: np.ndarray) -> int:
        from ..core.artifacts import encode_png

        self.images.append(SourceImage(name, "image/png", encode_png(rgba)))
        self._pixels[len(self.images) - 1] = rgba
        return len(self.images) - 1


def _slot(images: _Images, entry, what: str, texcoord: int = 0) -> TextureSlot | None:
    if not entry:
        return None
    name, opts = entry
    index = images.load(name, what)
    if index is None:
        return None
    o = (opts.get("-o") or [0.0, 0.0]) + [0.0, 0.0]
    s = (opts.get("-s") or [1.0, 1.0]) + [1.0, 1.0]
    transform = None
    if (o[0], o[1], s[0], s[1]) != (0.0, 0.0, 1.0, 1.0):
        # MTL offsets/scales act on V-up coordinates; the surface keeps glTF's t = 1 - v:
        # t' = 1 - (s_v (1 - t) + o_v) = s_v t + (1 - s_v - o_v)
        transform = (float(s[0]), 0.0, float(o[0]), 0.0, float(s[1]), 1.0 - s[1] - o[1])
    clamp = str((opts.get("-clamp") or ["off"])[0]).lower() == "on"
    wrap = CLAMP if clamp else REPEAT
    scale = float((opts.get("-bm") or [1.0])[0])
    return TextureSlot(index, texcoord, transform, wrap, wrap, False, scale)


def _num(d: dict, key: str, default: float) -> float:
    v = d.get(key)
    return float(v[0]) if isinstance(v, list) and v else default


def _rgb(d: dict, key: str, default: tuple) -> tuple[float, float, float]:
    v = d.get(key)
    if isinstance(v, list) and len(v) >= 3:
        return (float(v[0]), float(v[1]), float(v[2]))
    if isinstance(v, list) and len(v) == 1:
        return (float(v[0]),) * 3
    return default


def _is_normal_map(rgba: np.ndarray) -> bool:
    rgb = rgba[..., :3].reshape(-1, 3).astype(np.float64) / 255.0
    mean = rgb.mean(0)
    return bool(mean[2] > 0.6 and mean[2] > mean[0] + 0.1 and mean[2] > mean[1] + 0.1)


def mtl_material(name: str, d: dict, images: _Images) -> SourceMaterial:
    """One MTL material as a ``SourceMaterial`` (see the module docstring)."""
    alpha = _num(d, "d", 1.0)
    if "d" not in d and 0.0 < _num(d, "tr", 0.0) < 1.0:
        alpha = 1.0 - _num(d, "tr", 0.0)
    mode = "BLEND" if alpha < 0.999 else "OPAQUE"
    cutoff = 0.5
    base = _slot(images, d.get("map_kd"), "diffuse")
    if d.get("map_d"):
        mask_index = images.load(d["map_d"][0], "opacity")
        if mask_index is not None:
            m = images.pixels(mask_index).astype(np.float64)
            a = m[..., 3] if (m[..., 3] < 255).any() else m[..., :3].mean(axis=2)
            if base is not None:
                rgb = images.pixels(base.image)
                if rgb.shape[:2] != a.shape:
                    from PIL import Image

                    a = np.asarray(Image.fromarray(a.astype(np.uint8)).resize(
                        (rgb.shape[1], rgb.shape[0]), Image.BILINEAR), np.float64)
                rgba = rgb.copy()
            else:
                rgba = np.full(a.shape + (4,), 255, np.uint8)
            rgba[..., 3] = np.round(a).astype(np.uint8)
            idx = images.add(f"{name} (colour + opacity)", rgba)
            ref = base or _slot(images, d["map_d"], "opacity")
            base = TextureSlot(idx, ref.texcoord, ref.transform, ref.wrap_s, ref.wrap_t)
            binary = float(((a < 26) | (a > 229)).mean())
            mode = "MASK" if binary > 0.95 else "BLEND"
    normal = None
    bump = d.get("norm") or d.get("map_bump") or d.get("bump")
    if bump:
        slot = _slot(images, bump, "normal")
        if slot is not None and _is_normal_map(images.pixels(slot.image)):
            normal = slot
        elif slot is not None:
            log.info("%s: MTL material %r: bump map %r is a height map, not a normal map; "
                     "skipped", images.file, name, bump[0])
    ns = _num(d, "ns", -1.0)
    rough = _num(d, "pr", math.sqrt(math.sqrt(2.0 / (ns + 2.0))) if ns >= 0 else 1.0)
    metal = _num(d, "pm", 0.0)
    mr = None
    if d.get("map_pr") or d.get("map_pm"):
        r_slot = _slot(images, d.get("map_pr"), "roughness")
        m_slot = _slot(images, d.get("map_pm"), "metallic")
        ref = r_slot or m_slot
        shape = images.pixels(ref.image).shape[:2]
        orm = np.full(shape + (4,), 255, np.uint8)
        for slot, ch in ((r_slot, 1), (m_slot, 2)):
            if slot is not None:
                px = images.pixels(slot.image)[..., 0]
                if px.shape != shape:
                    from PIL import Image

                    px = np.asarray(Image.fromarray(px).resize((shape[1], shape[0])))
                orm[..., ch] = px
        if r_slot is None:
            orm[..., 1] = round(rough * 255)
        if m_slot is None:
            orm[..., 2] = round(metal * 255)
        idx = images.add(f"{name} (roughness + metal)", orm)
        mr = TextureSlot(idx, ref.texcoord, ref.transform, ref.wrap_s, ref.wrap_t)
        rough = metal = 1.0
    kd = _rgb(d, "kd", (1.0, 1.0, 1.0))
    return SourceMaterial(
        name=name, base_color_factor=(*kd, float(np.clip(alpha, 0.0, 1.0))), base_color=base,
        metallic_factor=float(np.clip(metal, 0, 1)), roughness_factor=float(np.clip(rough, 0, 1)),
        metallic_roughness=mr, normal=normal,
        emissive_factor=_rgb(d, "ke", (0.0, 0.0, 0.0)) if "ke" in d or "map_ke" not in d
        else (1.0, 1.0, 1.0),
        emissive=_slot(images, d.get("map_ke"), "emissive"),
        alpha_mode=mode, alpha_cutoff=cutoff)


def obj_materials(obj_text: str, resolve, file: str, wanted: list[str]
                  ) -> tuple[dict[str, SourceMaterial], list[SourceImage]]:
    """{name: material} for the material names ``wanted`` (as the OBJ's usemtl spells them),
    from the OBJ's MTL libraries; names no library defines get a plain white material."""
    images = _Images(resolve, file)
    defs: dict[str, dict] = {}
    for lib in mtl_libraries(obj_text):
        try:
            text = resolve(lib).decode("utf-8", errors="replace")
        except InputError:
            log.warning("%s: material library %r is missing; materials default to white",
                        file, lib)
            continue
        defs.update(parse_mtl(text))
    out = {}
    for name in wanted:
        d = defs.get(name)
        if d is None:  # trimesh may sanitise names: match ignoring case and punctuation
            key = re.sub(r"[^a-z0-9]", "", name.lower())
            d = next((v for k, v in defs.items() if re.sub(r"[^a-z0-9]", "", k.lower()) == key),
                     None)
        out[name] = mtl_material(name, d or {}, images)
    return out, images.images

"""Procedurally modelled, textured demo products with known ground truth.

Why procedural: the demo and the tests need products whose true shape, size and volume are known
exactly, with textures busy enough that texturing errors show, and no downloaded data. Each product
is built from closed parts (surfaces of revolution, swept tubes, rounded boxes) in the product
convention: metres, +Y up, front facing +Z, origin at the bottom centre. Every part owns a
horizontal band of one texture atlas; UV seams split vertices, so watertightness and volume are
computed on a copy whose vertices are merged by position (and the parts' union, via manifold3d,
where trimesh has a boolean engine).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..core.mesh import MeshData

log = logging.getLogger(__name__)

TEX_SIZE = 1024
Painter = Callable[[int, int, np.random.Generator], np.ndarray]   # (h, w, rng) -> (h, w, 3) u8


# --------------------------------------------------------------------------- parts


@dataclass(frozen=True)
class Part:
    """One closed shell with its own [0,1]^2 UV parametrisation and its texture painter."""

    name: str
    vertices: np.ndarray
    faces: np.ndarray
    uv: np.ndarray
    paint: Painter
    weight: float = 1.0        # share of the atlas height


def _grid_faces(rows: int, cols: int) -> np.ndarray:
    """Two triangles per quad of a rows x cols vertex grid (row-major)."""
    i, j = np.meshgrid(np.arange(rows - 1), np.arange(cols - 1), indexing="ij")
    a = (i * cols + j).ravel()
    b, c, d = a + 1, a + cols + 1, a + cols
    return np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])


def _drop_degenerate(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Remove zero-area triangles (the ones a grid makes where a row collapses to a pole)."""
    t = vertices[faces]
    area = np.linalg.norm(np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]), axis=1)
    scale = max(float(np.ptp(vertices, axis=0).max()), 1e-9)
    return faces[area > 1e-10 * scale * scale]


def _superellipse(phi: np.ndarray, n: float) -> tuple[np.ndarray, np.ndarray]:
    """Points on |x|^n + |y|^n = 1 (n=2 circle, larger n squarer)."""
    c, s = np.cos(phi), np.sin(phi)
    e = 2.0 / n
    return np.sign(c) * np.abs(c) ** e, np.sign(s) * np.abs(s) ** e


def sweep(name: str, centres, e1, e2, ra, rb, paint: Painter, *, segments: int = 64,
          squareness: float = 2.0, cap: bool = True, weight: float = 1.0) -> Part:
    """A tube: ring i is centred at ``centres[i]`` with semi-axes ``ra[i]*e1[i]``, ``rb[i]*e2[i]``.

    Rings of radius 0 close the tube at a point (lathe poles); ``cap`` adds flat end caps.
    u runs around the ring (u=0 at +e1, u=0.25 at +e2), v along the tube from the first ring.
    """
    centres, e1, e2 = (np.asarray(a, float) for a in (centres, e1, e2))
    ra, rb = np.asarray(ra, float), np.asarray(rb, float)
    if cap:
        centres = np.concatenate([centres[:1], centres, centres[-1:]])
        e1 = np.concatenate([e1[:1], e1, e1[-1:]])
        e2 = np.concatenate([e2[:1], e2, e2[-1:]])
        ra = np.concatenate([[0.0], ra, [0.0]])
        rb = np.concatenate([[0.0], rb, [0.0]])
    u = np.linspace(0.0, 1.0, segments + 1)
    cx, cy = _superellipse(2 * np.pi * u, squareness)
    cx[-1], cy[-1] = cx[0], cy[0]           # the seam column repeats the first exactly
    pts = (centres[:, None, :] + (ra[:, None] * cx[None, :])[..., None] * e1[:, None, :]
           + (rb[:, None] * cy[None, :])[..., None] * e2[:, None, :])
    rows = len(centres)
    # v by arc length of the ring "spine" (centre travel plus radius change), so labels keep
    # their proportions
    step = np.linalg.norm(np.diff(centres, axis=0), axis=1) + np.abs(np.diff((ra + rb) / 2))
    v = np.concatenate([[0.0], np.cumsum(step)])
    v = v / v[-1] if v[-1] > 0 else np.linspace(0, 1, rows)
    uv = np.stack(np.broadcast_arrays(u[None, :], v[:, None]), -1).reshape(-1, 2)
    vertices = pts.reshape(-1, 3)
    faces = _drop_degenerate(vertices, _grid_faces(rows, segments + 1))
    return _oriented(Part(name, vertices, faces, uv.astype(np.float32), paint, weight))


def lathe(name: str, profile, paint: Painter, *, segments: int = 72, weight: float = 1.0,
          y0: float = 0.0) -> Part:
    """Surface of revolution about +Y from (radius, height) points, bottom to top.

    Profiles start and end at radius 0 so the shell is closed. u = 0.5 faces the front (+Z),
    u grows from the left (-X) over the front to the right (+X): text painted left to right in
    the texture reads left to right in a front photo.
    """
    prof = np.asarray(profile, float)
    n = len(prof)
    centres = np.stack([np.zeros(n), prof[:, 1] + y0, np.zeros(n)], 1)
    # ring point = r*(cos(phi)*e1 + sin(phi)*e2) with phi = 2*pi*u: u=0 -> -Z (back),
    # u=0.25 -> -X (left), u=0.5 -> +Z (front), u=0.75 -> +X (right)
    e1 = np.tile([0.0, 0.0, -1.0], (n, 1))
    e2 = np.tile([-1.0, 0.0, 0.0], (n, 1))
    return sweep(name, centres, e1, e2, prof[:, 0], prof[:, 0], paint, segments=segments,
                 cap=False, weight=weight)


def tube(name: str, path, radius, paint: Painter, *, segments: int = 24, weight: float = 0.5,
         radius_b=None) -> Part:
    """A capped tube along a polyline, with parallel-transport frames (no twisting)."""
    path = np.asarray(path, float)
    ra = np.broadcast_to(np.asarray(radius, float), (len(path),)).copy()
    rb = ra if radius_b is None else np.broadcast_to(np.asarray(radius_b, float), (len(path),))
    t = np.gradient(path, axis=0)
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    e1 = np.zeros_like(path)
    ref = np.array([0.0, 0.0, 1.0]) if abs(t[0, 2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    e = ref - t[0] * np.dot(ref, t[0])
    for i in range(len(path)):
        e = e - t[i] * np.dot(e, t[i])
        e /= np.linalg.norm(e)
        e1[i] = e
    e2 = np.cross(t, e1)
    return sweep(name, path, e1, e2, ra, rb, paint, segments=segments, weight=weight)


def rounded_box(name: str, size, paint: Painter, *, radius: float = 0.0, centre=(0, 0, 0),
                flat_segments: int = 4, round_segments: int = 4, weight: float = 1.0) -> Part:
    """A box with rounded edges (radius 0: sharp), UVs in a cube cross.

    Cross cells (4 columns x 3 rows): middle row left(-X), front(+Z), right(+X), back(-Z); top
    (+Y) above the front cell, bottom (-Y) below it. Each cell is the face as seen from outside,
    upright, so a painter can draw readable text in ``cross_cell(...)``.
    """
    half = np.asarray(size, float) / 2
    r = float(min(radius, *(half * 0.999)))

    def coords(a: float) -> np.ndarray:
        if r <= 0:
            return np.linspace(-a, a, flat_segments + 1)
        band = np.linspace(-a, -a + r, round_segments + 1)
        mid = np.linspace(-a + r, a - r, flat_segments + 1)
        return np.concatenate([band[:-1], mid, -band[::-1][1:]])

    verts, faces, uvs = [], [], []
    X, Y, Z = np.eye(3)
    # (normal, right, up, cell column, cell row) -- cell rows counted from the bottom
    layout = [(Z, X, Y, 1, 1), (X, -Z, Y, 2, 1), (-Z, -X, Y, 3, 1), (-X, Z, Y, 0, 1),
              (Y, X, -Z, 1, 2), (-Y, X, Z, 1, 0)]
    for normal, right, up, col, row in layout:
        ax_n, ax_r, ax_u = (int(np.argmax(np.abs(a))) for a in (normal, right, up))
        xs, ys = coords(half[ax_r]), coords(half[ax_u])
        gx, gy = np.meshgrid(xs, ys, indexing="xy")        # rows along up, columns along right
        q = (normal * half[ax_n])[None, None, :] + gx[..., None] * right + gy[..., None] * up
        # the "cube point" is the same from both faces along an edge, so positions agree exactly
        q = q.reshape(-1, 3)
        if r > 0:
            inner = half - r
            c = np.clip(q, -inner, inner)
            d = q - c
            q = c + r * d / np.linalg.norm(d, axis=1, keepdims=True)
        fu = (gx.ravel() + half[ax_r]) / (2 * half[ax_r])
        fv = (gy.ravel() + half[ax_u]) / (2 * half[ax_u])
        inset = 0.02
        uv = np.stack([(col + inset + fu * (1 - 2 * inset)) / 4,
                       (row + inset + fv * (1 - 2 * inset)) / 3], 1)
        faces.append(_grid_faces(len(ys), len(xs)) + sum(len(v) for v in verts))
        verts.append(q + np.asarray(centre, float))
        uvs.append(uv)
    vertices = np.concatenate(verts)
    return _oriented(Part(name, vertices, np.concatenate(faces),
                          np.concatenate(uvs).astype(np.float32), paint, weight))


def cross_cell(face: str, h: int, w: int) -> tuple[int, int, int, int]:
    """Pixel box (x0, y0, x1, y1) of a rounded box's face in its cross-layout tile."""
    col, row = {"front": (1, 1), "right": (2, 1), "back": (3, 1), "left": (0, 1),
                "top": (1, 2), "bottom": (1, 0)}[face]
    x0, x1 = col * w // 4, (col + 1) * w // 4
    y0, y1 = (2 - row) * h // 3, (3 - row) * h // 3      # image rows from the top
    return x0, y0, x1, y1


def _merged(vertices: np.ndarray, faces: np.ndarray):
    """Geometry-only trimesh with vertices merged by position (UV seams closed)."""
    import trimesh

    m = trimesh.Trimesh(vertices, faces, process=False)
    m.merge_vertices(merge_tex=True, merge_norm=True)
    return m


def _oriented(part: Part) -> Part:
    """Flip the part's faces if its signed volume is negative (inside out)."""
    if _merged(part.vertices, part.faces).volume < 0:
        return Part(part.name, part.vertices, part.faces[:, ::-1].copy(), part.uv, part.paint,
                    part.weight)
    return part


# --------------------------------------------------------------------------- products


@dataclass(frozen=True)
class Product:
    """A finished demo product: the mesh (atlas UVs, part labels), its texture, its photo plan."""

    sku: str
    title: str
    category: str
    material: str
    mesh: MeshData
    texture: np.ndarray
    part_names: tuple[str, ...]
    views: tuple[tuple[str, float, float], ...]      # (label, azimuth, elevation)
    rgba_photos: bool = False
    parts: tuple[MeshData, ...] = field(default=(), repr=False)

    def truth(self) -> dict:
        """Ground truth: volume of the parts' union, dims, watertightness, views."""
        return ground_truth(self)


def assemble(parts: list[Part], rng: np.random.Generator,
             tex_size: int = TEX_SIZE) -> tuple[MeshData, np.ndarray, tuple[MeshData, ...]]:
    """Pack parts into horizontal atlas bands, paint them, move the result to the product origin.

    Returns the mesh, the texture and each part as its own (unmerged) ``MeshData``.
    """
    weights = np.array([p.weight for p in parts], float)
    edges = np.round(np.concatenate([[0], np.cumsum(weights)]) / weights.sum() * tex_size)
    edges = edges.astype(int)
    texture = np.zeros((tex_size, tex_size, 3), np.uint8)
    verts, faces, uvs, labels, pieces = [], [], [], [], []
    offset = 0
    for k, part in enumerate(parts):
        r0, r1 = edges[k], edges[k + 1]                    # image rows of this band (top first)
        texture[r0:r1] = part.paint(r1 - r0, tex_size, rng)
        pad = 2.0 / tex_size
        v_top, v_bot = 1 - r0 / tex_size - pad, 1 - r1 / tex_size + pad
        uv = part.uv.astype(np.float64)
        uv = np.stack([pad + uv[:, 0] * (1 - 2 * pad), v_bot + uv[:, 1] * (v_top - v_bot)], 1)
        verts.append(part.vertices)
        faces.append(part.faces + offset)
        uvs.append(uv)
        labels.append(np.full(len(part.faces), k, np.int32))
        offset += len(part.vertices)
    vertices = np.concatenate(verts)
    lo, hi = vertices.min(0), vertices.max(0)
    shift = np.array([-(lo[0] + hi[0]) / 2, -lo[1], -(lo[2] + hi[2]) / 2])
    vertices = vertices + shift
    faces_all = np.concatenate(faces)
    mesh = MeshData(vertices, faces_all, np.concatenate(labels),
                    np.concatenate(uvs).astype(np.float32), None,
                    _crease_normals(vertices, faces_all))
    pieces = tuple(MeshData(p.vertices + shift, p.faces) for p in parts)
    return mesh, texture, pieces


def _crease_normals(vertices: np.ndarray, faces: np.ndarray, crease_deg: float = 40.0
                    ) -> np.ndarray:
    """Smooth normals across UV seams, sharp across creases (box edges) for nicer photos."""
    fn = np.cross(vertices[faces[:, 1]] - vertices[faces[:, 0]],
                  vertices[faces[:, 2]] - vertices[faces[:, 0]])      # area-weighted
    own = np.zeros_like(vertices)
    np.add.at(own, faces.ravel(), np.repeat(fn, 3, axis=0))
    _, key = np.unique(np.round(vertices, 9), axis=0, return_inverse=True)
    key = key.ravel()
    merged = np.zeros((key.max() + 1, 3))
    np.add.at(merged, key, own)
    merged = merged[key]

    def unit(a):
        return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-20)

    own, merged = unit(own), unit(merged)
    smooth = np.sum(own * merged, axis=1) > math.cos(math.radians(crease_deg))
    return np.where(smooth[:, None], merged, own).astype(np.float32)


def ground_truth(product: Product) -> dict:
    """Volume of the union of the closed parts (manifold3d) and per-part watertightness."""
    import trimesh

    shells = [_merged(p.vertices, p.faces) for p in product.parts]
    watertight = all(s.is_watertight and s.is_winding_consistent for s in shells)
    volume = float(sum(s.volume for s in shells))
    method = "sum_of_parts"
    if watertight and len(shells) > 1 and "manifold" in trimesh.boolean.engines_available:
        union = trimesh.boolean.union(shells, engine="manifold")
        volume, method = float(union.volume), "union"
    ext = np.ptp(product.mesh.vertices, axis=0) * 1000.0
    return {"volume_m3": volume, "volume_method": method, "watertight": bool(watertight),
            "dims_mm": [round(float(e), 1) for e in ext], "n_parts": len(shells),
            "n_faces": product.mesh.n_faces,
            "views": [{"view": v, "azimuth_deg": a, "elevation_deg": e}
                      for v, a, e in product.views]}


# --------------------------------------------------------------------------- painters


def _rgb(c) -> np.ndarray:
    return np.asarray(c, np.float32)


def solid(color, noise: float = 6.0) -> Painter:
    def paint(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
        img = np.broadcast_to(_rgb(color), (h, w, 3)).astype(np.float32)
        img = img + rng.normal(0, noise, (h, w, 1))
        return np.clip(img, 0, 255).astype(np.uint8)
    return paint


def stripes(colors, count: int, vertical: bool = False, noise: float = 4.0) -> Painter:
    def paint(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
        t = (np.arange(w) / w if vertical else np.arange(h) / h) * count
        idx = np.floor(t).astype(int) % len(colors)
        line = np.asarray(colors, np.float32)[idx]
        img = np.broadcast_to(line[None] if vertical else line[:, None], (h, w, 3)).copy()
        return np.clip(img + rng.normal(0, noise, (h, w, 1)), 0, 255).astype(np.uint8)
    return paint


def wood(light=(196, 150, 98), dark=(128, 84, 46), rings: float = 18.0) -> Painter:
    def paint(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
        y, x = np.mgrid[0:h, 0:w] / max(h, w)
        phase = rng.uniform(0, 2 * np.pi, 3)
        wobble = 0.03 * np.sin(9 * x + phase[0]) + 0.015 * np.sin(23 * x + phase[1])
        t = 0.5 + 0.5 * np.sin(2 * np.pi * rings * (y + wobble) + phase[2])
        t = t ** 3 + rng.normal(0, 0.05, (h, w))
        img = _rgb(light) * (1 - t[..., None]) + _rgb(dark) * t[..., None]
        return np.clip(img, 0, 255).astype(np.uint8)
    return paint


def checker(c1, c2, n: int = 8) -> Painter:
    def paint(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
        y, x = np.mgrid[0:h, 0:w]
        m = ((x * n // w) + (y * max(1, n * h // w) // h)) % 2
        img = np.where(m[..., None] == 0, _rgb(c1), _rgb(c2))
        return np.clip(img + rng.normal(0, 4, (h, w, 1)), 0, 255).astype(np.uint8)
    return paint


def dots(bg, fg, spacing: int = 24, radius: float = 0.3) -> Painter:
    def paint(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
        y, x = np.mgrid[0:h, 0:w]
        fx = (x % spacing) / spacing - 0.5
        fy = (y % spacing) / spacing - 0.5
        m = fx * fx + fy * fy < radius * radius
        img = np.where(m[..., None], _rgb(fg), _rgb(bg))
        return np.clip(img + rng.normal(0, 3, (h, w, 1)), 0, 255).astype(np.uint8)
    return paint


def _font(size: int):
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def text_box(draw, box, text: str, fill, *, bg=None, outline=None) -> None:
    """Draw ``text`` centred and as large as fits in ``box`` (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = box
    if bg is not None or outline is not None:
        draw.rectangle(box, fill=bg, outline=outline, width=max(2, (y1 - y0) // 20))
    size = max(8, int((y1 - y0) * 0.7))
    while size > 8:
        l, t, r, b = draw.textbbox((0, 0), text, font=_font(size))
        if r - l <= 0.9 * (x1 - x0) and b - t <= 0.8 * (y1 - y0):
            break
        size = int(size * 0.9)
    font = _font(size)
    l, t, r, b = draw.textbbox((0, 0), text, font=font)
    draw.text(((x0 + x1 - (r - l)) / 2 - l, (y0 + y1 - (b - t)) / 2 - t), text, fill=fill,
              font=font)


def overlay(base: Painter, fn: Callable) -> Painter:
    """``base`` then ``fn(draw, h, w)`` with a PIL ImageDraw for labels and logo blocks."""
    def paint(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
        from PIL import Image, ImageDraw

        img = Image.fromarray(base(h, w, rng))
        fn(ImageDraw.Draw(img), h, w)
        return np.asarray(img).copy()
    return paint


# --------------------------------------------------------------------------- geometry helpers


def arc(centre, radius: float, a0: float, a1: float, n: int = 24, plane: str = "xy"):
    """Points on a circular arc (degrees), in the xy or zy plane."""
    t = np.radians(np.linspace(a0, a1, n))
    c = np.asarray(centre, float)
    if plane == "xy":
        return c + np.stack([radius * np.cos(t), radius * np.sin(t), np.zeros(n)], 1)
    return c + np.stack([np.zeros(n), radius * np.sin(t), radius * np.cos(t)], 1)


def rounded_profile(radius: float, height: float, fillet: float, y0: float = 0.0,
                    n: int = 6) -> list[tuple[float, float]]:
    """Lathe profile of a closed cylinder with rounded bottom and top edges."""
    pts = [(0.0, y0)]
    for t in np.linspace(-90, 0, n):
        a = math.radians(t)
        pts.append((radius - fillet + fillet * math.cos(a), y0 + fillet + fillet * math.sin(a)))
    for t in np.linspace(0, 90, n):
        a = math.radians(t)
        pts.append((radius - fillet + fillet * math.cos(a),
                    y0 + height - fillet + fillet * math.sin(a)))
    pts.append((0.0, y0 + height))
    return pts


def along_x(name: str, xs, centre_y, centre_z, half_w, half_h, paint: Painter, *,
            squareness: float = 2.0, segments: int = 48, weight: float = 1.0) -> Part:
    """A closed shape swept along +X: cross-sections in the YZ plane, half sizes per station."""
    xs = np.asarray(xs, float)
    centres = np.stack([xs, np.broadcast_to(centre_y, xs.shape),
                        np.broadcast_to(centre_z, xs.shape)], 1)
    n = len(xs)
    e1 = np.tile([0.0, 0.0, 1.0], (n, 1))      # half_w along Z
    e2 = np.tile([0.0, 1.0, 0.0], (n, 1))      # half_h along Y
    return sweep(name, centres, e1, e2, half_w, half_h, paint, segments=segments,
                 squareness=squareness, cap=False, weight=weight)


def _ends(t: np.ndarray, power: float = 0.5) -> np.ndarray:
    """0 at both ends of [0, 1], 1 in between: rounds swept shapes closed."""
    env = np.clip(np.sin(np.pi * t), 0, 1) ** power
    env[(t <= 0) | (t >= 1)] = 0.0       # sin(pi) is 1e-16, not 0: close the ends exactly
    return env


# --------------------------------------------------------------------------- the catalog

ALL8 = ("front", "front_right", "right", "back_right", "back", "back_left", "left", "front_left")
AZ = {"front": 0.0, "front_right": 45.0, "right": 90.0, "back_right": 135.0, "back": 180.0,
      "back_left": 225.0, "left": 270.0, "front_left": 315.0}
MULTI_ELEVATION = 15.0


def _views(labels, elevation: float = MULTI_ELEVATION) -> tuple[tuple[str, float, float], ...]:
    return tuple((v, AZ[v], elevation) for v in labels)


def _studio8() -> tuple[tuple[str, float, float], ...]:
    """Eight views as a furniture shoot takes them: the four sides at eye level (elevation 0)
    and the four diagonals from above (20 degrees). Eye-level views let a visual hull carve the
    space under a seat, which views from above never see."""
    return tuple((v, AZ[v], 0.0 if i % 2 == 0 else 20.0) for i, v in enumerate(ALL8))


def _mug() -> list[Part]:
    body = [(0.0, 0.0), (0.037, 0.0), (0.0395, 0.002), (0.040, 0.006), (0.041, 0.09),
            (0.0405, 0.095), (0.0375, 0.096), (0.0365, 0.091), (0.0, 0.090)]

    def logo(draw, h, w):
        draw.rectangle((0, int(h * 0.12), w, int(h * 0.18)), fill=(200, 40, 40))
        draw.rectangle((0, int(h * 0.80), w, int(h * 0.84)), fill=(30, 60, 150))
        text_box(draw, (int(w * 0.38), int(h * 0.35), int(w * 0.62), int(h * 0.65)), "CAFE",
                 (250, 240, 220), bg=(30, 60, 150))
    handle = arc((0.041, 0.05, 0.0), 0.026, -105, 105, n=28)
    return [lathe("body", body, overlay(solid((238, 228, 206)), logo), weight=3),
            tube("handle", handle, 0.0065, solid((30, 60, 150)), radius_b=0.0045)]


def _bottle() -> list[Part]:
    prof = [(0.0, 0.0), (0.031, 0.0), (0.034, 0.003), (0.035, 0.01), (0.035, 0.15)]
    for t in np.linspace(0, 1, 8)[1:]:          # shoulder
        prof.append((0.035 - 0.022 * (1 - math.cos(math.pi * t)) / 2, 0.15 + 0.055 * t))
    prof += [(0.013, 0.235), (0.0, 0.235)]

    def label(draw, h, w):
        y0, y1 = int(h * 0.35), int(h * 0.72)
        draw.rectangle((0, y0, w, y1), fill=(245, 245, 240))
        draw.rectangle((0, y0 + 6, w, y0 + 14), fill=(20, 110, 180))
        draw.rectangle((0, y1 - 14, w, y1 - 6), fill=(20, 110, 180))
        text_box(draw, (int(w * 0.35), y0 + 18, int(w * 0.65), y1 - 18), "AQUA", (20, 110, 180))
    cap = rounded_profile(0.0155, 0.026, 0.002, y0=0.229)
    return [lathe("body", prof, overlay(solid((60, 140, 90)), label), weight=3),
            lathe("cap", cap, stripes([(200, 30, 30), (150, 20, 20)], 48, vertical=True))]


def _shoebox() -> list[Part]:
    def sides(draw, h, w):
        for face in ("front", "back", "left", "right"):
            x0, y0, x1, y1 = cross_cell(face, h, w)
            draw.rectangle((x0, y0 + (y1 - y0) // 3, x1, y0 + (y1 - y0) // 2),
                           fill=(250, 250, 250))
        x0, y0, x1, y1 = cross_cell("front", h, w)
        text_box(draw, (x0 + 10, y0 + (y1 - y0) // 2 + 8, x1 - 10, y1 - 8), "RUNFAST",
                 (30, 30, 30))

    def lid(draw, h, w):
        x0, y0, x1, y1 = cross_cell("top", h, w)
        draw.ellipse((x0 + 20, y0 + 20, x1 - 20, y1 - 20), fill=(30, 30, 30))
        text_box(draw, (x0 + 60, y0 + (y1 - y0) // 3, x1 - 60, y1 - (y1 - y0) // 3),
                 "RUNFAST", (255, 140, 0))
        x0, y0, x1, y1 = cross_cell("front", h, w)
        draw.rectangle((x0, y0, x1, y1), fill=(30, 30, 30))
    return [rounded_box("base", (0.33, 0.11, 0.20), overlay(solid((255, 140, 0)), sides),
                        centre=(0, 0.055, 0), weight=2),
            rounded_box("lid", (0.336, 0.035, 0.206), overlay(solid((255, 140, 0)), lid),
                        centre=(0, 0.1075, 0), weight=2)]


def _chair() -> list[Part]:
    parts = [rounded_box("seat", (0.44, 0.04, 0.42), wood(), radius=0.006, centre=(0, 0.45, 0),
                         weight=2),
             rounded_box("back", (0.44, 0.40, 0.035), wood(rings=30), radius=0.006,
                         centre=(0, 0.66, -0.19), weight=2)]
    for k, (x, z) in enumerate([(-0.19, -0.18), (0.19, -0.18), (-0.19, 0.18), (0.19, 0.18)]):
        parts.append(rounded_box(f"leg{k}", (0.035, 0.44, 0.035),
                                 wood((150, 104, 60), (96, 60, 30), 40), centre=(x, 0.22, z),
                                 weight=0.5))
    return parts


def _lamp() -> list[Part]:
    base = rounded_profile(0.08, 0.025, 0.008)
    stem = [(0.0, 0.02), (0.007, 0.02), (0.007, 0.30), (0.0, 0.30)]
    shade = [(0.0, 0.26), (0.125, 0.26), (0.13, 0.265), (0.082, 0.42), (0.075, 0.42), (0.0, 0.42)]
    return [lathe("base", base, solid((70, 70, 75)), weight=1),
            lathe("stem", stem, stripes([(200, 160, 60), (170, 130, 40)], 4), segments=24,
                  weight=0.5),
            lathe("shade", shade, overlay(checker((236, 226, 200), (210, 196, 160), 16),
                                          lambda d, h, w: d.rectangle(
                                              (0, int(h * 0.45), w, int(h * 0.55)),
                                              fill=(150, 40, 60))), weight=2.5)]


def _sneaker() -> list[Part]:
    """Toe towards +X, so the front photo (from +Z) shows the classic side profile."""
    t = np.linspace(0, 1, 48)
    xs = -0.14 + 0.28 * t
    env = _ends(t, 0.3)
    width = 0.048 * env * (1 - 0.12 * np.cos(2 * np.pi * t))
    sole = along_x("sole", xs, 0.013, 0.0, width, 0.013 * env, overlay(
        solid((245, 245, 245)), lambda d, h, w: d.rectangle((0, int(h * 0.45), w, int(h * 0.55)),
                                                            fill=(90, 90, 90))), squareness=5)
    heel = np.clip(1.0 - t, 0, 1)
    up_env = _ends(t, 0.45)
    upper_h = (0.028 + 0.05 * heel ** 1.5) * up_env          # high collar at the heel
    upper_y = 0.024 + upper_h * 0.85

    def upper_paint(draw, h, w):
        # the ring starts at the upper's side facing -Z... u=0.25 is its top (+Y)
        draw.polygon([(int(w * 0.55), int(h * 0.25)), (int(w * 0.95), int(h * 0.55)),
                      (int(w * 0.95), int(h * 0.68)), (int(w * 0.55), int(h * 0.42))],
                     fill=(250, 250, 250))
        draw.polygon([(int(w * 0.05), int(h * 0.25)), (int(w * 0.45), int(h * 0.55)),
                      (int(w * 0.45), int(h * 0.68)), (int(w * 0.05), int(h * 0.42))],
                     fill=(250, 250, 250))
        for k in range(6):           # laces across the top
            y = int(h * (0.30 + 0.07 * k))
            draw.rectangle((int(w * 0.20), y, int(w * 0.30), y + 8), fill=(250, 250, 250))
        draw.rectangle((0, int(h * 0.88), w, h), fill=(200, 40, 40))      # heel tab
    upper = along_x("upper", -0.133 + 0.266 * t, upper_y, 0.0, 0.044 * up_env, upper_h,
                    overlay(solid((30, 90, 200)), upper_paint), squareness=2.6, weight=2)
    return [sole, upper]


def _vase() -> list[Part]:
    ys = np.linspace(0.0, 0.30, 40)
    r = 0.055 + 0.03 * np.sin(np.pi * ys / 0.30 * 1.2) - 0.02 * (ys / 0.30) ** 3
    prof = [(0.0, 0.0)] + list(zip(r, ys)) + [(0.0, 0.30)]
    return [lathe("body", prof, overlay(dots((30, 60, 140), (230, 235, 245), 32, 0.25),
                                        lambda d, h, w: [d.rectangle(
                                            (0, int(h * f), w, int(h * f) + 14),
                                            fill=(230, 200, 60)) for f in (0.15, 0.5, 0.85)]))]


def _bowl() -> list[Part]:
    prof = [(0.0, 0.0), (0.045, 0.0), (0.047, 0.008)]
    for t in np.linspace(0.1, 1, 10):
        prof.append((0.047 + 0.043 * math.sin(t * math.pi / 2), 0.008 + 0.062 * t ** 1.5))
    prof += [(0.088, 0.073), (0.083, 0.068)]
    for t in np.linspace(0.9, 0, 8):
        prof.append((0.083 * math.sin(t * math.pi / 2), 0.02 + 0.048 * t ** 1.5))
    prof[-1] = (0.0, 0.02)
    return [lathe("bowl", prof, stripes([(200, 90, 50), (240, 220, 190), (200, 90, 50),
                                         (90, 130, 110)], 9))]


def _tincan() -> list[Part]:
    prof = [(0.0, 0.0), (0.036, 0.0), (0.0385, 0.003), (0.0375, 0.008), (0.0375, 0.102),
            (0.0385, 0.107), (0.036, 0.11), (0.0, 0.11)]

    def label(draw, h, w):
        draw.rectangle((0, int(h * 0.1), w, int(h * 0.9)), fill=(200, 30, 30))
        draw.rectangle((0, int(h * 0.62), w, int(h * 0.7)), fill=(240, 200, 40))
        text_box(draw, (int(w * 0.30), int(h * 0.3), int(w * 0.70), int(h * 0.58)), "TOMATO",
                 (255, 255, 255))
    return [lathe("can", prof, overlay(solid((190, 190, 195)), label))]


def _speaker() -> list[Part]:
    def face(draw, h, w):
        x0, y0, x1, y1 = cross_cell("front", h, w)
        draw.rectangle((x0, y0, x1, y1), fill=(25, 25, 28))
        cw, ch = x1 - x0, y1 - y0
        cx = (x0 + x1) // 2
        r1 = int(min(cw, ch) * 0.36)
        cy1 = y0 + int(ch * 0.62)
        draw.ellipse((cx - r1, cy1 - r1, cx + r1, cy1 + r1), fill=(70, 70, 75))
        draw.ellipse((cx - r1 // 3, cy1 - r1 // 3, cx + r1 // 3, cy1 + r1 // 3),
                     fill=(140, 140, 145))
        r2 = r1 // 3
        cy2 = y0 + int(ch * 0.2)
        draw.ellipse((cx - r2, cy2 - r2, cx + r2, cy2 + r2), fill=(200, 170, 60))
    return [rounded_box("cabinet", (0.20, 0.32, 0.22), overlay(wood((110, 70, 40),
                                                                    (70, 40, 20), 25), face),
                        radius=0.02, flat_segments=6)]


def _backpack() -> list[Part]:
    def front(draw, h, w):
        x0, y0, x1, y1 = cross_cell("front", h, w)
        text_box(draw, (x0 + 12, y0 + (y1 - y0) // 8, x1 - 12, y0 + (y1 - y0) * 3 // 8), "TRAIL",
                 (255, 220, 60))
    body = rounded_box("body", (0.30, 0.42, 0.15), overlay(solid((40, 110, 70)), front),
                       radius=0.05, centre=(0, 0.21, 0), weight=2)
    pocket = rounded_box("pocket", (0.24, 0.17, 0.06), checker((200, 80, 40), (170, 60, 30), 12),
                         radius=0.02, centre=(0, 0.12, 0.085))
    parts = [body, pocket]
    for k, x in enumerate((-0.08, 0.08)):
        t = np.radians(np.linspace(-90, 90, 24))      # a "D" hugging the back panel
        path = np.stack([np.full_like(t, x), 0.22 + 0.16 * np.sin(t),
                         -0.065 - 0.045 * np.cos(t)], 1)
        parts.append(tube(f"strap{k}", path, 0.025, solid((30, 30, 30)), radius_b=0.006,
                          segments=16))
    parts.append(tube("handle", arc((0, 0.40, -0.02), 0.035, 0, 180, n=16), 0.007,
                      solid((30, 30, 30)), segments=12))
    return parts


def _stool() -> list[Part]:
    seat = rounded_profile(0.17, 0.04, 0.012, y0=0.41)
    parts = [lathe("seat", seat, wood((210, 170, 120), (160, 110, 70), 24), weight=2)]
    for k in range(4):
        a = math.radians(45 + 90 * k)
        top = np.array([0.11 * math.cos(a), 0.42, 0.11 * math.sin(a)])
        bottom = np.array([0.15 * math.cos(a), 0.0, 0.15 * math.sin(a)])
        path = bottom + np.linspace(0, 1, 6)[:, None] * (top - bottom)
        parts.append(tube(f"leg{k}", path, 0.014, solid((40, 40, 40)), segments=16,
                          weight=0.4))
    return parts


def _teapot() -> list[Part]:
    prof = [(0.0, 0.0), (0.05, 0.0)]
    for t in np.linspace(-0.85, 0.9, 16):
        prof.append((0.085 * math.cos(t * math.pi / 2) + 0.005, 0.065 + 0.06 * t))
    prof += [(0.0, 0.12)]
    knob = [(0.0, 0.115), (0.012, 0.115), (0.012, 0.125)] + [
        (0.012 * math.cos(a), 0.125 + 0.012 * math.sin(a)) for a in np.linspace(0.3, 1.5, 5)]
    knob += [(0.0, 0.138)]
    spout = np.array([[0.07, 0.04, 0], [0.10, 0.06, 0], [0.12, 0.09, 0], [0.135, 0.115, 0],
                      [0.145, 0.13, 0]])
    handle = arc((-0.085, 0.07, 0.0), 0.035, 75, 285, n=24)
    glaze = overlay(solid((245, 245, 240)), lambda d, h, w: [
        d.ellipse((int(w * f) - 40, int(h * 0.45) - 40, int(w * f) + 40, int(h * 0.45) + 40),
                  fill=(40, 80, 160)) for f in (0.125, 0.375, 0.625, 0.875)])
    return [lathe("body", prof, glaze, weight=3),
            lathe("knob", knob, solid((40, 80, 160)), segments=24, weight=0.5),
            tube("spout", spout, np.linspace(0.014, 0.007, 5), solid((245, 245, 240)),
                 weight=0.5),
            tube("handle", handle, 0.007, solid((40, 80, 160)), radius_b=0.005, weight=0.5)]


def _bookend() -> list[Part]:
    return [rounded_box("base", (0.12, 0.012, 0.14), solid((60, 60, 65)), radius=0.002,
                        centre=(0, 0.006, 0.0)),
            rounded_box("upright", (0.12, 0.18, 0.014), overlay(solid((180, 50, 50)), lambda
                        d, h, w: text_box(d, cross_cell("front", h, w), "ABC", (250, 250, 250))),
                        radius=0.002, centre=(0, 0.09, -0.063))]


#: (sku, title, category, material, builder, views, rgba photos). The first 12 are the default
#: demo; single-view SKUs use one front photo at a low elevation.
CATALOG = (
    ("mug-01", "Cafe mug", "kitchen", "ceramic", _mug, _views(ALL8), False),
    ("bottle-01", "Aqua water bottle", "kitchen", "glass", _bottle, _views(["front"], 10), False),
    ("shoebox-01", "Runfast shoe box", "packaging", "cardboard", _shoebox,
     _views(["front_right"], 15), False),
    ("chair-01", "Oak dining chair", "furniture", "wood", _chair, _studio8(), False),
    ("lamp-01", "Linen table lamp", "lighting", "fabric", _lamp, _views(["front"], 12), False),
    ("sneaker-01", "Trail sneaker", "footwear", "textile", _sneaker, _views(ALL8), False),
    ("vase-01", "Blue dotted vase", "decor", "ceramic", _vase, _views(["front"], 8), True),
    ("bowl-01", "Striped serving bowl", "kitchen", "ceramic", _bowl, _views(["front"], 15),
     False),
    ("tincan-01", "Tomato tin", "grocery", "metal", _tincan, _views(["front"], 5), False),
    ("speaker-01", "Bookshelf speaker", "electronics", "wood", _speaker,
     _views(["front", "right", "back", "left"]), True),
    ("backpack-01", "Trail backpack", "bags", "textile", _backpack,
     _views(["front", "front_right", "right", "back", "left"]), False),
    ("stool-01", "Round bar stool", "furniture", "wood", _stool, _studio8(), False),
    ("teapot-01", "Blue dot teapot", "kitchen", "ceramic", _teapot,
     _views(["front", "front_right", "right", "back", "left", "front_left"]), False),
    ("bookend-01", "Red bookend", "decor", "metal", _bookend, _views(["front"], 10), False),
)


def build_product(index: int, seed: int = 0) -> Product:
    """The ``index``-th catalog product, deterministic for a seed (textures' noise)."""
    sku, title, category, material, builder, views, rgba = CATALOG[index]
    rng = np.random.default_rng([seed, index])
    parts = builder()
    mesh, texture, pieces = assemble(parts, rng)
    log.debug("demo: built %s (%d faces, %d parts)", sku, mesh.n_faces, len(parts))
    return Product(sku, title, category, material, mesh, texture,
                   tuple(p.name for p in parts), views, rgba, pieces)


def build_products(n: int | None = None, seed: int = 0) -> list[Product]:
    n = len(CATALOG) if n is None else n
    if not 0 <= n <= len(CATALOG):
        raise ValueError(f"the demo has {len(CATALOG)} products; asked for {n}")
    return [build_product(i, seed) for i in range(n)]

"""Material transfer: a vendor mesh's own look, baked onto the new asset's UV atlas.

Why: a mesh-only SKU has no photos to re-texture from, and its materials are what the merchant
sells. After cleanup, simplification and the new UV layout, every texel of the new atlas is a
point on the low surface (``Renderer.rasterize_uv``); the point of the *source* surface it
stands for is found the way the normal bake finds the dense surface, and the source's material
is evaluated there exactly as a glTF viewer would (texture slot, UV set, ``KHR_texture_transform``,
sampler wrap and filter, factors, vertex colours).

Finding the source point, with care about nearby surfaces:
0. candidates are the source faces cleanup kept: a face it removed as hidden (an interior
   shell, a hose end inside its nozzle) is no longer on the cleaned surface and may lie closer
   to the simplified surface than the visible face above it;
1. the closest point on the source surface (open3d ``RaycastingScene``), accepted when it lies
   within ``max_distance`` and its face looks the same way as the low surface there. Source
   files are not consistently wound, so each source face's "outside" is first taken from the
   cleaned mesh (whose winding cleanup made consistent): the face is flipped for this test when
   its normal disagrees with the cleaned surface's at its centroid;
2. otherwise (a thin part's far side was closer) rays along the low normal, both ways, take the
   nearest agreeing hit within ``max_distance``;
3. otherwise the closest point is kept anyway (its colour is the best guess there is).

What goes where (glTF metal/rough in, the project's maps out):
- base colour (linear, times vertex colour) and alpha -> ``base_color`` RGBA (sRGB + alpha);
- roughness / metallic -> ORM G / B; occlusion -> ORM R from the source's occlusion texture
  where the material has one (the artist's AO), else the bake's own AO;
- emissive -> ``emissive`` (sRGB, clamped to 1);
- normals: the source's authored normal at the source point, perturbed by the source's normal
  map in the source's tangent frame (its TANGENT attribute, or MikkTSpace-style tangents from the
  normal texture's UV set), re-encoded in the new asset's tangent frame
  (``bake.encode_tangent_space``). Texels whose source answer is not trusted keep the geometry
  bake's normal, so the composed map never loses what the geometry bake had.
- each new face gets the source material most of its texels came from; faces are grouped into
  output materials by source material, each keeping its name, alpha mode, cut-off, double
  sidedness and unlit flag.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from ..core.appearance import CLAMP, MIRROR, SourceAppearance, TextureSlot, decode_image
from ..core.mesh import MeshData

log = logging.getLogger(__name__)

_BATCH = 1_000_000


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    x = np.clip(np.asarray(x, np.float32), 0.0, 1.0)
    return np.where(x <= 0.0031308, x * 12.92, 1.055 * x ** (1 / 2.4) - 0.055).astype(np.float32)


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.where(n > 1e-30, n, 1.0)


# ---------------------------------------------------------------------------- texture sampling


def wrap(coord: np.ndarray, mode: int) -> np.ndarray:
    """Texture coordinates folded into [0, 1] by a glTF sampler wrap mode."""
    if mode == CLAMP:
        return np.clip(coord, 0.0, 1.0)
    if mode == MIRROR:
        f = np.mod(coord, 2.0)
        return np.where(f > 1.0, 2.0 - f, f)
    return np.mod(coord, 1.0)


def sample_texture(image: np.ndarray, uv: np.ndarray, slot: TextureSlot) -> np.ndarray:
    """(T, C) float32 texels of ``image`` (H, W, C) at glTF texture coordinates ``uv``
    (t down), after the slot's transform, with its wrap modes; bilinear unless the sampler
    asks for nearest."""
    uv = np.asarray(uv, np.float64)
    if slot.transform is not None:
        a, b, c, d, e, f = slot.transform
        uv = np.stack([a * uv[:, 0] + b * uv[:, 1] + c, d * uv[:, 0] + e * uv[:, 1] + f], axis=1)
    h, w = image.shape[:2]
    x = wrap(uv[:, 0], slot.wrap_s) * w - 0.5
    y = wrap(uv[:, 1], slot.wrap_t) * h - 0.5
    if slot.nearest:
        xi = np.clip(np.floor(x + 0.5).astype(np.int64), 0, w - 1)
        yi = np.clip(np.floor(y + 0.5).astype(np.int64), 0, h - 1)
        return image[yi, xi].astype(np.float32)
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    fx, fy = (x - x0)[:, None].astype(np.float32), (y - y0)[:, None].astype(np.float32)

    def idx(i: np.ndarray, n: int, mode: int) -> np.ndarray:
        if mode == CLAMP or mode == MIRROR:
            return np.clip(i, 0, n - 1)
        return np.mod(i, n)

    xa, xb = idx(x0, w, slot.wrap_s), idx(x0 + 1, w, slot.wrap_s)
    ya, yb = idx(y0, h, slot.wrap_t), idx(y0 + 1, h, slot.wrap_t)
    return ((image[ya, xa] * (1 - fx) + image[ya, xb] * fx) * (1 - fy)
            + (image[yb, xa] * (1 - fx) + image[yb, xb] * fx) * fy).astype(np.float32)


@dataclass
class SurfaceSamples:
    """The source material evaluated at points of the source surface (linear values)."""

    base: np.ndarray        # (T, 4) linear RGB + alpha
    metallic: np.ndarray    # (T,)
    roughness: np.ndarray   # (T,)
    occlusion: np.ndarray   # (T,) 1 where the material has no occlusion texture
    has_occlusion: np.ndarray  # (T,) bool
    emissive: np.ndarray    # (T, 3) linear
    normal: np.ndarray      # (T, 3) world normal: authored, perturbed by the normal map
    material: np.ndarray    # (T,) int


class SourceShader:
    """Evaluates a ``SourceAppearance`` at (face, barycentric) points of its surface."""

    def __init__(self, appearance: SourceAppearance, orient: np.ndarray | None = None) -> None:
        self.app = appearance
        self.surface = appearance.surface
        self._images: dict[tuple[int, bool], np.ndarray] = {}
        self._tangents: dict[tuple, np.ndarray] = {}
        #: +1/-1 per source face: its normal points outside (+1) or inside (-1)
        self.orient = (np.ones(self.surface.n_faces, np.float32) if orient is None
                       else np.asarray(orient, np.float32))
        s = self.surface
        self.normals = (_unit(np.asarray(s.normals, np.float64)) if s.normals is not None
                        else _vertex_normals(s.vertices, s.faces))
        v = s.vertices[s.faces]
        #: each face's geometric normal turned to the outside (cleanup's winding)
        self.outside = _unit(np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])) * self.orient[:, None]

    def image(self, index: int, srgb: bool) -> np.ndarray:
        """(H, W, 4) float32 in 0-1, linearised when the image holds sRGB colour."""
        key = (index, srgb)
        if key not in self._images:
            rgba = decode_image(self.app.images[index].data).astype(np.float32) / 255.0
            if srgb:
                rgba[..., :3] = srgb_to_linear(rgba[..., :3])
            self._images[key] = rgba
        return self._images[key]

    def texcoords(self, set_index: int, faces: np.ndarray, bary: np.ndarray) -> np.ndarray:
        tc = self.surface.texcoords
        if set_index >= len(tc):
            return np.zeros((len(faces), 2))
        return np.einsum("ik,ikc->ic", bary, np.asarray(tc[set_index], np.float64)[
            self.surface.faces[faces]])

    def _slot(self, slot: TextureSlot | None, faces, bary, srgb: bool) -> np.ndarray | None:
        if slot is None or not self.app.images[slot.image].data:
            return None
        return sample_texture(self.image(slot.image, srgb),
                              self.texcoords(slot.texcoord, faces, bary), slot)

    def tangent_frame(self, slot: TextureSlot) -> np.ndarray:
        """(N, 4) per-vertex tangents for a normal texture: the file's TANGENT where given,
        else derived from the slot's UV set (transform applied, V up) like MikkTSpace."""
        key = (slot.texcoord, slot.transform)
        if key in self._tangents:
            return self._tangents[key]
        from .bake import vertex_tangents

        s = self.surface
        n = len(s.vertices)
        uv = (np.asarray(s.texcoords[slot.texcoord], np.float64) if slot.texcoord < len(
            s.texcoords) else np.zeros((n, 2)))
        if slot.transform is not None:
            a, b, c, d, e, f = slot.transform
            uv = np.stack([a * uv[:, 0] + b * uv[:, 1] + c, d * uv[:, 0] + e * uv[:, 1] + f], 1)
        vup = np.stack([uv[:, 0], 1.0 - uv[:, 1]], axis=1)
        derived = vertex_tangents(MeshData(s.vertices, s.faces, uv=vup.astype(np.float32)),
                                  self.normals)
        out = derived
        if s.tangents is not None:
            given = np.asarray(s.tangents, np.float64)
            ok = given[:, 3] != 0
            out = np.where(ok[:, None], given, derived)
        self._tangents[key] = out
        return out

    def evaluate(self, faces: np.ndarray, bary: np.ndarray) -> SurfaceSamples:
        s = self.surface
        t = len(faces)
        mat = s.face_material[faces].astype(np.int64)
        base = np.ones((t, 4), np.float32)
        metal = np.ones(t, np.float32)
        rough = np.ones(t, np.float32)
        occ = np.ones(t, np.float32)
        has_occ = np.zeros(t, bool)
        emis = np.zeros((t, 3), np.float32)
        tri = s.faces[faces]
        normal = _unit(np.einsum("ik,ikc->ic", bary, self.normals[tri]))
        # authored normals are trusted over the winding, but not when they point inside
        flip = np.where(np.einsum("ij,ij->i", normal, self.outside[faces]) < 0, -1.0, 1.0)
        normal *= flip[:, None]
        for m in np.unique(mat):
            sel = np.flatnonzero(mat == m)
            mm = self.app.materials[int(m)]
            f, b = faces[sel], bary[sel]
            col = np.tile(np.asarray(mm.base_color_factor, np.float32), (len(sel), 1))
            tex = self._slot(mm.base_color, f, b, srgb=True)
            if tex is not None:
                col *= tex
            if s.colors is not None:
                col *= np.einsum("ik,ikc->ic", b, np.asarray(s.colors, np.float32)[
                    s.faces[f]]).astype(np.float32)
            base[sel] = col
            mr = self._slot(mm.metallic_roughness, f, b, srgb=False)
            rough[sel] = mm.roughness_factor * (mr[:, 1] if mr is not None else 1.0)
            metal[sel] = mm.metallic_factor * (mr[:, 2] if mr is not None else 1.0)
            ao = self._slot(mm.occlusion, f, b, srgb=False)
            if ao is not None:
                occ[sel] = 1.0 + mm.occlusion.scale * (ao[:, 0] - 1.0)
                has_occ[sel] = True
            e = np.tile(np.asarray(mm.emissive_factor, np.float32), (len(sel), 1))
            et = self._slot(mm.emissive, f, b, srgb=True)
            if et is not None:
                e *= et[:, :3]
            emis[sel] = e
            nt = self._slot(mm.normal, f, b, srgb=False)
            if nt is not None:
                m3 = nt[:, :3].astype(np.float64) * 2.0 - 1.0
                m3[:, :2] *= mm.normal.scale
                tan = self.tangent_frame(mm.normal)
                T = np.einsum("ik,ikc->ic", b, tan[s.faces[f], :3])
                w = np.sign(np.einsum("ik,ik->i", b, tan[s.faces[f], 3]))
                w[w == 0] = 1.0
                N = normal[sel]
                T = _unit(T - N * np.einsum("ij,ij->i", T, N)[:, None])
                # a flipped normal mirrors the frame: B keeps pointing along the texture's +v
                B = np.cross(N, T) * (w * flip[sel])[:, None]
                normal[sel] = _unit(T * m3[:, :1] + B * m3[:, 1:2] + N * m3[:, 2:3])
        return SurfaceSamples(base, np.clip(metal, 0, 1), np.clip(rough, 0, 1),
                              np.clip(occ, 0, 1), has_occ, emis, normal, mat)


def _vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    from .bake import vertex_normals

    return vertex_normals(vertices, faces)


# ---------------------------------------------------------------------------- correspondence


class SourceQuery:
    """Closest points and rays on the source surface, in the asset frame.

    With the cleaned mesh given, only the source faces cleanup kept are candidates: a face
    whose centroid lies off the cleaned surface (by more than ``keep_tolerance`` of the
    bounding-box diagonal) was removed as hidden (an interior shell, a wall, a hose end inside
    its nozzle) and must not lend its colour to the visible surface next to it.
    """

    def __init__(self, appearance: SourceAppearance, clean: MeshData | None = None,
                 keep_tolerance: float = 1e-4) -> None:
        import open3d as o3d

        s = appearance.surface
        self.surface = s
        v = s.vertices[s.faces]
        fn = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
        self.face_normals = _unit(fn)
        self.orient = np.ones(s.n_faces, np.float32)
        self.kept = np.arange(s.n_faces)
        if clean is not None and clean.n_faces:
            dist, self.orient = self._against_clean(clean, v.mean(axis=1))
            diag = float(np.linalg.norm(np.ptp(clean.vertices, axis=0))) or 1.0
            kept = np.flatnonzero(dist <= keep_tolerance * diag)
            if len(kept):
                self.kept = kept
        self.oriented = self.face_normals * self.orient[:, None]
        self.scene = o3d.t.geometry.RaycastingScene()
        self.scene.add_triangles(o3d.core.Tensor(s.vertices.astype(np.float32)),
                                 o3d.core.Tensor(s.faces[self.kept].astype(np.uint32)))

    def _against_clean(self, clean: MeshData, centroids: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
        """(distance of each source face's centroid to the cleaned surface, +1/-1: its normal
        agrees with the cleaned surface's there)."""
        import open3d as o3d

        scene = o3d.t.geometry.RaycastingScene()
        scene.add_triangles(o3d.core.Tensor(clean.vertices.astype(np.float32)),
                            o3d.core.Tensor(clean.faces.astype(np.uint32)))
        out = scene.compute_closest_points(o3d.core.Tensor(centroids.astype(np.float32)))
        prim = out["primitive_ids"].numpy().astype(np.int64)
        dist = np.linalg.norm(out["points"].numpy().astype(np.float64) - centroids, axis=1)
        cv = clean.vertices[clean.faces[prim]]
        cn = np.cross(cv[:, 1] - cv[:, 0], cv[:, 2] - cv[:, 0])
        orient = np.where(np.einsum("ij,ij->i", cn, self.face_normals) < 0, -1.0, 1.0)
        return dist, orient.astype(np.float32)

    def _bary(self, faces: np.ndarray, uv: np.ndarray) -> np.ndarray:
        bary = np.stack([1 - uv[:, 0] - uv[:, 1], uv[:, 0], uv[:, 1]], axis=1)
        bary = np.clip(bary, 0.0, None)
        return bary / np.maximum(bary.sum(1, keepdims=True), 1e-12)

    def find(self, points: np.ndarray, normals: np.ndarray, max_dist: float
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(source face, barycentrics, trusted) per point (see the module docstring)."""
        import open3d as o3d

        out = self.scene.compute_closest_points(o3d.core.Tensor(points.astype(np.float32)))
        q = out["points"].numpy().astype(np.float64)
        face = self.kept[out["primitive_ids"].numpy().astype(np.int64)]
        bary = self._bary(face, out["primitive_uvs"].numpy().astype(np.float64))
        dist = np.linalg.norm(q - points, axis=1)
        agree = np.einsum("ij,ij->i", self.oriented[face], normals) > 0
        ok = (dist <= max_dist) & agree
        bad = np.flatnonzero(~ok)
        if len(bad):
            best_t = np.full(len(bad), np.inf)
            best_f = np.zeros(len(bad), np.int64)
            best_uv = np.zeros((len(bad), 2))
            for sign in (-1.0, 1.0):
                d = sign * normals[bad]
                rays = np.concatenate([points[bad] - d * max_dist, d], axis=1)
                hit = self.scene.cast_rays(o3d.core.Tensor(rays.astype(np.float32)))
                t = hit["t_hit"].numpy().astype(np.float64) - max_dist
                f = hit["primitive_ids"].numpy().astype(np.int64)
                valid = np.isfinite(t) & (f != o3d.t.geometry.RaycastingScene.INVALID_ID)
                f = self.kept[np.where(valid, f, 0)]
                fsafe = f
                agree_r = np.einsum("ij,ij->i", self.oriented[fsafe], normals[bad]) > 0
                take = valid & agree_r & (np.abs(t) <= max_dist) & (np.abs(t) < best_t)
                best_t[take] = np.abs(t[take])
                best_f[take] = f[take]
                best_uv[take] = hit["primitive_uvs"].numpy().astype(np.float64)[take]
            found = np.isfinite(best_t)
            idx = bad[found]
            face[idx] = best_f[found]
            bary[idx] = self._bary(best_f[found], best_uv[found])
            ok[idx] = True
        return face, bary, ok


# ---------------------------------------------------------------------------- the transfer


@dataclass
class TransferMaps:
    base_color: np.ndarray          # (S, S, 4) uint8 sRGB + alpha
    orm: np.ndarray                 # (S, S, 3) uint8
    normal: np.ndarray              # (S, S, 3) uint8
    emissive: np.ndarray | None     # (S, S, 3) uint8 sRGB, None when nothing glows
    face_material: np.ndarray       # (M,) int32 source material per low face
    table: dict                     # the ``materials`` artifact (see ``material_table``)
    stats: dict = field(default_factory=dict)


def material_table(appearance: SourceAppearance, face_material: np.ndarray, name: str) -> dict:
    """The ``materials`` artifact for transferred materials: one output material per source
    material the new faces use, keeping its name and alpha handling. Values are in the
    textures (factors 1)."""
    from .materials import asset_name

    rows = []
    for k in np.unique(face_material):
        m = appearance.materials[int(k)]
        rows.append({"source": int(k), "name": f"{name}-{asset_name(m.name)}",
                     "source_name": m.name, "alpha_mode": m.alpha_mode,
                     "alpha_cutoff": m.alpha_cutoff, "double_sided": m.double_sided,
                     "unlit": m.unlit, "metallic": 1.0, "roughness": 1.0})
    return {"source": "mesh", "materials": rows}


def transfer(low: MeshData, appearance: SourceAppearance, clean: MeshData | None, size: int,
             normals: np.ndarray, tangents: np.ndarray, geometry_normal_map: np.ndarray,
             ao: np.ndarray | None, max_distance: float, dilate_px: int, name: str
             ) -> TransferMaps:
    """Bake ``appearance`` onto ``low``'s UV atlas (see the module docstring).

    ``normals``/``tangents``: the low mesh's vertex frame (as the bake and the exporter use it);
    ``geometry_normal_map``: the bake's map, kept where the source is not trusted;
    ``ao``: the bake's AO image (S, S) in 0-1, or None; ``max_distance`` in world units.
    """
    from ..core.render import get_renderer
    from .bake import (
        _dilate,
        encode_tangent_space,
        surface_frames,
        texel_uv,
        to_rgb8,
        uv_barycentric,
    )

    _, _, face_img = get_renderer().rasterize_uv(low.replace(vertex_normals=None), size)
    index = np.flatnonzero(face_img.reshape(-1) >= 0)
    fids = face_img.reshape(-1)[index].astype(np.int64)
    query = SourceQuery(appearance, clean)
    shader = SourceShader(appearance, query.orient)
    n = len(index)
    base = np.zeros((n, 4), np.float32)
    orm = np.zeros((n, 3), np.float32)
    emis = np.zeros((n, 3), np.float32)
    enc = np.zeros((n, 3), np.float64)
    mat = np.zeros(n, np.int64)
    trusted = np.zeros(n, bool)
    geo = geometry_normal_map.reshape(-1, 3)[index].astype(np.float64) / 255.0 * 2.0 - 1.0
    ao_t = None if ao is None else np.asarray(ao, np.float32).reshape(-1)[index]
    for s in range(0, n, _BATCH):
        sl = slice(s, s + _BATCH)
        bary = uv_barycentric(low, fids[sl], texel_uv(index[sl], size))
        frames = surface_frames(low, normals, tangents, fids[sl], bary)
        face, sb, ok = query.find(frames.position, frames.normal, max_distance)
        smp = shader.evaluate(face, sb)
        base[sl] = smp.base
        occ = smp.occlusion.copy()
        if ao_t is not None:
            occ = np.where(smp.has_occlusion, occ, ao_t[sl])
        orm[sl] = np.stack([occ, smp.roughness, smp.metallic], axis=1)
        emis[sl] = smp.emissive
        target = np.where(ok[:, None], smp.normal, 0.0)
        m = encode_tangent_space(frames, np.where(ok[:, None], target, frames.normal))
        enc[sl] = np.where(ok[:, None], m, geo[sl])
        mat[sl] = smp.material
        trusted[sl] = ok
    face_material = _face_materials(low, fids, mat, query, shader)

    def image(values: np.ndarray, fill) -> np.ndarray:
        return _dilate(values.astype(np.float32), index, size, dilate_px, fill)

    srgb = np.concatenate([linear_to_srgb(base[:, :3]), np.clip(base[:, 3:], 0, 1)], axis=1)
    base_img = np.round(image(srgb, srgb.mean(0) if n else 0.5) * 255).astype(np.uint8)
    orm_img = np.round(np.clip(image(orm, orm.mean(0) if n else 1.0), 0, 1) * 255
                       ).astype(np.uint8)
    nrm_img = image(enc, (0.0, 0.0, 1.0)).reshape(-1, 3)
    nrm_img = to_rgb8(_unit(nrm_img).reshape(size, size, 3))
    emis_img = None
    if n and float(emis.max()) > 1.0 / 255.0:
        e = linear_to_srgb(emis)
        emis_img = np.round(image(e, (0.0, 0.0, 0.0)) * 255).astype(np.uint8)
    table = material_table(appearance, face_material, name)
    stats = {"texels": n, "trusted_share": float(trusted.mean()) if n else 0.0,
             "materials": len(table["materials"]),
             "alpha": any(r["alpha_mode"] != "OPAQUE" for r in table["materials"]),
             "emissive": emis_img is not None}
    return TransferMaps(base_img, orm_img, nrm_img, emis_img, face_material.astype(np.int32),
                        table, stats)


def _face_materials(low: MeshData, fids: np.ndarray, mat: np.ndarray, query: SourceQuery,
                    shader: SourceShader) -> np.ndarray:
    """Per low face, the source material most of its texels found (faces without a texel:
    the material at the closest source point to their centroid)."""
    n_mat = max(len(shader.app.materials), 1)
    counts = np.bincount(fids * n_mat + mat, minlength=low.n_faces * n_mat).reshape(
        low.n_faces, n_mat)
    out = counts.argmax(1)
    empty = np.flatnonzero(counts.sum(1) == 0)
    if len(empty):
        v = low.vertices[low.faces[empty]]
        c = v.mean(axis=1)
        fn = _unit(np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]))
        diag = float(np.linalg.norm(np.ptp(low.vertices, axis=0))) or 1.0
        face, _, _ = query.find(c, fn, 0.05 * diag)
        out[empty] = shader.surface.face_material[face]
    return out

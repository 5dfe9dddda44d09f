"""Material transfer: a vendor mesh's own look, baked onto the new asset's UV atlas.

Why: a mesh-only SKU has no photos to re-texture from, and its materials are what the merchant
sells. After cleanup, simplification and the new UV layout, every texel of the new atlas is a
point on the low surface (``Renderer.rasterize_uv``); the point of the *source* surface it
stands for is found the way the normal bake finds the dense surface (closest points and rays of
``geometry.closest``), and the source's material
is evaluated there exactly as a glTF viewer would (texture slot, UV set, ``KHR_texture_transform``,
sampler wrap and filter, factors, vertex colours).

Finding the source point, with care about nearby surfaces:
0. candidates are the source faces cleanup kept: a face it removed as hidden (an interior
   shell, a hose end inside its nozzle) is no longer on the cleaned surface and may lie closer
   to the simplified surface than the visible face above it;
1. the closest point on the source surface (``geometry.closest``), accepted when it lies
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
  (``geometry.tangents.encode_tangent_space``). Texels whose source answer is not trusted keep the geometry
  bake's normal, so the composed map never loses what the geometry bake had.
- each new face gets the source material most of its texels came from; faces are grouped into
  output materials by source material, each keeping its name, alpha mode, cut-off, double
  sidedness and unlit flag.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from ..core.appearance import SourceAppearance, TextureSlot, decode_image
from ..core.mesh import MeshData
from ..geometry.closest import cast_rays, closest_points, raycasting_scene
from ..geometry.colour import SRGB_LUT, linear_to_srgb, to_uint8
from ..geometry.dilation import texels_to_image
from ..geometry.normals import face_normals, vertex_normals
from ..geometry.normals import unit as _unit
from ..geometry.tangents import encode_tangent_space, surface_frames, vertex_tangents
from ..geometry.texture_sampling import sample_wrapped, texel_uv, uv_barycentric
from .materials import asset_name
from .normal_bake import to_rgb8

log = logging.getLogger(__name__)

_BATCH = 1_000_000


# ---------------------------------------------------------------------------- texture sampling


def _transformed(uv: np.ndarray, transform: tuple[float, ...] | None) -> np.ndarray:
    """Texture coordinates through a ``KHR_texture_transform`` (2x3 affine), if any."""
    uv = np.asarray(uv, np.float64)
    if transform is None:
        return uv
    a, b, c, d, e, f = transform
    return np.stack([a * uv[:, 0] + b * uv[:, 1] + c, d * uv[:, 0] + e * uv[:, 1] + f], axis=1)


def sample_texture(image: np.ndarray, uv: np.ndarray, slot: TextureSlot) -> np.ndarray:
    """(T, C) float32 texels of ``image`` (H, W, C) at glTF texture coordinates ``uv``
    (t down), after the slot's transform, with its sampler's wrap modes and filter."""
    return sample_wrapped(image, _transformed(uv, slot.transform), slot.wrap_s, slot.wrap_t,
                          slot.nearest)


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
                        else vertex_normals(s.vertices, s.faces))
        #: each face's geometric normal turned to the outside (cleanup's winding)
        self.outside = face_normals(s.vertices, s.faces) * self.orient[:, None]

    def image(self, index: int, srgb: bool) -> np.ndarray:
        """(H, W, 4) float32 in 0-1, linearised when the image holds sRGB colour."""
        key = (index, srgb)
        if key not in self._images:
            raw = decode_image(self.app.images[index].data)
            rgba = raw.astype(np.float32) / 255.0
            if srgb:
                rgba[..., :3] = SRGB_LUT[raw[..., :3]]
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
        s = self.surface
        n = len(s.vertices)
        uv = _transformed(s.texcoords[slot.texcoord] if slot.texcoord < len(s.texcoords)
                          else np.zeros((n, 2)), slot.transform)
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
        s = appearance.surface
        self.surface = s
        self.face_normals = face_normals(s.vertices, s.faces)
        self.orient = np.ones(s.n_faces, np.float32)
        self.kept = np.arange(s.n_faces)
        if clean is not None and clean.n_faces:
            dist, self.orient = self._against_clean(clean, s.vertices[s.faces].mean(axis=1))
            diag = float(np.linalg.norm(np.ptp(clean.vertices, axis=0))) or 1.0
            kept = np.flatnonzero(dist <= keep_tolerance * diag)
            if len(kept):
                self.kept = kept
        self.oriented = self.face_normals * self.orient[:, None]
        self.scene = raycasting_scene(s.vertices, s.faces[self.kept])

    def _against_clean(self, clean: MeshData, centroids: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
        """(distance of each source face's centroid to the cleaned surface, +1/-1: its normal
        agrees with the cleaned surface's there)."""
        q, prim, _ = closest_points(raycasting_scene(clean.vertices, clean.faces), centroids)
        dist = np.linalg.norm(q - centroids, axis=1)
        cn = face_normals(clean.vertices, clean.faces)[prim]
        orient = np.where(np.einsum("ij,ij->i", cn, self.face_normals) < 0, -1.0, 1.0)
        return dist, orient.astype(np.float32)

    def find(self, points: np.ndarray, normals: np.ndarray, max_dist: float
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(source face, barycentrics, trusted) per point (see the module docstring)."""
        q, prim, bary = closest_points(self.scene, points)
        face = self.kept[prim]
        bary = _clamped(bary)
        dist = np.linalg.norm(q - points, axis=1)
        agree = np.einsum("ij,ij->i", self.oriented[face], normals) > 0
        ok = (dist <= max_dist) & agree
        bad = np.flatnonzero(~ok)
        if len(bad):
            best_t = np.full(len(bad), np.inf)
            best_f = np.zeros(len(bad), np.int64)
            best_bary = np.zeros((len(bad), 3))
            for sign in (-1.0, 1.0):
                d = sign * normals[bad]
                t, f, b = cast_rays(self.scene, points[bad] - d * max_dist, d)
                valid = f >= 0
                t = t - max_dist
                f = self.kept[np.where(valid, f, 0)]
                agree_r = np.einsum("ij,ij->i", self.oriented[f], normals[bad]) > 0
                take = valid & agree_r & (np.abs(t) <= max_dist) & (np.abs(t) < best_t)
                best_t[take] = np.abs(t[take])
                best_f[take] = f[take]
                best_bary[take] = b[take]
            found = np.isfinite(best_t)
            idx = bad[found]
            face[idx] = best_f[found]
            bary[idx] = _clamped(best_bary[found])
            ok[idx] = True
        return face, bary, ok


def _clamped(bary: np.ndarray) -> np.ndarray:
    """Barycentric coordinates clipped to the face (float noise of the ray tracer) and
    renormalised."""
    bary = np.clip(bary, 0.0, None)
    return bary / np.maximum(bary.sum(1, keepdims=True), 1e-12)


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
    from ..geometry.render import get_renderer

    face_img = get_renderer().rasterize_uv_faces(low, size)
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
        return texels_to_image(size, index, values.astype(np.float32), dilate_px, fill)

    srgb = np.concatenate([linear_to_srgb(base[:, :3]), np.clip(base[:, 3:], 0, 1)], axis=1)
    base_img = to_uint8(image(srgb, srgb.mean(0) if n else 0.5))
    orm_img = to_uint8(image(orm, orm.mean(0) if n else 1.0))
    nrm_img = image(enc, (0.0, 0.0, 1.0)).reshape(-1, 3)
    nrm_img = to_rgb8(_unit(nrm_img).reshape(size, size, 3))
    emis_img = None
    if n and float(emis.max()) > 1.0 / 255.0:
        emis_img = to_uint8(image(linear_to_srgb(emis), (0.0, 0.0, 0.0)))
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
        c = low.vertices[low.faces[empty]].mean(axis=1)
        fn = face_normals(low.vertices, low.faces[empty])
        diag = float(np.linalg.norm(np.ptp(low.vertices, axis=0))) or 1.0
        face, _, _ = query.find(c, fn, 0.05 * diag)
        out[empty] = shader.surface.face_material[face]
    return out

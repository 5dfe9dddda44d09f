"""bake: the dense surface's detail as a tangent-space normal map, plus ambient occlusion.

Why: the simplified ``mesh`` (5k-100k triangles) loses the small relief of ``clean_mesh``
(up to millions); a normal map gives it back to the shading at no geometry cost, and AO darkens
creases the way a real-time viewer cannot. Both are baked per texel of the UV atlas: every
covered texel is a point on the low surface (``Renderer.rasterize_uv``).

Normal map convention (glTF 2.0: OpenGL, +Y green up, RGB = n * 0.5 + 0.5):
    Tangent frame = MikkTSpace-style per-vertex tangents: per face, T = dP/du from the UV
    gradients (V up, as ``MeshData.uv`` stores it), projected on each corner's vertex-normal
    plane (Gram-Schmidt) and accumulated with corner-angle weights; handedness
    w = sign of the UV area (+1 for counter-clockwise charts), bitangent B = cross(N, T) * w,
    pointing along +v, i.e. up in the image. This is what Blender computes and exports; glTF
    viewers that derive MikkTSpace from the V-flipped glTF texcoords flip w back (three.js
    ``negateSign``); the exporter writes ``vertex_tangents`` as TANGENT, so viewers need not
    derive a frame at all. Checked against Blender 3.4's Cycles bake of the same low mesh
    (benchmarks/uv_bake.py): its map, decoded in this frame, is within ~0.4 degrees of the dense
    normals (a flipped green channel would be ~13 degrees off). Vertex normals are the exporter's: ``mesh.vertex_normals`` when present, else
    ``export.seamless_normals`` (smooth across UV seams).
    Per texel the viewer interpolates N, T and B and decodes n = normalize([T B N] m); the
    bake inverts exactly that (m = [T B N]^-1 n), so a non-orthogonal interpolated frame still
    decodes to the dense normal.
    Target normal: the closest point on the dense mesh (open3d ``RaycastingScene``), with the
    dense mesh's smooth vertex normals interpolated there. Beyond ``max_distance``, or where
    the closest point faces the other way (the far side of a thin part), the texel keeps the
    low normal (encodes as neutral (128, 128, 255)); texels of faces with degenerate UVs are
    neutral too. Charts are dilated by ``dilate_px`` texels so mipmaps do not bleed.

AO: ``ao_rays`` cosine-weighted rays per texel over the hemisphere of the low surface normal,
tested against the low mesh up to ``ao_distance``; AO = unoccluded fraction. Written alone as
``texture/ao`` (grey PNG) and packed as ``texture/orm`` (R = AO, G = roughness, B = metal, the
glTF layout), so a later PBR stage can rewrite G and B per part.

Metrics: ``bake_normal_error_mean_deg`` / ``_median_deg``: angle between the dense normal and
the normal a viewer would shade with (map decoded from the 8-bit PNG, bilinear) at uniform
samples on the low surface (AssetGen's "baked mean"); ``bake_normal_error_low_mean_deg``: the
same without the map (what the map buys).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass

import numpy as np

from ..core.appearance import has_appearance, load_appearance
from ..core.artifacts import load_json, load_mesh, save_bytes, save_image, save_json
from ..core.errors import ProcessingError
from ..core.mesh import MeshData
from ..core.stage import check, stage
from ..core.types import AssetState, Resources, StageResult

log = logging.getLogger(__name__)

NAME = "bake"
DEVICES = ("cpu",)
NEUTRAL = (128, 128, 255)
_RAY_BATCH = 2_000_000


@dataclass(frozen=True)
class BakeOptions:
    """Options of the bake stage.

    size: edge of the baked maps in px (power of two, 64..8192); match the texture size.
    ao_rays: rays per texel for ambient occlusion (0 = no AO: AO is 1 everywhere).
    ao_distance: AO ray length as a share of the bounding-box diagonal (occluders further
        away do not darken).
    max_distance: largest low-to-dense distance, as a share of the bounding-box diagonal,
        for a texel to take the dense normal (further = another surface: keep the low normal).
    dilate_px: texels the maps are grown past chart borders (mipmap and bilinear margin).
    roughness, metallic: the constant G and B of the ORM map.
    error_samples: surface samples for the normal-error metric.
    seed: AO ray and error-sample randomness.
    device: "cpu" (open3d's Embree ray tracer on all cores).
    """

    size: int = 1024
    ao_rays: int = 16
    ao_distance: float = 0.1
    max_distance: float = 0.05
    dilate_px: int = 8
    roughness: float = 0.6
    metallic: float = 0.0
    error_samples: int = 20_000
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        s = self.size
        check(isinstance(s, int) and 64 <= s <= 8192 and s & (s - 1) == 0,
              f"bake.size must be a power of two in 64..8192, got {s!r}")
        check(isinstance(self.ao_rays, int) and 0 <= self.ao_rays <= 1024,
              f"bake.ao_rays must be an integer in 0..1024, got {self.ao_rays!r}")
        check(0 < self.ao_distance <= 10, f"bake.ao_distance must be in (0, 10], got "
              f"{self.ao_distance}")
        check(0 < self.max_distance <= 10, f"bake.max_distance must be in (0, 10], got "
              f"{self.max_distance}")
        check(isinstance(self.dilate_px, int) and 0 <= self.dilate_px <= 256,
              f"bake.dilate_px must be an integer in 0..256, got {self.dilate_px!r}")
        check(0 <= self.roughness <= 1, f"bake.roughness must be in [0, 1], got {self.roughness}")
        check(0 <= self.metallic <= 1, f"bake.metallic must be in [0, 1], got {self.metallic}")
        check(isinstance(self.error_samples, int) and 0 <= self.error_samples <= 10_000_000,
              f"bake.error_samples must be an integer in 0..1e7, got {self.error_samples!r}")
        check(self.device in DEVICES, f"bake.device must be one of {DEVICES}, got "
              f"{self.device!r}")


# ---------------------------------------------------------------------------- geometry helpers


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.where(n > 1e-30, n, 1.0)


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted smooth vertex normals (bincount: fast on million-face meshes)."""
    v = vertices[faces]
    fn = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
    n = np.zeros((len(vertices), 3))
    for c in range(3):
        for k in range(3):
            n[:, c] += np.bincount(faces[:, k], fn[:, c], minlength=len(vertices))
    return _unit(n)


def low_normals(mesh: MeshData) -> np.ndarray:
    """The vertex normals the exporter will write (see the module docstring)."""
    if mesh.vertex_normals is not None:
        return _unit(np.asarray(mesh.vertex_normals, np.float64))
    from .export import seamless_normals

    return _unit(np.asarray(seamless_normals(mesh), np.float64))


def _corner_angles(p: np.ndarray) -> np.ndarray:
    """(M, 3) interior angle at each corner of each triangle."""
    out = np.empty(p.shape[:2])
    for k in range(3):
        a = _unit(p[:, (k + 1) % 3] - p[:, k])
        b = _unit(p[:, (k + 2) % 3] - p[:, k])
        out[:, k] = np.arccos(np.clip(np.einsum("ij,ij->i", a, b), -1.0, 1.0))
    return out


def vertex_tangents(mesh: MeshData, normals: np.ndarray) -> np.ndarray:
    """(N, 4) unit tangents + handedness w, MikkTSpace-style (see the module docstring).

    Vertices whose faces all have degenerate UVs get any unit vector orthogonal to the normal.
    """
    f = mesh.faces
    p = mesh.vertices[f]
    t = np.asarray(mesh.uv, np.float64)[f]
    e1, e2 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
    d1, d2 = t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]
    r = d1[:, 0] * d2[:, 1] - d2[:, 0] * d1[:, 1]
    ok = np.abs(r) > 1e-20
    tf = (e1 * d2[:, 1:2] - e2 * d1[:, 1:2]) / np.where(ok, r, 1.0)[:, None]
    tf[~ok] = 0.0
    weight = _corner_angles(p) * ok[:, None]
    acc = np.zeros((mesh.n_vertices, 3))
    hand = np.zeros(mesh.n_vertices)
    for k in range(3):
        n = normals[f[:, k]]
        proj = _unit(tf - n * np.einsum("ij,ij->i", tf, n)[:, None]) * weight[:, k:k + 1]
        for c in range(3):
            acc[:, c] += np.bincount(f[:, k], proj[:, c], minlength=mesh.n_vertices)
        hand += np.bincount(f[:, k], np.sign(r) * weight[:, k], minlength=mesh.n_vertices)
    tang = acc - normals * np.einsum("ij,ij->i", acc, normals)[:, None]
    bad = np.linalg.norm(tang, axis=1) < 1e-12
    if bad.any():  # any perpendicular: cross with the axis least aligned with the normal
        axis = np.eye(3)[np.argmin(np.abs(normals[bad]), axis=1)]
        tang[bad] = np.cross(normals[bad], axis)
    return np.concatenate([_unit(tang), np.where(hand < 0, -1.0, 1.0)[:, None]], axis=1)


def uv_barycentric(mesh: MeshData, faces: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Barycentric coordinates (T, 3) of UV points in the given faces' UV triangles."""
    t = np.asarray(mesh.uv, np.float64)[mesh.faces[faces]]
    a, b, c = t[:, 0], t[:, 1], t[:, 2]
    v0, v1, v2 = b - a, c - a, uv - a
    den = v0[:, 0] * v1[:, 1] - v1[:, 0] * v0[:, 1]
    den = np.where(np.abs(den) < 1e-30, 1e-30, den)
    l1 = (v2[:, 0] * v1[:, 1] - v1[:, 0] * v2[:, 1]) / den
    l2 = (v0[:, 0] * v2[:, 1] - v2[:, 0] * v0[:, 1]) / den
    bary = np.clip(np.stack([1 - l1 - l2, l1, l2], axis=1), 0.0, None)
    return bary / np.maximum(bary.sum(1, keepdims=True), 1e-12)


@dataclass(frozen=True)
class SurfaceFrames:
    """Points on the low surface with the frame a viewer interpolates there."""

    position: np.ndarray   # (T, 3)
    normal: np.ndarray     # (T, 3) unit, interpolated vertex normal
    tangent: np.ndarray    # (T, 3) unit
    bitangent: np.ndarray  # (T, 3) unit, interpolated cross(N, T) * w
    degenerate: np.ndarray  # (T,) bool: the face has (nearly) no UV area


def surface_frames(mesh: MeshData, normals: np.ndarray, tangents: np.ndarray,
                   faces: np.ndarray, bary: np.ndarray) -> SurfaceFrames:
    """Interpolate position, normal, tangent and bitangent at barycentric points of faces."""
    tri = mesh.faces[faces]

    def interp(attr: np.ndarray) -> np.ndarray:
        return np.einsum("ik,ikc->ic", bary, attr[tri])

    bit = np.cross(normals, tangents[:, :3]) * tangents[:, 3:4]
    t = np.asarray(mesh.uv, np.float64)[tri]
    d1, d2 = t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]
    uv_area = np.abs(d1[:, 0] * d2[:, 1] - d2[:, 0] * d1[:, 1])
    return SurfaceFrames(interp(mesh.vertices), _unit(interp(normals)),
                         _unit(interp(tangents[:, :3])), _unit(interp(bit)), uv_area < 1e-14)


def encode_tangent_space(frames: SurfaceFrames, target: np.ndarray) -> np.ndarray:
    """m with normalize([T B N] m) == target (the viewer's decode, inverted); unit, z >= 0."""
    basis = np.stack([frames.tangent, frames.bitangent, frames.normal], axis=2)  # columns
    det = np.linalg.det(basis)
    ok = np.abs(det) > 1e-6
    m = np.tile([0.0, 0.0, 1.0], (len(target), 1))
    if ok.any():
        m[ok] = np.linalg.solve(basis[ok], target[ok][..., None])[..., 0]
    m = _unit(m)
    m[:, 2] = np.maximum(m[:, 2], 0.0)  # a map cannot point into the surface
    m = _unit(m)
    m[frames.degenerate | ~ok] = (0.0, 0.0, 1.0)
    return m


def decode_tangent_space(frames: SurfaceFrames, m: np.ndarray) -> np.ndarray:
    """World normal a viewer shades with: normalize(T m.x + B m.y + N m.z)."""
    return _unit(frames.tangent * m[:, :1] + frames.bitangent * m[:, 1:2]
                 + frames.normal * m[:, 2:3])


# ---------------------------------------------------------------------------- ray queries


class DenseSurface:
    """Closest-point queries on the dense mesh, with its smooth normal at the answer."""

    def __init__(self, dense: MeshData) -> None:
        import open3d as o3d

        self.scene = o3d.t.geometry.RaycastingScene()
        self.scene.add_triangles(o3d.core.Tensor(dense.vertices.astype(np.float32)),
                                 o3d.core.Tensor(dense.faces.astype(np.uint32)))
        self.faces = dense.faces
        self.normals = (vertex_normals(dense.vertices, dense.faces)
                        if dense.vertex_normals is None
                        else _unit(np.asarray(dense.vertex_normals, np.float64)))

    def closest(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(distance (T,), unit normal (T, 3)) of the closest dense surface point."""
        import open3d as o3d

        out = self.scene.compute_closest_points(o3d.core.Tensor(points.astype(np.float32)))
        q = out["points"].numpy().astype(np.float64)
        prim = out["primitive_ids"].numpy().astype(np.int64)
        uv = out["primitive_uvs"].numpy().astype(np.float64)
        bary = np.stack([1 - uv[:, 0] - uv[:, 1], uv[:, 0], uv[:, 1]], axis=1)
        n = _unit(np.einsum("ik,ikc->ic", bary, self.normals[self.faces[prim]]))
        return np.linalg.norm(q - points, axis=1), n


def target_normals(frames: SurfaceFrames, dense: DenseSurface, max_dist: float
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Dense normal per point, or the low normal where the dense answer is not trusted."""
    dist, n = dense.closest(frames.position)
    keep = (dist <= max_dist) & (np.einsum("ij,ij->i", n, frames.normal) > 0)
    return np.where(keep[:, None], n, frames.normal), keep


def cosine_directions(normals: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """(T, k, 3) cosine-weighted directions on each normal's hemisphere (stratified in
    azimuth, one random rotation per point so neighbouring texels do not band)."""
    t = len(normals)
    u1 = rng.random((t, k))
    phi = 2 * np.pi * ((np.arange(k)[None, :] + rng.random((t, 1))) / k)
    r = np.sqrt(u1)
    local = np.stack([r * np.cos(phi), r * np.sin(phi), np.sqrt(1 - u1)], axis=2)
    axis = np.eye(3)[np.argmin(np.abs(normals), axis=1)]
    tx = _unit(np.cross(normals, axis))
    ty = np.cross(normals, tx)
    return (local[..., :1] * tx[:, None] + local[..., 1:2] * ty[:, None]
            + local[..., 2:3] * normals[:, None])


def ambient_occlusion(mesh: MeshData, points: np.ndarray, normals: np.ndarray, rays: int,
                      distance: float, seed: int) -> np.ndarray:
    """Unoccluded share of ``rays`` cosine-weighted rays per point (1 = open)."""
    import open3d as o3d

    if rays == 0 or len(points) == 0:
        return np.ones(len(points))
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(mesh.vertices.astype(np.float32)),
                        o3d.core.Tensor(mesh.faces.astype(np.uint32)))
    rng = np.random.default_rng(seed)
    eps = 1e-3 * distance  # off the surface, so a ray does not hit its own face
    open_share = np.empty(len(points))
    step = max(1, _RAY_BATCH // rays)
    for s in range(0, len(points), step):
        n = normals[s:s + step]
        d = cosine_directions(n, rays, rng)
        o = np.broadcast_to((points[s:s + step] + eps * n)[:, None], d.shape)
        batch = np.concatenate([o, d], axis=2).reshape(-1, 6).astype(np.float32)
        hit = scene.test_occlusions(o3d.core.Tensor(batch), tnear=0.0, tfar=distance).numpy()
        open_share[s:s + step] = 1.0 - hit.reshape(-1, rays).mean(axis=1)
    return open_share


# ---------------------------------------------------------------------------- maps


def texel_uv(index: np.ndarray, size: int) -> np.ndarray:
    """UV (V up) of texel centres given flat indices (row 0 = top of the image)."""
    row, col = np.divmod(index, size)
    return np.stack([(col + 0.5) / size, 1.0 - (row + 0.5) / size], axis=1)


def _dilate(values: np.ndarray, valid: np.ndarray, size: int, px: int, fill) -> np.ndarray:
    from .texture import dilate

    img = np.zeros((size * size, values.shape[1]), np.float32)
    ok = np.zeros(size * size, bool)
    img[valid] = values
    ok[valid] = True
    img, ok = dilate(img.reshape(size, size, -1), ok.reshape(size, size), px)
    img[~ok] = fill
    return img


def to_rgb8(m: np.ndarray) -> np.ndarray:
    """Tangent-space unit vectors -> uint8 RGB (n * 0.5 + 0.5)."""
    return np.clip(np.round((m * 0.5 + 0.5) * 255.0), 0, 255).astype(np.uint8)


def sample_bilinear(image: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear lookup at UV (V up) with clamp-to-edge, as a viewer samples a texture."""
    size_y, size_x = image.shape[:2]
    x = np.clip(uv[:, 0] * size_x - 0.5, 0, size_x - 1)
    y = np.clip((1.0 - uv[:, 1]) * size_y - 0.5, 0, size_y - 1)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    x1, y1 = np.minimum(x0 + 1, size_x - 1), np.minimum(y0 + 1, size_y - 1)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    img = image.astype(np.float64)
    return ((img[y0, x0] * (1 - fx) + img[y0, x1] * fx) * (1 - fy)
            + (img[y1, x0] * (1 - fx) + img[y1, x1] * fx) * fy)


def sample_surface(mesh: MeshData, count: int, rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Uniform points on the surface: (face ids, barycentrics)."""
    v = mesh.vertices[mesh.faces]
    area = 0.5 * np.linalg.norm(np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]), axis=1)
    faces = rng.choice(mesh.n_faces, size=count, p=area / area.sum())
    r1, r2 = np.sqrt(rng.random(count)), rng.random(count)
    bary = np.stack([1 - r1, r1 * (1 - r2), r1 * r2], axis=1)
    return faces, bary


def normal_error(mesh: MeshData, normals: np.ndarray, tangents: np.ndarray,
                 normal_map: np.ndarray, dense: DenseSurface, count: int, seed: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Angles (deg) dense normal vs shaded normal, with the map and without, at uniform
    samples of the low surface."""
    faces, bary = sample_surface(mesh, count, np.random.default_rng(seed + 1))
    frames = surface_frames(mesh, normals, tangents, faces, bary)
    uv = np.einsum("ik,ikc->ic", bary, np.asarray(mesh.uv, np.float64)[mesh.faces[faces]])
    m = _unit(sample_bilinear(normal_map, uv) / 255.0 * 2.0 - 1.0)
    shaded = decode_tangent_space(frames, m)
    _, truth = dense.closest(frames.position)

    def angle(a: np.ndarray) -> np.ndarray:
        return np.degrees(np.arccos(np.clip(np.einsum("ij,ij->i", a, truth), -1.0, 1.0)))

    return angle(shaded), angle(frames.normal)


@dataclass(frozen=True)
class BakedMaps:
    normal: np.ndarray   # (S, S, 3) uint8
    ao: np.ndarray       # (S, S) float32 in [0, 1]
    texels: int          # covered texels
    dense_share: float   # share of covered texels that took the dense normal
    ao_mean: float       # mean AO over covered texels


def bake_maps(low: MeshData, dense: DenseSurface, options: BakeOptions, normals: np.ndarray,
              tangents: np.ndarray) -> BakedMaps:
    """Normal map and AO for ``low`` (with UVs) against the dense surface."""
    from ..core.render import get_renderer

    size = options.size
    diag = float(np.linalg.norm(np.ptp(low.vertices, axis=0))) or 1.0
    _, _, face = get_renderer().rasterize_uv(low.replace(vertex_normals=None), size)
    index = np.flatnonzero(face.reshape(-1) >= 0)
    fids = face.reshape(-1)[index].astype(np.int64)
    bary = uv_barycentric(low, fids, texel_uv(index, size))
    frames = surface_frames(low, normals, tangents, fids, bary)
    target, took = target_normals(frames, dense, options.max_distance * diag)
    m = encode_tangent_space(frames, target)
    img = _dilate(m, index, size, options.dilate_px, (0.0, 0.0, 1.0))
    normal = to_rgb8(_unit(img.reshape(-1, 3)).reshape(size, size, 3))
    ao = ambient_occlusion(low, frames.position, frames.normal, options.ao_rays,
                           options.ao_distance * diag, options.seed)
    ao_mean = float(ao.mean()) if len(ao) else 1.0
    # three channels: OpenCV's filters drop a single channel axis
    ao_img = _dilate(np.repeat(ao[:, None], 3, axis=1), index, size, options.dilate_px,
                     ao_mean)[..., 0]
    return BakedMaps(normal, np.clip(ao_img, 0.0, 1.0), len(index),
                     float(took.mean()) if len(took) else 0.0, ao_mean)


def orm_image(ao: np.ndarray, roughness: float, metallic: float) -> np.ndarray:
    """(S, S, 3) uint8: R = AO, G = roughness, B = metal (linear values, as glTF reads them)."""
    orm = np.empty(ao.shape + (3,), np.uint8)
    orm[..., 0] = np.round(np.clip(ao, 0, 1) * 255)
    orm[..., 1] = round(roughness * 255)
    orm[..., 2] = round(metallic * 255)
    return orm


# ---------------------------------------------------------------------------- the stage


def _inputs(state: AssetState) -> tuple[MeshData, MeshData]:
    for key, fix in (("mesh", "run the uv stage before bake"),
                     ("clean_mesh", "run cleanup before bake (bake reads the dense mesh)")):
        if key not in state.artifacts:
            raise ProcessingError(f"bake needs the '{key}' artifact, which is missing", fix)
    low, dense = load_mesh(state, "mesh"), load_mesh(state, "clean_mesh")
    if low.uv is None:
        raise ProcessingError("the mesh to bake onto has no UVs", "run the uv stage before bake")
    if low.n_faces == 0 or dense.n_faces == 0:
        raise ProcessingError(f"nothing to bake: low mesh {low.n_faces} faces, dense mesh "
                              f"{dense.n_faces} faces", "check the cleanup and simplify outputs")
    return low, dense


@stage(NAME, "2", BakeOptions, Resources(cpus=1, memory_mb=4096))
def bake(state: AssetState, options: BakeOptions) -> StageResult:
    """Write ``texture/normal``, ``texture/ao`` and ``texture/orm`` for ``mesh``."""
    t0 = time.perf_counter()
    low, dense_mesh = _inputs(state)
    normals = low_normals(low)
    tangents = vertex_tangents(low, normals)
    dense = DenseSurface(dense_mesh)
    maps = bake_maps(low, dense, options, normals, tangents)
    err, err_low = (normal_error(low, normals, tangents, maps.normal, dense,
                                 options.error_samples, options.seed)
                    if options.error_samples else (np.zeros(0), np.zeros(0)))
    artifacts = {
        "texture/normal": save_image(state, maps.normal),
        "texture/ao": save_image(state, np.round(maps.ao * 255).astype(np.uint8)),
        "texture/orm": save_image(state, orm_image(maps.ao, options.roughness,
                                                        options.metallic)),
    }
    source_metrics = {}
    if has_appearance(state):  # a vendor mesh's own look: bake it into the same atlas
        look, source_metrics = _source_look(state, options, low, dense_mesh, normals, tangents,
                                            maps)
        artifacts.update(look)
    seconds = time.perf_counter() - t0
    stat = lambda f, a: round(float(f(a)), 3) if len(a) else None
    metrics = {
        "bake_normal_error_mean_deg": stat(np.mean, err),
        "bake_normal_error_median_deg": stat(np.median, err),
        "bake_normal_error_low_mean_deg": stat(np.mean, err_low),
        "bake_seconds": round(seconds, 3),
        "bake_size": options.size,
        "bake_ao_mean": round(maps.ao_mean, 4),
        "bake_texels": maps.texels,
        "bake_dense_share": round(maps.dense_share, 4),
        **source_metrics,
    }
    log.info("%s bake: %d px, %d texels, normal error %.2f deg (low mesh alone %.2f), "
             "AO mean %.2f, %.1f s", state.sku, options.size, maps.texels,
             metrics["bake_normal_error_mean_deg"] or 0.0,
             metrics["bake_normal_error_low_mean_deg"] or 0.0, maps.ao_mean, seconds)
    return StageResult(artifacts=artifacts, metrics=metrics)


# ---------------------------------------------------------------------------- the source's look


def _source_look(state: AssetState, options: BakeOptions, low: MeshData, clean: MeshData,
                 normals: np.ndarray, tangents: np.ndarray, maps: BakedMaps
                 ) -> tuple[dict, dict]:
    """Transfer an imported mesh's materials (``tasks/material_transfer.py``) onto the atlas:
    base colour (+ alpha), ORM, emissive, the normal map composed with the source's, and the
    ``materials`` table with the source material of every face. A plain single-material
    source gives way to photos when the SKU has some (see README, "What wins")."""
    import io

    from .material_transfer import transfer
    from .materials import asset_name

    appearance = load_appearance(state)
    photos = any(k.startswith("image/") for k in state.artifacts)
    if photos and not appearance.rich:
        return {}, {"bake_source_look": False}
    if "placement" in state.artifacts:
        placement = np.asarray(load_json(state, "placement")["matrix"], np.float64)
        appearance = dataclasses.replace(
            appearance, surface=appearance.surface.transformed(placement))
    diag = float(np.linalg.norm(np.ptp(low.vertices, axis=0))) or 1.0
    out = transfer(low, appearance, clean, options.size, normals, tangents, maps.normal,
                   maps.ao, options.max_distance * diag, options.dilate_px,
                   asset_name(state.sku))
    buf = io.BytesIO()
    np.save(buf, out.face_material, allow_pickle=False)
    artifacts = {"texture/base_color": save_image(state, out.base_color),
                 "texture/orm": save_image(state, out.orm),
                 "texture/normal": save_image(state, out.normal),
                 "materials": save_json(state, out.table),
                 "material_faces": save_bytes(state, buf.getvalue(), ".npy")}
    if out.emissive is not None:
        artifacts["texture/emissive"] = save_image(state, out.emissive)
    metrics = {"bake_source_look": True,
               "bake_source_trusted_share": round(out.stats["trusted_share"], 4),
               "bake_source_materials": out.stats["materials"],
               "bake_source_alpha": out.stats["alpha"],
               "bake_source_emissive": out.stats["emissive"]}
    log.info("%s bake: source materials transferred (%d materials, %.1f%% of texels on a "
             "trusted source point, alpha %s, emissive %s)", state.sku, out.stats["materials"],
             100 * out.stats["trusted_share"], out.stats["alpha"], out.stats["emissive"])
    return artifacts, metrics

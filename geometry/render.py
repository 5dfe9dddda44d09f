"""Headless OpenGL rendering (moderngl + EGL) in the project's camera convention.

Why OpenGL and not a software rasteriser: EGL runs on Mesa's llvmpipe on a CPU-only machine and on
the GPU where there is one, with the same code, and z-buffered face-id renders of a 1M-face mesh
stay well under a second. One standalone context per process is created lazily and cached by
``get_renderer()``; it is not thread-safe (use one per process, as Ray workers do).

Conventions (see ``core/camera.py``): the matrices come from ``Camera.world_to_camera`` and
``Camera.gl_projection``, so a rendered pixel agrees with ``Camera.project``. Every image returned
has row 0 at the top. Textures are (h, w, 3|4) uint8 sRGB with row 0 at the top and are sampled at
(u, 1 - v) in row terms (glTF convention: V up in ``MeshData.uv``).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import numpy as np

from ..core.camera import Camera
from ..core.mesh import MeshData

log = logging.getLogger(__name__)

#: Shading constants: a headlight (light at the camera) plus ambient, applied in linear light.
AMBIENT = 0.35
DIFFUSE = 0.65
GREY = (0.7, 0.7, 0.7)

_COLOR_VS = """
#version 330
uniform mat4 u_view;
uniform mat4 u_proj;
in vec3 in_pos;
in vec3 in_normal;
in vec4 in_color;
in vec2 in_uv;
out vec3 v_pos;
out vec3 v_normal;
out vec4 v_color;
out vec2 v_uv;
void main() {
    vec4 p = u_view * vec4(in_pos, 1.0);
    v_pos = p.xyz;
    v_normal = mat3(u_view) * in_normal;
    v_color = in_color;
    v_uv = in_uv;
    gl_Position = u_proj * p;
}
"""

_COLOR_FS = """
#version 330
uniform sampler2D u_tex;
uniform int u_mode;          // 0 = vertex colour, 1 = texture
uniform int u_lambert;       // 0 = unlit, 1 = headlight + ambient
uniform int u_has_normals;   // 0 = flat normals from derivatives
uniform float u_ambient;
uniform float u_diffuse;
uniform int u_light_mode;    // 0 = headlight, 1 = directional light fixed to the camera
uniform vec3 u_light;        // its direction (camera space, towards the light)
in vec3 v_pos;
in vec3 v_normal;
in vec4 v_color;
in vec2 v_uv;
out vec4 f_color;
vec3 to_linear(vec3 c) { return pow(c, vec3(2.2)); }
vec3 to_srgb(vec3 c) { return pow(clamp(c, 0.0, 1.0), vec3(1.0 / 2.2)); }
void main() {
    vec3 c = v_color.rgb;
    if (u_mode == 1) {
        c = texture(u_tex, vec2(v_uv.x, 1.0 - v_uv.y)).rgb;
    }
    if (u_lambert == 1) {
        vec3 n;
        if (u_has_normals == 1) {
            n = normalize(v_normal);
        } else {
            n = normalize(cross(dFdx(v_pos), dFdy(v_pos)));
        }
        vec3 l = normalize(-v_pos);   // headlight: towards the camera
        float shade = u_ambient + u_diffuse * abs(dot(n, l));
        if (u_light_mode == 1) {
            if (dot(n, l) < 0.0) { n = -n; }   // the side facing the camera
            shade = u_ambient + u_diffuse * max(dot(n, u_light), 0.0);
        }
        c = to_srgb(to_linear(c) * shade);
    }
    f_color = vec4(c, 1.0);
}
"""

_ID_VS = """
#version 330
uniform mat4 u_view;
uniform mat4 u_proj;
in vec3 in_pos;
out float v_depth;
void main() {
    vec4 p = u_view * vec4(in_pos, 1.0);
    v_depth = -p.z;
    gl_Position = u_proj * p;
}
"""

_ID_FS = """
#version 330
in float v_depth;
layout(location = 0) out float f_depth;
layout(location = 1) out int f_face;
void main() {
    f_depth = v_depth;
    f_face = gl_PrimitiveID + 1;   // 0 = background
}
"""

_UV_VS = """
#version 330
in vec2 in_uv;
in vec3 in_pos;
in vec3 in_normal;
out vec3 v_pos;
out vec3 v_normal;
void main() {
    v_pos = in_pos;
    v_normal = in_normal;
    gl_Position = vec4(in_uv * 2.0 - 1.0, 0.0, 1.0);
}
"""

_UV_FS = """
#version 330
in vec3 v_pos;
in vec3 v_normal;
layout(location = 0) out vec4 f_pos;
layout(location = 1) out vec4 f_normal;
layout(location = 2) out int f_face;
void main() {
    f_pos = vec4(v_pos, 1.0);
    float n = length(v_normal);
    f_normal = vec4(n > 0.0 ? v_normal / n : v_normal, 1.0);
    f_face = gl_PrimitiveID + 1;
}
"""

_COVER_FS = """
#version 330
layout(location = 0) out float f_cover;
void main() {
    f_cover = 1.0;
}
"""

_UV_FACE_VS = """
#version 330
in vec2 in_uv;
void main() {
    gl_Position = vec4(in_uv * 2.0 - 1.0, 0.0, 1.0);
}
"""

_UV_FACE_FS = """
#version 330
layout(location = 0) out int f_face;
void main() {
    f_face = gl_PrimitiveID + 1;
}
"""


def _gl(m: np.ndarray) -> bytes:
    """Row-major numpy matrix -> column-major float32 bytes as GLSL expects."""
    return np.ascontiguousarray(np.asarray(m, np.float32).T).tobytes()


def _flip(img: np.ndarray) -> np.ndarray:
    """OpenGL reads rows bottom-up; the project's images have row 0 at the top."""
    return np.ascontiguousarray(img[::-1])


def _near_far(mesh: MeshData, camera: Camera) -> tuple[float, float]:
    """Clip planes that enclose the mesh's bounding box, with depth precision to spare."""
    lo, hi = mesh.bounds()
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1])
                        for z in (lo[2], hi[2])])
    depth = -camera.to_camera(corners)[:, 2]
    far = float(depth.max())
    extent = float(np.linalg.norm(hi - lo)) or 1.0
    if far <= 0:  # everything behind the camera: any valid planes give an empty image
        return 1e-3 * extent, extent
    near = float(depth.min())
    near = max(0.5 * near, 1e-4 * far) if near > 0 else 1e-4 * far
    return near, far * 1.01 + 1e-6 * extent


def face_normals(mesh: MeshData) -> np.ndarray:
    """Unit geometric normals per face (zero for degenerate faces), float32 for the GPU."""
    from .normals import face_normals as normals

    return normals(mesh.vertices, mesh.faces).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class UploadedTexture:
    """A texture already on the GL context, with its mipmaps (``Renderer.texture_uploaded``);
    ``render`` takes it in place of an image."""

    gl: object


class Renderer:
    """Renders ``MeshData`` through a ``Camera``; numpy arrays in and out.

    Buffers and framebuffers live only for one call and are released before it returns.
    """

    def __init__(self, ctx=None) -> None:
        import moderngl

        self.ctx = ctx or moderngl.create_standalone_context(backend="egl")
        self._color = self.ctx.program(vertex_shader=_COLOR_VS, fragment_shader=_COLOR_FS)
        self._ids = self.ctx.program(vertex_shader=_ID_VS, fragment_shader=_ID_FS)
        self._uv = self.ctx.program(vertex_shader=_UV_VS, fragment_shader=_UV_FS)
        self._cover = self.ctx.program(vertex_shader=_ID_VS, fragment_shader=_COVER_FS)
        self._uv_face = self.ctx.program(vertex_shader=_UV_FACE_VS, fragment_shader=_UV_FACE_FS)
        self.max_size = int(self.ctx.info.get("GL_MAX_RENDERBUFFER_SIZE", 8192))
        log.info("renderer: %s", self.ctx.info.get("GL_RENDERER", "?"))

    # ------------------------------------------------------------------ public API

    @contextmanager
    def texture_uploaded(self, image: np.ndarray) -> Iterator[UploadedTexture]:
        """``image`` uploaded once (with its mipmaps) for several ``render`` calls, released
        at the end of the block: a 2048 px texture costs ~0.05 s of CPU to upload, per
        call when passed as an array."""
        with ExitStack() as stack:
            yield UploadedTexture(self._texture(stack, image))

    def render(self, mesh: MeshData, camera: Camera, *,
               texture: np.ndarray | UploadedTexture | None = None,
               shading: str = "lambert", background: tuple = (1.0, 1.0, 1.0),
               ssaa: int = 1, light: tuple | None = None) -> np.ndarray:
        """(H, W, 4) uint8 RGBA; alpha is coverage, RGB is composited over ``background``.

        Colour comes from ``texture`` at ``mesh.uv`` if both are given, else from
        ``mesh.vertex_colors``, else grey. ``ssaa`` renders ``ssaa``x larger and box-filters.
        ``light``: (direction in the camera frame, ambient share) of a light fixed to the
        camera (``lambert`` shading), instead of the default headlight.
        """
        if shading not in ("lambert", "unlit"):
            raise ValueError(f"shading must be 'lambert' or 'unlit', got {shading!r}")
        ssaa = max(1, int(ssaa))
        w, h = camera.width * ssaa, camera.height * ssaa
        self._check_size(w, h)
        bg = tuple(float(c) for c in background)[:3]
        if mesh.n_faces == 0:
            out = np.zeros((camera.height, camera.width, 4), np.uint8)
            out[..., :3] = np.round(np.clip(bg, 0, 1) * 255).astype(np.uint8)
            return out
        use_tex = texture is not None and mesh.uv is not None
        with ExitStack() as stack:
            fbo = self._framebuffer(stack, (w, h), ["f1:4"])
            vao = self._color_vao(stack, mesh, use_tex)
            p = self._color
            self._set_camera(p, mesh, camera, ssaa)
            p["u_mode"].value = 1 if use_tex else 0
            p["u_lambert"].value = 1 if shading == "lambert" else 0
            p["u_has_normals"].value = 1 if mesh.vertex_normals is not None else 0
            p["u_ambient"].value = AMBIENT if light is None else float(light[1])
            p["u_diffuse"].value = DIFFUSE if light is None else 1.0 - float(light[1])
            p["u_light_mode"].value = 0 if light is None else 1
            if light is not None:
                d = np.asarray(light[0], np.float64)
                p["u_light"].value = tuple(float(x) for x in d / max(np.linalg.norm(d), 1e-12))
            if use_tex:
                tex = (texture.gl if isinstance(texture, UploadedTexture)
                       else self._texture(stack, texture))
                tex.use(location=0)
                p["u_tex"].value = 0
            fbo.use()
            fbo.clear(*bg, 0.0, depth=1.0)
            self._draw(vao)
            rgba = np.frombuffer(fbo.read(components=4, dtype="f1"), np.uint8)
        rgba = _flip(rgba.reshape(h, w, 4))
        if ssaa > 1:
            rgba = _box_down(rgba, ssaa)
        return rgba

    def coverage(self, mesh: MeshData, camera: Camera, ssaa: int = 1) -> np.ndarray:
        """(H, W) uint8: the alpha channel of ``render`` (255 where the mesh covers the pixel
        centre; with ``ssaa``, the box-filtered share of the finer grid's covered centres),
        from a one-channel render: a fitting loop that only compares silhouettes reads back a
        quarter of the bytes and shades nothing."""
        ssaa = max(1, int(ssaa))
        w, h = camera.width * ssaa, camera.height * ssaa
        self._check_size(w, h)
        if mesh.n_faces == 0:
            return np.zeros((camera.height, camera.width), np.uint8)
        with ExitStack() as stack:
            fbo = self._framebuffer(stack, (w, h), ["f1:1"], depth=False)
            vbo = self._buffer(stack, mesh.vertices.astype(np.float32))
            ibo = self._buffer(stack, mesh.faces.astype(np.uint32))
            vao = self.ctx.vertex_array(self._cover, [(vbo, "3f", "in_pos")], index_buffer=ibo,
                                        index_element_size=4)
            stack.callback(vao.release)
            self._set_camera(self._cover, mesh, camera, ssaa)
            fbo.use()
            fbo.clear(0.0, 0.0, 0.0, 0.0)
            self.ctx.disable(self.ctx.DEPTH_TEST | self.ctx.CULL_FACE)
            vao.render(self.ctx.TRIANGLES)
            cover = np.frombuffer(fbo.read(components=1, dtype="f1"), np.uint8)
        cover = cover.reshape(h, w, 1)[::-1]
        if ssaa > 1:
            cover = _box_down(cover, ssaa)
        return np.ascontiguousarray(cover[..., 0])

    def mask(self, mesh: MeshData, camera: Camera) -> np.ndarray:
        """(H, W) bool: where the mesh covers the pixel centre (``coverage``'s one-channel
        render: the same pixels as ``face_ids >= 0``)."""
        return self.coverage(mesh, camera) > 0

    def depth(self, mesh: MeshData, camera: Camera) -> np.ndarray:
        """(H, W) float32 depth along the view axis in world units; ``inf`` where empty."""
        depth, face = self._depth_and_ids(mesh, camera)
        return np.where(face >= 0, depth, np.float32(np.inf)).astype(np.float32)

    def face_ids(self, mesh: MeshData, camera: Camera) -> np.ndarray:
        """(H, W) int32 index of the visible face at each pixel centre; -1 where empty."""
        return self._depth_and_ids(mesh, camera)[1]

    def depth_and_face_ids(self, mesh: MeshData, camera: Camera) -> tuple[np.ndarray, np.ndarray]:
        """Both ``depth`` and ``face_ids`` from one render (what visibility tests need)."""
        depth, face = self._depth_and_ids(mesh, camera)
        return np.where(face >= 0, depth, np.float32(np.inf)).astype(np.float32), face

    def rasterize_uv(self, mesh: MeshData, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rasterise the mesh in UV space: per texel world position, unit normal, face id.

        Row 0 is the top of the texture image (v close to 1). The normal is interpolated from
        ``mesh.vertex_normals`` when present, else the face's geometric normal. Texels whose
        centre no triangle covers get face -1 and zeros (dilate seams downstream); where UV
        islands overlap, the face drawn last wins.
        """
        size = int(size)
        raw = self._uv_raster(mesh, size, "rasterize_uv")
        if raw is None:
            return (np.zeros((size, size, 3), np.float32), np.zeros((size, size, 3), np.float32),
                    np.full((size, size), -1, np.int32))
        # flipped and cut to xyz in one copy (a 2048 px float map is 64 MB)
        position, normal, face = (a[::-1] for a in raw)
        return (np.ascontiguousarray(position[..., :3]), np.ascontiguousarray(normal[..., :3]),
                (face - 1).astype(np.int32, copy=False))

    def rasterize_uv_texels(self, mesh: MeshData, size: int
                            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``rasterize_uv`` as one row per covered texel: (flat index (T,) int64, row 0 at the
        top, in image order; position (T, 3) float64; unit normal (T, 3) float64; face (T,)
        int64), gathered from the framebuffers in one numba pass (no flipped full-size
        copies, which at 2048 px cost more than the draw)."""
        from ._texel_numba import raster_texels

        raw = self._uv_raster(mesh, int(size), "rasterize_uv_texels")
        if raw is None:
            return (np.zeros(0, np.int64), np.zeros((0, 3)), np.zeros((0, 3)),
                    np.zeros(0, np.int64))
        return raster_texels(*raw)

    def _uv_raster(self, mesh: MeshData, size: int, caller: str
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """The UV-space draw behind ``rasterize_uv``: (position (S, S, 4) float32, normal
        (S, S, 4) float32, face + 1 (S, S) int32, 0 = empty), as GL reads them (row 0 at the
        bottom); None for a mesh with no faces."""
        if mesh.uv is None:
            raise ValueError(f"{caller} needs mesh.uv (run the uv stage first)")
        self._check_size(size, size)
        if mesh.n_faces == 0:
            return None
        corners = mesh.faces.reshape(-1)
        uv = np.asarray(mesh.uv, np.float32)[corners]
        pos = mesh.vertices[corners].astype(np.float32)
        if mesh.vertex_normals is not None:
            nrm = np.asarray(mesh.vertex_normals, np.float32)[corners]
        else:
            nrm = np.repeat(face_normals(mesh), 3, axis=0)
        with ExitStack() as stack:
            fbo = self._framebuffer(stack, (size, size), ["f4:4", "f4:4", "i4:1"], depth=False)
            bufs = [self._buffer(stack, a) for a in (uv, pos, nrm)]
            vao = self.ctx.vertex_array(self._uv, [(bufs[0], "2f", "in_uv"),
                                                   (bufs[1], "3f", "in_pos"),
                                                   (bufs[2], "3f", "in_normal")])
            stack.callback(vao.release)
            fbo.use()
            fbo.clear(0.0, 0.0, 0.0, 0.0)
            self.ctx.disable(self.ctx.DEPTH_TEST | self.ctx.CULL_FACE)
            vao.render(self.ctx.TRIANGLES)
            read = lambda i, c, t, dt: np.frombuffer(
                fbo.read(components=c, attachment=i, dtype=t), dt)
            return (read(0, 4, "f4", np.float32).reshape(size, size, 4),
                    read(1, 4, "f4", np.float32).reshape(size, size, 4),
                    read(2, 1, "i4", np.int32).reshape(size, size))

    def rasterize_uv_faces(self, mesh: MeshData, size: int) -> np.ndarray:
        """The face ids of ``rasterize_uv`` alone, (size, size) int32, -1 where no triangle
        covers the texel centre: one integer attachment drawn and read back instead of three
        (the two float maps are 128 MB at 2048 px), for a caller that interpolates positions
        and normals itself (the bake)."""
        if mesh.uv is None:
            raise ValueError("rasterize_uv_faces needs mesh.uv (run the uv stage first)")
        size = int(size)
        self._check_size(size, size)
        if mesh.n_faces == 0:
            return np.full((size, size), -1, np.int32)
        uv = np.asarray(mesh.uv, np.float32)[mesh.faces.reshape(-1)]
        with ExitStack() as stack:
            fbo = self._framebuffer(stack, (size, size), ["i4:1"], depth=False)
            vao = self.ctx.vertex_array(self._uv_face, [(self._buffer(stack, uv), "2f",
                                                          "in_uv")])
            stack.callback(vao.release)
            fbo.use()
            fbo.clear(0.0, 0.0, 0.0, 0.0)
            self.ctx.disable(self.ctx.DEPTH_TEST | self.ctx.CULL_FACE)
            vao.render(self.ctx.TRIANGLES)
            face = self._read(fbo, 0, 1, "i4", size, size, copy=False)[..., 0]
            face = face - 1   # a new array: the read buffer is not kept
        return face.astype(np.int32, copy=False)

    # ------------------------------------------------------------------ internals

    def _depth_and_ids(self, mesh: MeshData, camera: Camera) -> tuple[np.ndarray, np.ndarray]:
        w, h = camera.width, camera.height
        self._check_size(w, h)
        if mesh.n_faces == 0:
            return np.full((h, w), np.inf, np.float32), np.full((h, w), -1, np.int32)
        with ExitStack() as stack:
            fbo = self._framebuffer(stack, (w, h), ["f4:1", "i4:1"])
            vbo = self._buffer(stack, mesh.vertices.astype(np.float32))
            ibo = self._buffer(stack, mesh.faces.astype(np.uint32))
            vao = self.ctx.vertex_array(self._ids, [(vbo, "3f", "in_pos")], index_buffer=ibo,
                                        index_element_size=4)
            stack.callback(vao.release)
            self._set_camera(self._ids, mesh, camera, 1)
            fbo.use()
            fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
            self._draw(vao)
            depth = self._read(fbo, 0, 1, "f4", w, h)[..., 0]
            face = self._read(fbo, 1, 1, "i4", w, h)[..., 0] - 1
        return depth.astype(np.float32), face.astype(np.int32)

    def _color_vao(self, stack: ExitStack, mesh: MeshData, use_tex: bool):
        """Indexed vertex arrays: per-vertex colour, UV and (optional) normal."""
        n = mesh.n_vertices
        if mesh.vertex_colors is not None and not use_tex:
            color = np.asarray(mesh.vertex_colors, np.float32) / 255.0
        else:
            color = np.tile(np.array([*GREY, 1.0], np.float32), (n, 1))
        uv = np.asarray(mesh.uv, np.float32) if use_tex else np.zeros((n, 2), np.float32)
        normal = (np.asarray(mesh.vertex_normals, np.float32) if mesh.vertex_normals is not None
                  else np.zeros((n, 3), np.float32))
        arrays = [(mesh.vertices.astype(np.float32), "3f", "in_pos"),
                  (normal, "3f", "in_normal"), (color, "4f", "in_color"), (uv, "2f", "in_uv")]
        content = []
        for arr, fmt, name in arrays:
            if self._color.get(name, None) is not None:  # GLSL may drop unused inputs
                content.append((self._buffer(stack, arr), fmt, name))
        ibo = self._buffer(stack, mesh.faces.astype(np.uint32))
        vao = self.ctx.vertex_array(self._color, content, index_buffer=ibo, index_element_size=4)
        stack.callback(vao.release)
        return vao

    def _set_camera(self, prog, mesh: MeshData, camera: Camera, ssaa: int) -> None:
        near, far = _near_far(mesh, camera)
        cam = camera
        if ssaa > 1:  # the same view on an ssaa-times finer pixel grid
            K = camera.K.copy()
            K[:2, :2] *= ssaa
            K[:2, 2] = (K[:2, 2] + 0.5) * ssaa - 0.5
            cam = dataclasses.replace(camera, K=K, width=camera.width * ssaa,
                                      height=camera.height * ssaa)
        prog["u_view"].write(_gl(cam.world_to_camera))
        prog["u_proj"].write(_gl(cam.gl_projection(near, far)))

    def _draw(self, vao) -> None:
        self.ctx.enable(self.ctx.DEPTH_TEST)
        self.ctx.disable(self.ctx.CULL_FACE)
        vao.render(self.ctx.TRIANGLES)

    def _framebuffer(self, stack: ExitStack, size: tuple[int, int], formats: list[str],
                     depth: bool = True):
        attachments = []
        for fmt in formats:
            dtype, comps = fmt.split(":")
            tex = self.ctx.texture(size, int(comps), dtype=dtype)
            stack.callback(tex.release)
            attachments.append(tex)
        depth_rb = None
        if depth:
            depth_rb = self.ctx.depth_renderbuffer(size)
            stack.callback(depth_rb.release)
        fbo = self.ctx.framebuffer(color_attachments=attachments, depth_attachment=depth_rb)
        stack.callback(fbo.release)
        fbo.viewport = (0, 0, *size)
        return fbo

    def _buffer(self, stack: ExitStack, arr: np.ndarray):
        buf = self.ctx.buffer(np.ascontiguousarray(arr).tobytes())
        stack.callback(buf.release)
        return buf

    def _texture(self, stack: ExitStack, image: np.ndarray):
        img = np.asarray(image)
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        if img.dtype != np.uint8:
            img = np.clip(np.asarray(img, np.float64) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        img = np.ascontiguousarray(img[..., :3])
        # Row 0 (top) goes first: GL's t=0 is then the image top, so sampling at (u, 1-v) maps
        # v=1 to the top row, as glTF does.
        tex = self.ctx.texture((img.shape[1], img.shape[0]), 3, img.tobytes(), alignment=1)
        tex.build_mipmaps()
        tex.filter = (self.ctx.LINEAR_MIPMAP_LINEAR, self.ctx.LINEAR)
        tex.repeat_x = tex.repeat_y = False
        stack.callback(tex.release)
        return tex

    def _read(self, fbo, attachment: int, comps: int, dtype: str, w: int, h: int,
              copy: bool = True) -> np.ndarray:
        """One attachment, row 0 at the top; ``copy=False`` returns a read-only flipped view
        (for a caller that copies a part of it anyway)."""
        data = fbo.read(components=comps, attachment=attachment, dtype=dtype)
        np_dtype = {"f4": np.float32, "i4": np.int32}[dtype]
        img = np.frombuffer(data, np_dtype).reshape(h, w, comps)
        return _flip(img) if copy else img[::-1]

    def _check_size(self, w: int, h: int) -> None:
        if w < 1 or h < 1 or max(w, h) > self.max_size:
            raise ValueError(f"render size {w}x{h} outside 1..{self.max_size} px")


def _box_down(img: np.ndarray, k: int) -> np.ndarray:
    """Average k x k blocks (the SSAA resolve), rounded half up.

    Summed in integers over the k*k strided sub-images: the same result as a float mean
    (sums of bytes are exact) at a tenth of the time of reshaping and averaging in float32.
    """
    h, w, _ = img.shape
    n = k * k
    acc = np.zeros((h // k, w // k, img.shape[2]), np.uint16 if n * 255 + n // 2 < 65536
                   else np.uint32)
    for dy in range(k):
        for dx in range(k):
            np.add(acc, img[dy::k, dx::k], out=acc)
    acc += n // 2
    acc //= n
    return acc.astype(np.uint8)


_RENDERER: Renderer | None = None


def get_renderer() -> Renderer:
    """The process's one renderer (a standalone EGL context), created on first use.

    Mesa's llvmpipe (EGL without a GPU) rasterises on as many threads as the machine has
    cores; created inside a stage, the renderer gets as many as the stage declared CPUs
    (``LP_NUM_THREADS``, unless set), so a one-CPU stage keeps to one core beside the others
    the scheduler packed next to it.
    """
    global _RENDERER
    if _RENDERER is None:
        import os

        from ..core.stage import stage_cpus

        os.environ.setdefault("LP_NUM_THREADS", str(stage_cpus()))  # outside a stage: all
        _RENDERER = Renderer()
    return _RENDERER

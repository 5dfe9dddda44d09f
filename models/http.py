"""A generator running as a separate service: POST the photos, receive GLB/OBJ/PLY/STL.

For a team's own Hunyuan3D or TRELLIS server, or a commercial endpoint: the factory sends the
SKU's crops (object mask as alpha) and gets a mesh back, which goes through exactly the checks
the ``mesh`` backend applies to a merchant's file (``mesh.import_mesh_bytes``) before it is
trusted. A remote service fails in ways a local model does not, and each has its answer:

* it hangs -> a connect timeout, a per-read timeout and a total deadline per attempt;
* it is briefly down, overloaded or restarting (connection refused, 429, 5xx) -> retries with
  exponential backoff and jitter, honouring ``Retry-After``; a 4xx is the request's fault and
  is not retried;
* it answers too much -> ``Content-Length`` over ``max_bytes`` is refused before the body is
  read, and a body that grows past it is cut off;
* it answers garbage (an HTML error page, JSON, a truncated GLB, an empty scene, a point cloud)
  -> the mesh checks name what is wrong.

Request formats: ``multipart`` (a ``metadata`` JSON part and one ``image`` part per view, PNG),
or ``json`` (``{"image": <base64 PNG of the first view>, "images": [...], "seed", "sku",
"type": "glb", ...params}``, the body ``hy3dgen``'s ``api_server`` reads on ``POST /generate``).
A bearer token, when needed, comes from the environment variable named by ``token_env`` and
never enters the config, the provenance or the logs.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import http.client
import io
import json
import logging
import os
import random
import ssl
import time
import uuid
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlsplit

import numpy as np

from ..core.appearance import SourceAppearance
from ..core.errors import InputError, OptionsError, ProcessingError
from ..core.mesh import MeshData
from ..core.stage import check
from ..core.types import Resources
from . import learned
from .base import DenseMesh, GenerateRequest
from .mesh import MeshImportConfig, import_mesh_bytes

log = logging.getLogger(__name__)

FORMATS = ("glb", "obj", "ply", "stl")
_CONTENT_TYPES = {
    "model/gltf-binary": "glb", "model/obj": "obj", "text/plain": None, "model/ply": "ply",
    "application/ply": "ply", "model/stl": "stl", "application/sla": "stl",
    "application/octet-stream": None, "binary/octet-stream": None,
}
_RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}


@dataclass(frozen=True)
class HttpConfig:
    """Options of the remote-service backend.

    url: the endpoint that takes a POST (http:// or https://).
    request_format: "multipart" or "json" (see the module docstring).
    params_json: a JSON object of extra fields for the service (steps, octree_resolution, ...);
        the json format merges them into the body, multipart into the metadata part.
    token_env: name of an environment variable holding a bearer token ("" = none).
    send_views: "all" photos, or only the "front" one (the view a single-image model uses).
    connect_timeout_s, read_timeout_s: per connection attempt and per blocking read.
    total_timeout_s: deadline for one attempt, request to last byte (a trickling answer too).
    retries: further attempts after a transient failure (timeout, refused, 408/425/429/5xx).
    backoff_s, max_backoff_s: the wait before retry k is min(max, backoff * 2**k), jittered.
    max_bytes: refuse answers larger than this; max_faces: refuse meshes with more faces.
    up_axis, front_axis: the service's axes (glTF: +y up, front +z); the mesh is turned to face
        the camera of the first photo sent.
    service_id: a label for the model behind the URL (e.g. "hunyuan3d-2mini@2025-03"); it is
        part of the recipe, so changing it re-makes the assets.
    verify_tls: check the server's certificate (https).
    """

    name: ClassVar[str] = "http"
    url: str = ""
    device: str = "remote"
    request_format: str = "multipart"
    params_json: str = ""
    token_env: str = ""
    send_views: str = "all"
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 300.0
    total_timeout_s: float = 900.0
    retries: int = 3
    backoff_s: float = 2.0
    max_backoff_s: float = 60.0
    max_bytes: int = 200_000_000
    max_faces: int = 5_000_000
    up_axis: str = "+y"
    front_axis: str = "+z"
    service_id: str = ""
    verify_tls: bool = True
    num_cpus: float = 0.25

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        check(parts.scheme in ("http", "https") and bool(parts.hostname),
              f"http: url {self.url!r} must be an http:// or https:// address "
              "(pass it as a backend option: -B url=https://host/generate)")
        check(self.device == "remote", f"http: the model runs in the service; device "
              f"{self.device!r} must be 'remote'")
        check(self.request_format in ("multipart", "json"),
              "http: request_format must be 'multipart' or 'json'")
        check(self.send_views in ("all", "front"), "http: send_views must be 'all' or 'front'")
        check(self.connect_timeout_s > 0 and self.read_timeout_s > 0
              and self.total_timeout_s > 0, "http: timeouts must be > 0")
        check(0 <= self.retries <= 20, "http: retries not in 0..20")
        check(self.backoff_s >= 0 and self.max_backoff_s >= 0, "http: backoff must be >= 0")
        check(self.max_bytes > 0 and self.max_faces > 0, "http: max_bytes, max_faces must be > 0")
        check(self.num_cpus > 0, "http: num_cpus must be > 0")
        learned.check_axes(self.up_axis, self.front_axis, self.name)
        self.params()

    def params(self) -> dict[str, Any]:
        if not self.params_json:
            return {}
        try:
            value = json.loads(self.params_json)
        except json.JSONDecodeError as exc:
            raise OptionsError(f"http: params_json is not JSON ({exc})") from exc
        if not isinstance(value, dict):
            raise OptionsError("http: params_json must be a JSON object")
        return value

    def resources(self) -> Resources:
        return Resources(cpus=self.num_cpus)

    def weights_sha256(self) -> str | None:
        return None

    def preflight(self) -> None:
        if self.token_env and not os.environ.get(self.token_env):
            raise OptionsError(f"http: token_env names {self.token_env!r} but that environment "
                               "variable is empty; export the service's token in it")

    def build(self) -> HttpGenerator:
        return HttpGenerator(self)


class _Transient(Exception):
    """A failure worth another attempt (with the wait the server asked for, if any)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class HttpGenerator:
    def __init__(self, config: HttpConfig) -> None:
        self.config = config
        self.rotation = learned.to_project_frame(config.up_axis, config.front_axis)
        self._ssl = None
        if urlsplit(config.url).scheme == "https":
            self._ssl = ssl.create_default_context()
            if not config.verify_tls:
                self._ssl.check_hostname = False
                self._ssl.verify_mode = ssl.CERT_NONE

    # --- the request ----------------------------------------------------------------------

    def _views(self, request: GenerateRequest) -> list:
        view = learned.conditioning_view(request, self.config.name)
        if self.config.send_views == "front":
            return [view]
        return [view] + [v for v in request.views if v is not view]

    def _body(self, request: GenerateRequest, views: list) -> tuple[bytes, str]:
        meta = {"sku": request.sku, "seed": request.seed, "type": "glb",
                "views": [{"label": v.label, "azimuth_deg": v.camera.azimuth_deg,
                           "elevation_deg": v.camera.elevation_deg} for v in views],
                **self.config.params()}
        pngs = [_png(v) for v in views]
        if self.config.request_format == "json":
            body = {**meta, "image": base64.b64encode(pngs[0]).decode(),
                    "images": [{**m, "png_base64": base64.b64encode(p).decode()}
                               for m, p in zip(meta["views"], pngs)]}
            return json.dumps(body).encode(), "application/json"
        boundary = f"assetfactory-{uuid.uuid4().hex}"
        out = io.BytesIO()
        _part(out, boundary, 'name="metadata"', "application/json", json.dumps(meta).encode())
        for v, png in zip(views, pngs):
            _part(out, boundary, f'name="image"; filename="{v.label}.png"', "image/png", png)
        out.write(f"--{boundary}--\r\n".encode())
        return out.getvalue(), f"multipart/form-data; boundary={boundary}"

    def _headers(self, content_type: str, body: bytes, request: GenerateRequest) -> dict:
        headers = {"Content-Type": content_type, "Content-Length": str(len(body)),
                   "Accept": "model/gltf-binary, model/obj, model/ply, model/stl, "
                             "application/octet-stream",
                   "User-Agent": "assetfactory",
                   # the same SKU, seed and photos give the same key: a service may dedupe
                   # a POST that a retry repeats
                   "Idempotency-Key": hashlib.sha256(body).hexdigest()[:32]}
        if self.config.token_env:
            token = os.environ.get(self.config.token_env, "")
            if not token:
                raise ProcessingError(f"the environment variable {self.config.token_env} "
                                      "holding the service token is empty",
                                      f"export the token in {self.config.token_env}")
            headers["Authorization"] = f"Bearer {token}"
        return headers

    # --- one attempt ----------------------------------------------------------------------

    def _attempt(self, body: bytes, headers: dict) -> tuple[bytes, str]:
        cfg = self.config
        url = urlsplit(cfg.url)
        deadline = time.monotonic() + cfg.total_timeout_s
        cls = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
        kwargs: dict[str, Any] = {"timeout": cfg.connect_timeout_s}
        if self._ssl is not None:
            kwargs["context"] = self._ssl
        conn = cls(url.hostname, url.port, **kwargs)
        path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        try:
            try:
                conn.connect()
                conn.sock.settimeout(min(cfg.read_timeout_s, _left(deadline)))
                conn.request("POST", path, body=body, headers=headers)
                resp = conn.getresponse()
            except (TimeoutError, OSError, http.client.HTTPException) as exc:
                raise _Transient(_why(exc, cfg, deadline)) from exc
            status = resp.status
            if status in _RETRY_STATUS:
                raise _Transient(f"HTTP {status} {resp.reason}: {_snippet(resp)}",
                                 _retry_after(resp.getheader("Retry-After")))
            if status != 200:
                raise ProcessingError(
                    f"the generator service at {cfg.url} answered HTTP {status} {resp.reason}: "
                    f"{_snippet(resp)}",
                    "check request_format, params_json and the token against the service's API "
                    "(a 4xx is not retried)", code="service_rejected")
            length = resp.getheader("Content-Length")
            if length and length.isdigit() and int(length) > cfg.max_bytes:
                raise ProcessingError(
                    f"the generator service's answer is {int(length) / 1e6:.1f} MB, over the "
                    f"{cfg.max_bytes / 1e6:.1f} MB limit",
                    "ask the service for a lighter mesh (fewer faces) or raise max_bytes",
                    code="service_too_large")
            data = _read_capped(resp, conn, cfg, deadline)
            return data, _kind(resp)
        finally:
            conn.close()

    # --- the backend ----------------------------------------------------------------------

    def generate(self, request: GenerateRequest) -> DenseMesh:
        cfg = self.config
        views = self._views(request)
        body, content_type = self._body(request, views)
        headers = self._headers(content_type, body, request)
        started = time.monotonic()
        errors: list[str] = []
        for attempt in range(cfg.retries + 1):
            try:
                data, kind = self._attempt(body, headers)
                break
            except _Transient as exc:
                errors.append(str(exc))
                if attempt == cfg.retries:
                    raise ProcessingError(
                        f"the generator service at {cfg.url} failed {attempt + 1} time(s); last: "
                        f"{errors[-1]}",
                        "check that the service is up and reachable from the workers; re-run "
                        "later (finished SKUs are skipped)", code="service_unavailable") from None
                wait = exc.retry_after if exc.retry_after is not None else (
                    cfg.backoff_s * 2 ** attempt * random.uniform(0.5, 1.0))
                wait = min(wait, cfg.max_backoff_s)
                log.warning("%s generate/http: attempt %d failed (%s); retrying in %.1f s",
                            request.sku, attempt + 1, exc, wait)
                time.sleep(wait)
        mesh, info, appearance = self._validate(data, kind)
        info.update(method="http", service_id=cfg.service_id, attempts=len(errors) + 1,
                    response_bytes=len(data), service_s=round(time.monotonic() - started, 3),
                    views_sent=len(views), view=views[0].label, seed=request.seed,
                    response_sha256=hashlib.sha256(data).hexdigest())
        log.info("%s generate/http: %s -> %s %d faces in %d attempt(s)", request.sku, cfg.url,
                 kind, mesh.n_faces, len(errors) + 1)
        mesh, T = _turn(mesh, learned.yaw(views[0].camera.azimuth_deg) @ self.rotation)
        if appearance is not None:  # the answer's materials, in the turned mesh's frame
            appearance = dataclasses.replace(appearance,
                                             surface=appearance.surface.transformed(T))
        return DenseMesh(mesh=mesh, cameras=[v.camera for v in request.views], info=info,
                         appearance=appearance)

    def _validate(self, data: bytes, kind: str | None
                  ) -> tuple[MeshData, dict, SourceAppearance | None]:
        cfg = self.config
        name = f"service-answer.{kind}" if kind else "service-answer"
        if data.lstrip()[:1] in (b"{", b"["):
            if kind == "gltf" or b'"asset"' in data[:4096]:
                raise ProcessingError("the generator service answered a .gltf (JSON) model, whose "
                                      "external files cannot be fetched", "ask it for a .glb",
                                      code="service_format")
            raise ProcessingError(
                f"the generator service answered JSON, not a mesh: {_text(data)}",
                "point url at the endpoint that returns the model file", code="service_json")
        try:
            mesh, info, appearance = import_mesh_bytes(data, name, MeshImportConfig(
                max_faces=cfg.max_faces, max_bytes=cfg.max_bytes))
        except InputError as exc:
            raise ProcessingError(f"the generator service returned an unusable mesh: "
                                  f"{exc.message}", "check the service's output (see its logs "
                                  "for this request); the factory expects a GLB/OBJ/PLY/STL "
                                  "surface mesh", code="service_bad_mesh") from None
        if info.get("source_format") not in FORMATS:
            raise ProcessingError(f"the generator service returned {info.get('source_format')}",
                                  "ask it for GLB, OBJ, PLY or STL", code="service_format")
        keep = {k: info[k] for k in ("parts", "source_format", "source_faces",
                                     "source_materials", "source_textures", "source_appearance")
                if k in info}
        return mesh, keep, appearance


# --- helpers ------------------------------------------------------------------------------

def _png(view: Any) -> bytes:
    buf = io.BytesIO()
    learned.rgba_image(view).save(buf, format="PNG")
    return buf.getvalue()


def _part(out: io.BytesIO, boundary: str, disposition: str, content_type: str,
          payload: bytes) -> None:
    out.write(f"--{boundary}\r\nContent-Disposition: form-data; {disposition}\r\n"
              f"Content-Type: {content_type}\r\n\r\n".encode())
    out.write(payload)
    out.write(b"\r\n")


def _why(exc: BaseException, cfg: HttpConfig, deadline: float) -> str:
    if isinstance(exc, TimeoutError):
        if time.monotonic() >= deadline - 0.01:
            return f"the total timeout of {cfg.total_timeout_s:g} s for one attempt ran out"
        return f"no answer within read_timeout_s={cfg.read_timeout_s:g} s (timed out)"
    return f"{type(exc).__name__}: {exc}"


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise _Transient("the total timeout for one attempt ran out")
    return left


def _read_capped(resp: http.client.HTTPResponse, conn: http.client.HTTPConnection,
                 cfg: HttpConfig, deadline: float) -> bytes:
    out = bytearray()
    while True:
        conn.sock.settimeout(min(cfg.read_timeout_s, _left(deadline)))
        try:
            block = resp.read1(1 << 16) if hasattr(resp, "read1") else resp.read(1 << 16)
        except (TimeoutError, OSError, http.client.HTTPException) as exc:
            raise _Transient(f"reading the answer failed after {len(out)} bytes: "
                             f"{_why(exc, cfg, deadline)}") from exc
        if not block:
            return bytes(out)
        out += block
        if len(out) > cfg.max_bytes:
            raise ProcessingError(
                f"the generator service's answer passed the {cfg.max_bytes / 1e6:.1f} MB limit "
                "(cut off)", "ask the service for a lighter mesh or raise max_bytes",
                code="service_too_large")


def _kind(resp: http.client.HTTPResponse) -> str | None:
    """The mesh format from Content-Disposition's file name, else Content-Type, else None."""
    disposition = resp.getheader("Content-Disposition") or ""
    if "filename=" in disposition:
        ext = disposition.rsplit("filename=", 1)[1].strip().strip('"').rsplit(".", 1)[-1].lower()
        if ext in FORMATS + ("gltf",):
            return ext
    ctype = (resp.getheader("Content-Type") or "").split(";")[0].strip().lower()
    if ctype == "model/gltf+json":
        return "gltf"
    return _CONTENT_TYPES.get(ctype)


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # an HTTP date: use our own backoff


def _snippet(resp: http.client.HTTPResponse) -> str:
    try:
        return _text(resp.read(2048))
    except (OSError, http.client.HTTPException):
        return "(no body)"


def _text(data: bytes) -> str:
    text = data[:300].decode("utf-8", "replace").replace("\n", " ").strip()
    return text + ("..." if len(data) > 300 else "") if text else "(empty body)"


def _turn(mesh: MeshData, rotation: np.ndarray) -> tuple[MeshData, np.ndarray]:
    """Rotate (a proper rotation keeps the winding) and re-centre the normalised mesh; also
    the 4x4 transform that did it (for the answer's materials' surface)."""
    v = mesh.vertices @ rotation.T
    lo, hi = v.min(axis=0), v.max(axis=0)
    centre, scale = (lo + hi) / 2.0, float((hi - lo).max())
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = rotation / scale, -centre / scale
    return mesh.replace(vertices=(v - centre) / scale), T


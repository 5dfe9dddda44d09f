"""The http backend against a real HTTP server on loopback, started by the test.

The server answers each path its own way: real GLB/OBJ/PLY files (made with trimesh), an HTML
error page, JSON, a truncated GLB, a point cloud, answers over the size limit (declared and
streamed), one that hangs, one that fails twice before answering, a 400, and one that wants a
token. It records what it received so the request format is checked too.
"""

from __future__ import annotations

import email
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import trimesh
from PIL import Image
from test_shap_e import _view
from tiny_learned import fast_overrides, product_state

from assetfactory.core.errors import OptionsError, ProcessingError
from assetfactory.flows.preflight import preflight
from assetfactory.flows.recipe import build_recipe
from assetfactory.flows.runner import run_asset
from assetfactory.models.base import GenerateRequest
from assetfactory.models.http import HttpConfig

BOX = trimesh.creation.box((0.2, 0.4, 0.1))
BALL = trimesh.creation.icosphere(subdivisions=1)


def _textured_box() -> bytes:
    """A box with a base-colour texture, as a service that returns textured models sends it."""
    from PIL import Image

    box = trimesh.creation.box((0.3, 0.1, 0.2))
    box.unmerge_vertices()
    rng = np.random.default_rng(1)
    image = Image.fromarray((rng.random((16, 16, 3)) * 255).astype(np.uint8))
    box.visual = trimesh.visual.TextureVisuals(uv=rng.random((len(box.vertices), 2)),
                                               image=image)
    return box.export(file_type="glb")


FILES = {
    "textured": _textured_box(),
    "glb": BOX.export(file_type="glb"),
    "obj": BALL.export(file_type="obj").encode(),
    "ply": BALL.export(file_type="ply"),
}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def _send(self, status: int, body: bytes, ctype: str, **headers) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers.items():
            self.send_header(k.replace("_", "-"), v)
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        srv = self.server
        path = self.path.strip("/")
        srv.seen.append((path, dict(self.headers), body))
        srv.count[path] = srv.count.get(path, 0) + 1
        if path in ("glb", "textured"):
            self._send(200, FILES[path], "model/gltf-binary")
        elif path == "obj":
            self._send(200, FILES["obj"], "text/plain")
        elif path == "ply":
            self._send(200, FILES["ply"], "application/octet-stream",
                       Content_Disposition='attachment; filename="mesh.ply"')
        elif path == "html":
            self._send(200, b"<!DOCTYPE html><html><body>502 Bad Gateway</body></html>",
                       "text/html")
        elif path == "json":
            self._send(200, b'{"error": "queue full, try later"}', "application/json")
        elif path == "truncated":
            self._send(200, FILES["glb"][: len(FILES["glb"]) // 2], "model/gltf-binary")
        elif path == "points":
            cloud = trimesh.PointCloud(np.random.default_rng(0).random((50, 3)))
            self._send(200, cloud.export(file_type="ply"), "model/ply")
        elif path == "streamed":  # no Content-Length: chunks until the client gives up
            self.send_response(200)
            self.send_header("Content-Type", "model/gltf-binary")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                for _ in range(200):
                    chunk = b"\0" * 4096
                    self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                self.wfile.write(b"0\r\n\r\n")
            except OSError:
                pass
        elif path == "hang":
            srv.release.wait(10)
        elif path == "flaky":
            if srv.count[path] <= 2:
                self._send(503, b"warming up", "text/plain", Retry_After="0")
            else:
                self._send(200, FILES["glb"], "model/gltf-binary")
        elif path == "bad":
            self._send(400, b'{"detail": "field image is required"}', "application/json")
        elif path == "auth":
            if self.headers.get("Authorization") == "Bearer s3cret":
                self._send(200, FILES["glb"], "model/gltf-binary")
            else:
                self._send(401, b"unauthorized", "text/plain")
        else:
            self._send(404, b"no such route", "text/plain")


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        pass  # a client that gave up (timeout, size limit) resets the connection: expected


@pytest.fixture(scope="module")
def server():
    srv = Server(("127.0.0.1", 0), Handler)
    srv.seen, srv.count, srv.release = [], {}, threading.Event()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.release.set()
    srv.shutdown()
    srv.server_close()


def _url(srv, path: str) -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}/{path}"


def _generate(srv, path: str, **options):
    options = {"retries": 0, "backoff_s": 0.0, "read_timeout_s": 5.0, **options}
    config = HttpConfig(url=_url(srv, path), **options)
    views = [_view(), _view("right", 90.0)]
    return config.build().generate(GenerateRequest(sku="s-1", views=views, seed=4))


@pytest.mark.parametrize("fmt,faces", [("glb", 12), ("obj", 80), ("ply", 80)])
def test_real_mesh_answers_are_imported(server, fmt, faces):
    dense = _generate(server, fmt)
    m = dense.mesh
    assert m.n_faces == faces and dense.info["source_format"] == fmt
    lo, hi = m.vertices.min(0), m.vertices.max(0)
    assert np.isclose((hi - lo).max(), 1.0) and np.allclose((hi + lo) / 2, 0, atol=1e-9)
    assert dense.info["attempts"] == 1 and len(dense.info["response_sha256"]) == 64
    assert len(dense.cameras) == 2
    if fmt == "glb":  # the box keeps its proportions: 0.2 x 0.4 x 0.1
        assert np.allclose(hi - lo, [0.5, 1.0, 0.25], atol=1e-9)


def test_a_textured_answer_keeps_its_materials_in_the_mesh_frame(server):
    dense = _generate(server, "textured")
    look = dense.appearance
    assert look is not None and look.textured
    assert dense.info["source_textures"] == 1 and dense.info["source_appearance"] is True
    # the materials' surface went through the same turn and scaling as the mesh
    v, sv = dense.mesh.vertices, look.surface.vertices
    assert np.allclose(sv.min(axis=0), v.min(axis=0), atol=1e-6)
    assert np.allclose(sv.max(axis=0), v.max(axis=0), atol=1e-6)
    assert _generate(server, "glb").appearance is None   # an untextured answer has no look


def test_the_request_carries_the_photos_and_metadata(server):
    server.seen.clear()
    _generate(server, "glb", params_json='{"octree_resolution": 256}')
    _, headers, body = server.seen[-1]
    msg = email.message_from_bytes(
        f"Content-Type: {headers['Content-Type']}\r\n\r\n".encode() + body)
    parts = msg.get_payload()
    meta = json.loads(parts[0].get_payload(decode=True))
    assert meta["sku"] == "s-1" and meta["seed"] == 4 and meta["octree_resolution"] == 256
    assert [v["label"] for v in meta["views"]] == ["front", "right"]
    images = [Image.open(io.BytesIO(p.get_payload(decode=True))) for p in parts[1:]]
    assert [p.get_filename() for p in parts[1:]] == ["front.png", "right.png"]
    assert all(im.mode == "RGBA" and im.size == (64, 64) for im in images)
    alpha = np.asarray(images[0])[..., 3]
    assert alpha[30, 30] == 255 and alpha[0, 0] == 0  # the object mask rides as alpha
    assert len(headers["Idempotency-Key"]) == 32

    server.seen.clear()
    _generate(server, "glb", request_format="json", send_views="front")
    body = json.loads(server.seen[-1][2])
    png = Image.open(io.BytesIO(__import__("base64").b64decode(body["image"])))
    assert png.size == (64, 64) and body["type"] == "glb" and len(body["images"]) == 1


@pytest.mark.parametrize("path,code,words", [
    ("html", "service_bad_mesh", "HTML"),
    ("json", "service_json", "queue full"),
    ("truncated", "service_bad_mesh", "truncated"),
    ("points", "service_bad_mesh", "point cloud"),
])
def test_malformed_answers_are_named_and_not_retried(server, path, code, words):
    before = server.count.get(path, 0)
    with pytest.raises(ProcessingError) as err:
        _generate(server, path, retries=2)
    assert err.value.code == code and words in err.value.message and err.value.fix
    assert server.count[path] == before + 1


def test_oversized_answers_are_refused(server):
    with pytest.raises(ProcessingError, match="over the 0.0 MB limit") as err:
        _generate(server, "glb", max_bytes=1000)  # declared by Content-Length
    assert err.value.code == "service_too_large"
    with pytest.raises(ProcessingError, match="cut off") as err:
        _generate(server, "streamed", max_bytes=100_000)
    assert err.value.code == "service_too_large"


def test_a_hanging_service_times_out_and_is_retried(server):
    before = server.count.get("hang", 0)
    started = time.monotonic()
    with pytest.raises(ProcessingError, match="failed 2 time") as err:
        _generate(server, "hang", read_timeout_s=0.4, retries=1)
    assert err.value.code == "service_unavailable" and "timed out" in err.value.message
    assert server.count["hang"] == before + 2 and time.monotonic() - started < 5
    with pytest.raises(ProcessingError, match="total timeout"):
        _generate(server, "hang", read_timeout_s=5.0, total_timeout_s=0.3)


def test_transient_failures_are_retried_with_backoff(server):
    dense = _generate(server, "flaky", retries=3)
    assert dense.info["attempts"] == 3 and dense.mesh.n_faces == 12


def test_a_rejected_request_is_not_retried(server):
    with pytest.raises(ProcessingError, match="HTTP 400.*field image is required") as err:
        _generate(server, "bad", retries=3)
    assert err.value.code == "service_rejected" and server.count["bad"] == 1


def test_an_unreachable_service_fails_after_its_retries():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    config = HttpConfig(url=f"http://127.0.0.1:{port}/generate", retries=2, backoff_s=0.01)
    with pytest.raises(ProcessingError, match="failed 3 time.*Connection refused"):
        config.build().generate(GenerateRequest(sku="s", views=[_view()]))


def test_the_token_comes_from_the_environment(server, monkeypatch):
    monkeypatch.delenv("AF_TEST_TOKEN", raising=False)
    config = HttpConfig(url=_url(server, "auth"), token_env="AF_TEST_TOKEN", retries=0)
    with pytest.raises(OptionsError, match="AF_TEST_TOKEN"):
        config.preflight()
    monkeypatch.setenv("AF_TEST_TOKEN", "s3cret")
    config.preflight()
    dense = config.build().generate(GenerateRequest(sku="s", views=[_view()]))
    assert dense.mesh.n_faces == 12 and "s3cret" not in json.dumps(dense.info)


def test_options_are_validated():
    for bad in ({"url": "ftp://x/y"}, {"url": ""}, {"url": "http://h/", "device": "cuda"},
                {"url": "http://h/", "params_json": "[1]"}, {"url": "http://h/", "retries": -1},
                {"url": "http://h/", "request_format": "xml"}):
        with pytest.raises(OptionsError):
            HttpConfig(**bad)


def test_runs_through_cleanup_and_export(tmp_path, server):
    """A textured answer: its look is transferred onto the asset's atlas by bake."""
    state = product_state(tmp_path, backend="http")
    recipe = preflight(build_recipe("web", "http", fast_overrides(
        {"url": _url(server, "textured"), "service_id": "test-box@1"})))
    out = run_asset(state, recipe)
    assert out.ok, out.failure
    m = out.metrics
    assert m["bake_source_look"] is True and m["bake_source_trusted_share"] > 0.9, m
    assert m["generate_backend"] == "http" and m["generate_service_id"] == "test-box@1"
    assert {"dense_mesh", "mesh", "glb"} <= set(out.artifacts) and m["export_glb_bytes"] > 0
    # the catalog's 200 x 300 x 200 mm sets the size whatever the service's units
    assert recipe.weights == ()

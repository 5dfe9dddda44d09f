"""Fixtures for the dashboard: one small real run, a synthetic catalog, the real
``assetfactory serve`` process on each, and one headless Chromium (Debian's, driven by
Playwright) for the whole session.

The real run converts one tiny product (a 384-triangle vendor mesh through the ``mesh``
backend, two 256 px photos, 64 px textures) and one deliberately broken SKU through the real
Prefect flow on a real local Ray, once per session: the pages that need real files (the GLB in
model-viewer, renders beside the photos, maps, validators, a real failure, the rework round
trip) use it. Every other page test runs on a synthetic catalog written with the catalog's
own writers (``dashboard.synthetic``), which costs a second or two.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

# Prefect's temporary server gets 20 s to start by default; on a busy shared machine it needs
# more (the reprocess flow that the dashboard starts inherits this too).
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")

CHROMIUM = os.environ.get("ASSETFACTORY_CHROMIUM", "/usr/bin/chromium")
#: What Chromium needs here: root (no sandbox), a closed network (no background requests),
#: and WebGL without a GPU (SwiftShader).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--use-gl=swiftshader", "--enable-unsafe-swiftshader",
                 "--ignore-gpu-blocklist"]
HOSTILE_TITLE = '<script>window.__pwned = 1</script> Mug "deluxe" & <b>co</b>'
TOKEN = "test-token-" + "x" * 20
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def screenshot_dir(tmp_path_factory) -> Path:
    """Screenshots go to a pytest folder and are copied to ``benchmarks/out/screenshots/``
    (or ``$ASSETFACTORY_SCREENSHOTS``) so people can look at them after the run."""
    out = tmp_path_factory.mktemp("screenshots")
    yield out
    dest = Path(os.environ.get("ASSETFACTORY_SCREENSHOTS",
                               REPO / "benchmarks" / "out" / "screenshots"))
    dest.mkdir(parents=True, exist_ok=True)
    for png in out.glob("*.png"):
        shutil.copy2(png, dest / png.name)


def _gl_or_skip() -> None:
    from assetfactory.geometry import render

    try:
        render.get_renderer()
    except Exception as exc:  # noqa: BLE001 - any EGL/driver failure means: no GL here
        pytest.skip(f"no headless OpenGL context (moderngl EGL): {exc}")


#: The real run's tiny product: the demo's shoe box (384 triangles) as the vendor's mesh, with
#: photos from two views; texture and bake at 64 px, a 300-triangle budget.
PRODUCT = "shoebox-01"
VIEWS = (("front_right", 35.0, 15.0), ("back_left", 215.0, 15.0))
TINY = {"profile": {"target_tris": 300, "texture_px": 64}}
SYNTHETIC_N = 40
HOSTILE_ROW = 5     # the synthetic row whose title is hostile


def _tiny_catalog(folder: Path) -> tuple[Path, list[dict]]:
    """A catalog of one good SKU (photos + mesh) and one broken SKU (a truncated photo)."""
    from assetfactory.core.artifacts import encode_png
    from assetfactory.demo import BROKEN_SKU, COLUMNS, to_glb
    from assetfactory.demo.products import CATALOG, build_product
    from assetfactory.demo.shoot import DISTANCE, FOV_DEG, shoot

    product = build_product([c[0] for c in CATALOG].index(PRODUCT))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "shoebox.glb").write_bytes(to_glb(product))
    ext = np.ptp(product.mesh.vertices, axis=0) * 1000.0
    rows = []
    for sku, views in ((PRODUCT, VIEWS), (BROKEN_SKU, VIEWS[:1])):
        entries = []
        for label, az, el in views:
            data = encode_png(shoot(product.mesh, product.texture, label, az, el, size=256))
            if sku == BROKEN_SKU:   # a download cut short: the header is fine, the data is not
                data = data[: len(data) // 3]
            (folder / f"{sku}-{label}.png").write_bytes(data)
            entries.append(f"{label}={sku}-{label}.png@{az:g},{el:g}")
        rows.append({"sku": sku, "title": product.title + (" (corrupt photo)" if sku ==
                                                           BROKEN_SKU else ""),
                     "category": product.category, "images": ";".join(entries),
                     "width_mm": f"{ext[0]:.1f}", "height_mm": f"{ext[1]:.1f}",
                     "depth_mm": f"{ext[2]:.1f}", "material": product.material,
                     "fov_deg": f"{FOV_DEG:g}", "camera_distance": f"{DISTANCE:g}",
                     "mesh_uri": "shoebox.glb" if sku == PRODUCT else ""})
    path = folder / "catalog.csv"
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=[*COLUMNS, "mesh_uri"])
        w.writeheader()
        w.writerows(rows)
    return path, rows


@pytest.fixture(scope="module")
def services():
    """One local Ray and one Prefect server for the module's real work: the conversion below
    and the reprocess job the dashboard starts (it finds both through ``RAY_ADDRESS`` and
    ``PREFECT_API_URL`` in the environment ``assetfactory serve`` passes on), as workers of a
    deployed factory share theirs. Both stop when the module ends, so later tests start their
    own."""
    _gl_or_skip()
    ray = pytest.importorskip("ray")
    import prefect.settings
    from prefect.testing.utilities import prefect_test_harness

    for attempt in range(3):   # a raylet can miss Ray's fixed 30 s start window on a busy host
        try:
            ctx = ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
            break
        except Exception:   # Ray raises a bare Exception for this
            ray.shutdown()
            if attempt == 2:
                raise
            time.sleep(10)
    try:
        with prefect_test_harness(server_startup_timeout=None):
            yield {"RAY_ADDRESS": ctx.address_info["gcs_address"],
                   "PREFECT_API_URL": prefect.settings.PREFECT_API_URL.value()}
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def real_run(services, tmp_path_factory) -> dict:
    """A real run through Prefect and Ray: one tiny good SKU, one broken SKU."""
    from assetfactory.demo import BROKEN_SKU
    from assetfactory.flows.convert import convert_catalog

    out = tmp_path_factory.mktemp("factory")
    catalog, rows = _tiny_catalog(out / "input")
    summary = convert_catalog(catalog=str(catalog), out=str(out), profile="ar", overrides=TINY)
    return {"out": out, "summary": summary, "skus": [r["sku"] for r in rows],
            "broken_sku": BROKEN_SKU, "good": [PRODUCT]}


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory) -> dict:
    """A synthetic catalog (two runs, verdicts judged by the real rules, compacted), one of its
    titles hostile. No files: the pages show what is missing, as for a failed attempt."""
    from assetfactory.dashboard.synthetic import write_synthetic_catalog

    root = tmp_path_factory.mktemp("synthetic")
    info = write_synthetic_catalog(root, SYNTHETIC_N, n_runs=2, files_per_run=1,
                                   titles={HOSTILE_ROW: HOSTILE_TITLE})
    return {"out": root, **info, "hostile_sku": f"SKU-{HOSTILE_ROW:07d}"}


class Server:
    def __init__(self, proc: subprocess.Popen, url: str, log: Path) -> None:
        self.proc, self.url, self.log = proc, url, log

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


def start_server(out: Path, tmp: Path, *extra: str, token: str | None = TOKEN,
                 env: dict[str, str] | None = None) -> Server:
    """``assetfactory serve`` on a free loopback port, as a user would start it."""
    env = {**os.environ, **(env or {}), "XDG_CONFIG_HOME": str(tmp / "config"),
           "PYTHONUNBUFFERED": "1"}
    env.pop("ASSETFACTORY_DASHBOARD_TOKEN", None)
    args = [sys.executable, "-m", "assetfactory", "serve", "--out", str(out), "--port", "0",
            "--refresh", "1", *extra]
    if token:
        args += ["--token", token]
    log = tmp / f"serve-{time.monotonic_ns()}.log"
    with open(log, "wb") as fh:   # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(args, stdout=fh, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    deadline = time.monotonic() + 120
    url = None
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        m = re.search(r"dashboard: (http://\S+)/\?token=", text)
        if m:
            url = m.group(1)
            break
        if proc.poll() is not None:
            raise AssertionError(f"assetfactory serve exited {proc.returncode}:\n{text}")
        time.sleep(0.2)
    if url is None:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError("assetfactory serve printed no URL in 120 s:\n"
                             + log.read_text(errors="replace"))
    _wait_http(url + "/runs", proc, log)
    return Server(proc, url, log)


def _wait_http(url: str, proc: subprocess.Popen, log: Path) -> None:
    import urllib.request

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            if proc.poll() is not None:
                raise AssertionError(log.read_text(errors="replace")) from None
            time.sleep(0.3)
    raise AssertionError(f"{url} did not answer:\n" + log.read_text(errors="replace"))


@pytest.fixture
def serve_root(tmp_path_factory):
    """Start ``assetfactory serve`` on any root; stopped after the test."""
    started: list[Server] = []

    def start(root) -> Server:
        srv = start_server(root, tmp_path_factory.mktemp("serve"))
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()


@pytest.fixture(scope="module")
def server(real_run, services, tmp_path_factory):
    """``assetfactory serve`` on the real run (its reprocess jobs use the module's Ray and
    Prefect server)."""
    srv = start_server(real_run["out"], tmp_path_factory.mktemp("serve"), env=services)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def syn_server(synthetic, tmp_path_factory):
    """``assetfactory serve`` on the synthetic catalog."""
    srv = start_server(synthetic["out"], tmp_path_factory.mktemp("serve-syn"))
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def token() -> str:
    return TOKEN


@pytest.fixture(scope="module")
def chromium():
    """Debian's Chromium under Playwright (no browser download). For one module only:
    Playwright's sync API keeps an event loop on the main thread while the browser lives, which
    would break every later ``asyncio.run()`` in the session."""
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"Chromium not found at {CHROMIUM}: make setup-test installs Debian's "
                    "chromium (or set ASSETFACTORY_CHROMIUM)")
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="playwright is not installed: make setup-test")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                    headless=True)
        yield browser
        browser.close()


def open_page(browser, url: str):
    """A fresh browser context with the token stored (as opening the printed URL does)."""
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    ctx.set_default_timeout(120_000)   # a shared 2-core machine can be slow; never a bound
    pg = ctx.new_page()
    pg.errors = []  # type: ignore[attr-defined]
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))  # type: ignore[attr-defined]
    # model-viewer's `load` does not bubble; a capturing listener sees it before any script
    pg.add_init_script("""
        window.__mvLoads = [];
        document.addEventListener('load', (e) => {
          if (e.target && e.target.tagName === 'MODEL-VIEWER')
            window.__mvLoads.push(String(e.target.getAttribute('src')));
        }, true);""")
    pg.goto(f"{url}/runs?token={TOKEN}")
    return ctx, pg


@pytest.fixture
def page(chromium, server):
    """A page on the real run's dashboard."""
    ctx, pg = open_page(chromium, server.url)
    yield pg
    ctx.close()


@pytest.fixture
def syn_page(chromium, syn_server):
    """A page on the synthetic catalog's dashboard."""
    ctx, pg = open_page(chromium, syn_server.url)
    yield pg
    ctx.close()

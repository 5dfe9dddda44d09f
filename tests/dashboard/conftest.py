"""Fixtures for the dashboard: a small real run, the real ``assetfactory serve`` process and
headless Chromium (Debian's, driven by Playwright).

The run converts two demo SKUs (one with a hostile title) and one deliberately broken SKU
through the real Prefect flow on a real local Ray, once per test session, at small texture
sizes so it stays around half a minute on a quiet machine.
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


@pytest.fixture(scope="session")
def real_run(tmp_path_factory) -> dict:
    """A real run: demo SKUs through Prefect and Ray, one title hostile, one SKU broken."""
    _gl_or_skip()
    ray = pytest.importorskip("ray")
    from assetfactory.demo import BROKEN_SKU, make_demo_catalog
    from assetfactory.flows.convert import convert_catalog

    out = tmp_path_factory.mktemp("factory")
    catalog = make_demo_catalog(out / "demo-catalog", n=3)
    with open(catalog, newline="") as fh:
        rows = list(csv.DictReader(fh))
    rows[0]["title"] = HOSTILE_TITLE
    with open(catalog, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    small = {"uv": {"resolution": 256}, "bake": {"size": 256}, "texture": {"size": 256},
             "export": {"texture_size": 256}, "simplify": {"target_tris": 3000}}
    for attempt in range(3):   # a raylet can miss Ray's fixed 30 s start window on a busy host
        try:
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
            break
        except Exception:   # Ray raises a bare Exception for this
            ray.shutdown()
            if attempt == 2:
                raise
            time.sleep(10)
    try:
        summary = convert_catalog(catalog=str(catalog), out=str(out), overrides=small)
    finally:
        ray.shutdown()
    skus = [r["sku"] for r in rows]
    return {"out": out, "summary": summary, "skus": skus, "hostile_sku": skus[0],
            "broken_sku": BROKEN_SKU, "good": [s for s in skus if s != BROKEN_SKU]}


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


def start_server(out: Path, tmp: Path, *extra: str, token: str | None = TOKEN) -> Server:
    """``assetfactory serve`` on a free loopback port, as a user would start it."""
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp / "config"), "PYTHONUNBUFFERED": "1"}
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
def server(real_run, tmp_path_factory):
    srv = start_server(real_run["out"], tmp_path_factory.mktemp("serve"))
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def token() -> str:
    return TOKEN


@pytest.fixture(scope="session")
def chromium():
    """Debian's Chromium under Playwright (no browser download)."""
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


@pytest.fixture
def page(chromium, server):
    """A fresh browser context with the token stored (as opening the printed URL does)."""
    ctx = chromium.new_context(viewport={"width": 1400, "height": 1000})
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
    pg.goto(f"{server.url}/runs?token={TOKEN}")
    yield pg
    ctx.close()

"""The dashboard in real headless Chromium, on a small real run (see conftest.py).

Chromium is Debian's, driven by Playwright; the server is ``assetfactory serve`` in its own
process. Page scripts run under the dashboard's Content-Security-Policy, so the tests poll
with ``page.evaluate`` (the DevTools protocol) rather than Playwright's ``wait_for_function``,
which needs ``eval``.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.parse
import urllib.request

import pytest

from assetfactory.catalog.views import connect

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def _poll(page, expr: str, timeout_s: float = 60.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = page.evaluate(expr)
        if value:
            return value
        page.wait_for_timeout(200)
    raise AssertionError(f"timed out after {timeout_s} s waiting for: {expr}")


def _shot(page, shots, name: str, full: bool = False) -> None:
    page.screenshot(path=str(shots / f"{name}.png"), full_page=full)


def _rows(out, sql, params=()):
    con = connect(str(out))
    try:
        cur = con.execute(sql, list(params))
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r)) for r in cur.fetchall()]
    finally:
        con.close()


def _raw_get(url: str, path: str) -> tuple[int, bytes]:
    """A request with the path exactly as given (no client-side normalisation of ``..``)."""
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def test_runs_page(page, server, real_run, screenshot_dir):
    page.goto(f"{server.url}/runs")
    run_id = real_run["summary"]["run_id"]
    row = page.locator("table.runs tbody tr", has_text=run_id)
    assert row.count() == 1
    cells = row.locator("td.n").all_inner_texts()
    assert cells[0] == "4"                                  # assets
    assert page.locator("table.runs td.ok").first.inner_text() == "3"
    # the charts are inline SVG: stage bars for all nine stages, four metric histograms
    assert page.locator("figure.stages svg rect.bar").count() == 9
    assert page.locator(".hists figure.hist").count() == 4
    assert page.locator(".hists svg line.thr").count() >= 2   # triangle and size budgets
    assert page.locator("#token-state .tok-ok").is_visible()   # the URL's token was taken
    assert "token=" not in page.url
    _shot(page, screenshot_dir, "runs", full=True)
    assert page.errors == []


def test_queue_filters(page, server, real_run, screenshot_dir):
    page.goto(f"{server.url}/queue")
    # by default the queue holds what needs attention: here the broken SKU
    skus = page.locator("#cards .card").evaluate_all("els => els.map(e => e.dataset.sku)")
    assert skus == [real_run["broken_sku"]]
    assert "corrupt" in page.locator("#cards .card .reasons").inner_text()
    # filter through the form: everything that is ok, fewer than 3500 triangles
    page.check("input[name=all]")
    page.select_option("select[name=status]", "ok")
    page.select_option("select[name=m]", "metrics_tris")
    page.fill("input[name=hi]", "3500")
    page.click("form.filters button[type=submit]")
    page.wait_for_load_state()
    skus = page.locator("#cards .card").evaluate_all("els => els.map(e => e.dataset.sku)")
    truth = [r["sku"] for r in _rows(real_run["out"], "SELECT sku FROM assets WHERE status = "
                                     "'ok' AND metrics_tris <= 3500")]
    assert sorted(skus) == sorted(truth) and len(truth) == 3
    assert "status=ok" in page.url and "m=metrics_tris" in page.url
    _shot(page, screenshot_dir, "queue-filtered", full=True)
    # a range that nothing meets
    page.fill("input[name=lo]", "3400")
    page.click("form.filters button[type=submit]")
    page.wait_for_load_state()
    assert page.locator("#cards .card").count() == 0
    assert page.locator("p.empty").is_visible()
    assert page.errors == []


def test_asset_page_shows_the_glb_in_model_viewer(page, server, real_run, screenshot_dir):
    sku = real_run["good"][1]
    page.goto(f"{server.url}/queue?all=1&status=ok")
    page.locator(f"#cards .card[data-sku='{sku}'] a.open").click()
    page.wait_for_load_state()
    assert page.locator("h1 .sku").inner_text() == sku
    mv = page.locator("model-viewer#mv")
    src = mv.get_attribute("src")
    assert src.endswith(".glb") and mv.get_attribute("ios-src").endswith(".usdz")
    assert mv.get_attribute("ar") is not None and "quick-look" in mv.get_attribute("ar-modes")
    loads = _poll(page, "window.__mvLoads.length ? window.__mvLoads : null", 90)
    assert loads == [src]
    assert page.locator("#mv-state").inner_text() == "model loaded"
    # the GLB it loaded is the catalog's file for this SKU
    (row,) = _rows(real_run["out"], "SELECT glb_uri FROM assets WHERE sku = ?", [sku])
    assert row["glb_uri"].endswith(src.split("/files/", 1)[1])
    # photos and renders from the same cameras, the maps and the UV layout all arrive
    page.locator("section.views").scroll_into_view_if_needed()
    n_views = page.locator("section.views figure.pair").count()
    assert n_views >= 1
    imgs = "section.views img, section.maps img"
    _poll(page, f"[...document.querySelectorAll('{imgs}')].every(i => i.complete "
                "&& i.naturalWidth > 0)", 90)
    assert page.locator("section.views img.render").count() == n_views
    assert page.locator("section.maps img[alt='normal map']").count() == 1
    assert page.locator("section.maps img[alt='UV layout']").count() == 1
    # every metric, the stage timings, provenance and the attempt history are on the page
    assert page.locator("section.metrics tr").count() > 50
    assert page.locator("section.prov table").nth(1).locator("tr").count() == 10  # 9 stages
    assert page.locator("section.attempts tbody tr, section.attempts tr").count() >= 2
    page.evaluate("window.scrollTo(0, 0)")
    _shot(page, screenshot_dir, "asset")
    _shot(page, screenshot_dir, "asset-full", full=True)
    assert page.errors == []


def test_failed_asset_shows_the_failure_and_fix(page, server, real_run, screenshot_dir):
    page.goto(f"{server.url}/asset?sku={real_run['broken_sku']}")
    box = page.locator("section.failure")
    assert "ingest" in box.inner_text()
    assert "Fix:" in box.inner_text()
    (row,) = _rows(real_run["out"], "SELECT fix FROM assets WHERE sku = ?",
                   [real_run["broken_sku"]])
    assert row["fix"] in box.inner_text()
    _shot(page, screenshot_dir, "asset-failed")


def test_hostile_title_renders_as_text(page, server, real_run, screenshot_dir):
    from_catalog = _rows(real_run["out"], "SELECT title FROM assets WHERE sku = ?",
                         [real_run["hostile_sku"]])[0]["title"]
    assert "<script>" in from_catalog
    page.goto(f"{server.url}/asset?sku={urllib.parse.quote(real_run['hostile_sku'])}")
    assert page.locator("h1 .title").inner_text() == from_catalog
    assert page.evaluate("window.__pwned === undefined")
    assert page.locator("h1 script, h1 b").count() == 0
    page.goto(f"{server.url}/queue?all=1")
    card = page.locator(f"#cards .card[data-sku='{real_run['hostile_sku']}'] .title")
    assert card.inner_text() == from_catalog
    assert page.evaluate("window.__pwned === undefined")
    _shot(page, screenshot_dir, "hostile-title")


@pytest.mark.parametrize("path", [
    "/files/../../../../etc/passwd",
    "/files/assets/../../../../etc/passwd",
    "/files/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/files/assets/..%2f..%2f..%2fetc%2fpasswd",
    "/files/catalog/assets/",
    "/files//etc/passwd",
])
def test_path_traversal_refused(server, path):
    status, body = _raw_get(server.url, path)
    assert status in (403, 404), (path, status)
    assert b"root:" not in body


def test_path_traversal_from_the_browser(page, server):
    r = page.goto(f"{server.url}/files/assets/..%2F..%2F..%2F..%2Fetc%2Fpasswd")
    assert r.status == 403
    assert "root:" not in page.content()


def test_write_without_token_refused(chromium, server, real_run, screenshot_dir):
    before = _decision_count(real_run["out"])
    body = json.dumps({"skus": [real_run["good"][0]], "decision": "approve"}).encode()
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}):
        req = urllib.request.Request(f"{server.url}/api/decisions", data=body, method="POST",
                                     headers={"Content-Type": "application/json", **headers})
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=30)
        assert e.value.code == 401
    # a browser without the token: the page says why and nothing is written
    ctx = chromium.new_context()
    pg = ctx.new_page()
    pg.goto(f"{server.url}/asset?sku={real_run['good'][0]}")
    assert pg.locator("#token-form").is_visible()
    pg.keyboard.press("a")
    toast = pg.locator("#toast")
    toast.wait_for(state="visible")
    assert "refused" in toast.inner_text()
    _shot(pg, screenshot_dir, "write-refused")
    ctx.close()
    assert _decision_count(real_run["out"]) == before


def _decision_count(out) -> int:
    con = connect(str(out))
    try:
        names = {r[0] for r in con.execute(
            "SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
        if "reviews" not in names:
            return 0
        return con.execute("SELECT count(*) FROM reviews").fetchone()[0]
    finally:
        con.close()

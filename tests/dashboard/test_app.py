"""The dashboard in real headless Chromium, on a small real run and a synthetic catalog (see
conftest.py).

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
from pathlib import Path

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


def test_runs_page(syn_page, syn_server, synthetic, screenshot_dir):
    page = syn_page
    page.goto(f"{syn_server.url}/runs")
    truth = _rows(synthetic["out"], "SELECT run_id, count(*) AS n, count(*) FILTER "
                  "(WHERE status = 'ok') AS ok FROM attempts GROUP BY run_id ORDER BY run_id")
    assert len(truth) == 2
    for t in truth:
        row = page.locator("table.runs tbody tr", has_text=t["run_id"])
        assert row.count() == 1
        assert row.locator("td.n").first.inner_text() == str(t["n"])          # assets
        assert row.locator("td.ok").inner_text() == str(t["ok"])
    # the charts are inline SVG: stage bars for all nine stages, four metric histograms
    assert page.locator("figure.stages svg rect.bar").count() == 9
    assert page.locator(".hists figure.hist").count() == 4
    assert page.locator(".hists svg line.thr").count() >= 2   # triangle and size budgets
    assert page.locator("#token-state .tok-ok").is_visible()   # the URL's token was taken
    assert "token=" not in page.url
    _shot(page, screenshot_dir, "runs", full=True)
    assert page.errors == []


def test_runs_page_of_the_real_run(page, server, real_run, screenshot_dir):
    """The real run's row and charts: its stage rows, its recipe's budgets."""
    run_id = real_run["summary"]["run_id"]
    page.goto(f"{server.url}/runs?run={run_id}")
    row = page.locator("table.runs tbody tr", has_text=run_id)
    assert row.locator("td.n").first.inner_text() == "2"                      # assets
    assert row.locator("td.ok").inner_text() == "1"
    assert page.locator("figure.stages svg rect.bar").count() == 9
    assert page.locator(".hists svg line.thr").count() >= 2
    _shot(page, screenshot_dir, "runs-real", full=True)
    assert page.errors == []


def test_queue_filters(syn_page, syn_server, synthetic, screenshot_dir):
    page, out = syn_page, synthetic["out"]
    page.goto(f"{syn_server.url}/queue")
    # by default the queue holds what needs attention (failed, or a verdict other than pass,
    # and undecided), worst first: the failures lead, each with its reason
    skus = page.locator("#cards .card").evaluate_all("els => els.map(e => e.dataset.sku)")
    truth = _rows(out, "SELECT sku, verdict, status, error FROM queue WHERE (status = 'failed' "
                  "OR verdict <> 'pass') AND review_status = 'unreviewed'")
    assert sorted(skus) == sorted(r["sku"] for r in truth) and 0 < len(truth) < 40
    by_sku = {r["sku"]: r for r in truth}
    n_failed = sum(r["status"] == "failed" for r in truth)
    assert n_failed and all(by_sku[s]["status"] == "failed" for s in skus[:n_failed])
    first = page.locator("#cards .card").first
    assert by_sku[skus[0]]["error"].split(":")[0] in first.locator(".reasons").inner_text()
    assert first.locator(".chip.v-fail").count() == 1
    _shot(page, screenshot_dir, "queue-attention", full=True)
    # filter through the form: everything that is ok, at most the median triangle count
    tris = sorted(r["metrics_tris"] for r in _rows(out, "SELECT metrics_tris FROM assets "
                                                        "WHERE status = 'ok'"))
    hi = tris[len(tris) // 2]
    page.check("input[name=all]")
    page.select_option("select[name=status]", "ok")
    page.select_option("select[name=m]", "metrics_tris")
    page.fill("input[name=hi]", str(hi))
    page.click("form.filters button[type=submit]")
    page.wait_for_load_state()
    skus = page.locator("#cards .card").evaluate_all("els => els.map(e => e.dataset.sku)")
    truth = [r["sku"] for r in _rows(out, "SELECT sku FROM assets WHERE status = 'ok' AND "
                                     "metrics_tris <= ?", [hi])]
    assert sorted(skus) == sorted(truth) and 0 < len(truth) < len(tris)
    assert "status=ok" in page.url and "m=metrics_tris" in page.url
    _shot(page, screenshot_dir, "queue-filtered", full=True)
    # a range that nothing meets
    page.fill("input[name=lo]", str(hi + 1))
    page.click("form.filters button[type=submit]")
    page.wait_for_load_state()
    assert page.locator("#cards .card").count() == 0
    assert page.locator("p.empty").is_visible()
    assert page.errors == []


def test_asset_page_shows_the_glb_in_model_viewer(page, server, real_run, screenshot_dir):
    sku = real_run["good"][0]
    page.goto(f"{server.url}/queue?all=1&status=ok&sort=sku")
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
    # the validators' full reports, run on request (and cached)
    page.click("#full-report")
    _poll(page, "document.getElementById('report').textContent.includes('\"gltf\"')", 120)
    report = json.loads(page.locator("#report").inner_text())
    assert report["gltf"]["errors"] == 0 and report["usdz"]["errors"] == 0
    page.evaluate("window.scrollTo(0, 0)")
    _shot(page, screenshot_dir, "asset")
    _shot(page, screenshot_dir, "asset-full", full=True)
    assert page.errors == []


def test_keyboard_walks_the_queue(syn_page, syn_server):
    """k / j on an asset page walk the queue the asset was opened from."""
    page = syn_page
    page.goto(f"{syn_server.url}/queue?all=1&status=ok&sort=sku")
    order = page.locator("#cards .card").evaluate_all("els => els.map(e => e.dataset.sku)")
    sku = order[3]
    page.locator(f"#cards .card[data-sku='{sku}'] a.open").click()
    page.wait_for_load_state()
    assert page.locator("h1 .sku").inner_text() == sku
    with page.expect_navigation():
        page.keyboard.press("k")
    assert page.locator("h1 .sku").inner_text() == order[2]
    with page.expect_navigation():
        page.keyboard.press("j")
    with page.expect_navigation():
        page.keyboard.press("j")
    assert page.locator("h1 .sku").inner_text() == order[4]
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


def test_hostile_title_renders_as_text(syn_page, syn_server, synthetic, screenshot_dir):
    page = syn_page
    from_catalog = _rows(synthetic["out"], "SELECT title FROM assets WHERE sku = ?",
                         [synthetic["hostile_sku"]])[0]["title"]
    assert "<script>" in from_catalog
    page.goto(f"{syn_server.url}/asset?sku={urllib.parse.quote(synthetic['hostile_sku'])}")
    assert page.locator("h1 .title").inner_text() == from_catalog
    assert page.evaluate("window.__pwned === undefined")
    assert page.locator("h1 script, h1 b").count() == 0
    page.goto(f"{syn_server.url}/queue?all=1")
    card = page.locator(f"#cards .card[data-sku='{synthetic['hostile_sku']}'] .title")
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
def test_path_traversal_refused(syn_server, path):
    status, body = _raw_get(syn_server.url, path)
    assert status in (403, 404), (path, status)
    assert b"root:" not in body


def test_path_traversal_from_the_browser(syn_page, syn_server):
    page = syn_page
    r = page.goto(f"{syn_server.url}/files/assets/..%2F..%2F..%2F..%2Fetc%2Fpasswd")
    assert r.status == 403
    assert "root:" not in page.content()


def test_write_without_token_refused(chromium, syn_server, synthetic, screenshot_dir):
    sku = _ok_skus(synthetic)[0]
    before = _decision_count(synthetic["out"])
    body = json.dumps({"skus": [sku], "decision": "approve"}).encode()
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}):
        req = urllib.request.Request(f"{syn_server.url}/api/decisions", data=body,
                                     method="POST",
                                     headers={"Content-Type": "application/json", **headers})
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=30)
        assert e.value.code == 401
    # a browser without the token: the page says why and nothing is written
    ctx = chromium.new_context()
    ctx.set_default_timeout(120_000)
    pg = ctx.new_page()
    pg.goto(f"{syn_server.url}/asset?sku={sku}")
    assert pg.locator("#token-form").is_visible()
    pg.keyboard.press("a")
    toast = pg.locator("#toast")
    toast.wait_for(state="visible")
    assert "refused" in toast.inner_text()
    _shot(pg, screenshot_dir, "write-refused")
    ctx.close()
    assert _decision_count(synthetic["out"]) == before


def _ok_skus(synthetic) -> list[str]:
    """The synthetic catalog's converted SKUs, in order (the hostile title's left out)."""
    return [r["sku"] for r in _rows(synthetic["out"], "SELECT sku FROM assets WHERE status = "
                                    "'ok' AND sku <> ? ORDER BY sku", [synthetic["hostile_sku"]])]


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


def _decisions(out) -> list[dict]:
    from assetfactory.catalog.views import Catalog

    with Catalog(str(out)) as cat:
        return cat.rows("SELECT * FROM decisions ORDER BY decided_at")


def test_approve_one_and_reject_another(syn_page, syn_server, synthetic, screenshot_dir):
    """Decisions from the page (button, then keyboard) land in the catalog as the same rows
    ``assetfactory review`` writes."""
    page, out = syn_page, synthetic["out"]
    good, other = _ok_skus(synthetic)[:2]
    page.fill("#reviewer", "Dana Reviewer")
    page.dispatch_event("#reviewer", "change")
    # approve on the asset page with the button
    page.goto(f"{syn_server.url}/asset?sku={good}")
    page.click("button.approve")
    page.locator("#toast").wait_for(state="visible")
    assert "approve: 1 recorded" in page.locator("#toast").inner_text()
    assert page.locator("#decision-chip").inner_text() == "approve"
    _shot(page, screenshot_dir, "decided-approve")
    # reject from the queue with the keyboard: focus the card, press r
    page.goto(f"{syn_server.url}/queue?all=1&status=ok&sort=sku")
    cards = page.locator("#cards .card")
    skus = cards.evaluate_all("els => els.map(e => e.dataset.sku)")
    for _ in range(skus.index(other)):
        page.keyboard.press("j")
    assert "focus" in (cards.nth(skus.index(other)).get_attribute("class") or "")
    page.keyboard.press("r")
    page.locator("#toast").wait_for(state="visible")
    assert "reject: 1 recorded" in page.locator("#toast").inner_text()
    _shot(page, screenshot_dir, "decided-reject-queue")
    rows = {r["sku"]: r for r in _decisions(out)}
    assert rows[good]["decision"] == "approve" and rows[other]["decision"] == "reject"
    for sku in (good, other):
        r = rows[sku]
        assert r["reviewer"] == "Dana Reviewer" and r["source"] == "dashboard"
        current = _rows(out, "SELECT attempt_id FROM assets WHERE sku = ?", [sku])
        assert r["attempt_id"] == current[0]["attempt_id"]
    # the queue shows them decided, and the runs page counts them
    page.goto(f"{syn_server.url}/queue?all=1&decision=approve")
    assert cards.evaluate_all("els => els.map(e => e.dataset.sku)") == [good]
    page.goto(f"{syn_server.url}/runs")
    assert "approve 1" in page.locator("table.runs").inner_text()
    assert page.errors == []


def test_cli_and_dashboard_write_the_same_rows(syn_server, synthetic, token):
    """``assetfactory review`` and the dashboard's endpoint: same columns, same meaning."""
    from typer.testing import CliRunner

    from assetfactory.cli import app

    out = synthetic["out"]
    sku = _ok_skus(synthetic)[2]
    res = CliRunner().invoke(app, ["review", sku, "approve", "--note", "from the cli",
                                   "--reviewer", "cli-user", "--out", str(out)])
    assert res.exit_code == 0, res.output
    body = json.dumps({"skus": [sku], "decision": "reject", "note": "from the page",
                       "reviewer": "page-user"}).encode()
    req = urllib.request.Request(f"{syn_server.url}/api/decisions", data=body,
                                     method="POST",
                                 headers={"Content-Type": "application/json",
                                          "Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=60) as r:
        assert json.loads(r.read())["recorded"] == 1
    from assetfactory.catalog.views import Catalog

    with Catalog(str(out)) as cat:
        both = cat.rows("SELECT * FROM reviews WHERE sku = ? AND note LIKE 'from the %' "
                        "ORDER BY decided_at", [sku])
    assert [b["source"] for b in both] == ["cli", "dashboard"]
    assert set(both[0]) == set(both[1])
    assert both[0]["attempt_id"] == both[1]["attempt_id"]
    assert [b["decision"] for b in both] == ["approve", "reject"]


def test_rework_starts_the_reprocess_flow(page, server, real_run, screenshot_dir):
    """Rework with an option override from the asset page: the decision row carries the
    override, the dashboard starts ``assetfactory reprocess --reworks``, and a new attempt
    supersedes the one that was looked at."""
    sku = real_run["good"][0]
    (old,) = _rows(real_run["out"], "SELECT attempt_id FROM assets WHERE sku = ?", [sku])
    page.fill("#reviewer", "Dana Reviewer")
    page.dispatch_event("#reviewer", "change")
    page.goto(f"{server.url}/asset?sku={urllib.parse.quote(sku)}")
    page.keyboard.press("w")
    dialog = page.locator("dialog#rework")
    dialog.wait_for(state="visible")
    page.fill("#rework-form textarea[name=overrides]", "texture.size=128")
    page.fill("#rework-form input[name=note]", "texture looks soft")
    _shot(page, screenshot_dir, "rework-dialog")
    page.click("#rework-ok")
    page.locator("#toast").wait_for(state="visible")
    assert "rework: 1 recorded" in page.locator("#toast").inner_text()
    assert "reprocess job" in page.locator("#toast").inner_text()
    (decision,) = [d for d in _decisions(real_run["out"]) if d["sku"] == sku]
    assert decision["decision"] == "rework" and decision["attempt_id"] == old["attempt_id"]
    assert json.loads(decision["overrides"]) == {"texture": {"size": 128}}
    # the reprocess flow runs in its own process; wait for it
    deadline = time.monotonic() + 400
    while True:
        with urllib.request.urlopen(f"{server.url}/api/reprocess", timeout=30) as r:
            jobs = json.loads(r.read())
        assert jobs and jobs[-1]["args"][:2] == ["reprocess", "--reworks"]
        if not jobs[-1]["running"]:
            break
        assert time.monotonic() < deadline, jobs[-1]["log_tail"]
        time.sleep(2)
    assert jobs[-1]["returncode"] == 0, jobs[-1]["log_tail"]
    (new,) = _rows(real_run["out"], "SELECT attempt_id, supersedes, trigger, status, "
                   "texture_size FROM assets WHERE sku = ?", [sku])
    assert new["attempt_id"] != old["attempt_id"] and new["supersedes"] == old["attempt_id"]
    assert new["trigger"].startswith("rework:") and new["status"] == "ok"
    assert new["texture_size"] == 128
    # the asset page shows the new attempt, the old one in its history
    page.goto(f"{server.url}/asset?sku={urllib.parse.quote(sku)}")
    page.wait_for_timeout(1500)   # the dashboard's snapshot refreshes every second here
    page.reload()
    assert page.locator("#asset").get_attribute("data-attempt") == new["attempt_id"]
    ids = page.locator("section.attempts td:first-child code").all_inner_texts()
    assert ids == [new["attempt_id"], old["attempt_id"]]
    _shot(page, screenshot_dir, "after-rework", full=True)


def test_dashboard_on_s3(chromium, real_run, s3_root, serve_root, token, screenshot_dir):
    """The same pages over an S3 prefix (SeaweedFS): catalog rows, files and decisions all go
    through the storage layer. A synthetic catalog, with one SKU given the real run's GLB,
    USDZ and poster."""
    from assetfactory.catalog.views import Catalog
    from assetfactory.core.storage import open_storage
    from assetfactory.dashboard.security import key_for_uri
    from assetfactory.dashboard.synthetic import write_synthetic_catalog

    # judged, not compacted: compaction on S3 has its own tests (tests/catalog)
    write_synthetic_catalog(s3_root, 12, n_runs=1, files_per_run=1, compact=False)
    store = open_storage(s3_root)
    (src,) = _rows(real_run["out"], "SELECT glb_uri, poster_uri FROM assets WHERE sku = ?",
                   [real_run["good"][0]])
    with Catalog(s3_root) as cat:
        row = cat.rows("SELECT sku, glb_uri FROM assets WHERE status = 'ok' ORDER BY sku "
                       "LIMIT 1")[0]
    sku = row["sku"]
    assert row["glb_uri"].startswith(s3_root + "/")
    glb_key = key_for_uri(s3_root, row["glb_uri"])
    assert glb_key == f"assets/{sku.lower()}/{sku.lower()}.glb"
    glb = Path(src["glb_uri"]).read_bytes()
    store.put(glb_key, glb, "model/gltf-binary")
    store.put(f"assets/{sku.lower()}/poster.png", Path(src["poster_uri"]).read_bytes())
    srv = serve_root(s3_root)
    ctx = chromium.new_context(viewport={"width": 1400, "height": 1000})
    ctx.set_default_timeout(120_000)
    pg = ctx.new_page()
    pg.add_init_script("""window.__mvLoads = [];
        document.addEventListener('load', (e) => {
          if (e.target && e.target.tagName === 'MODEL-VIEWER') window.__mvLoads.push(1);
        }, true);""")
    pg.goto(f"{srv.url}/queue?all=1&token={token}")
    assert pg.locator("#cards .card").count() == 12
    pg.fill("#reviewer", "s3 reviewer")
    pg.dispatch_event("#reviewer", "change")
    pg.goto(f"{srv.url}/asset?sku={sku}")
    _poll(pg, "window.__mvLoads.length", 120)
    _shot(pg, screenshot_dir, "s3-asset")
    # the file route reads S3 through the storage layer, and only under the served prefixes
    with urllib.request.urlopen(f"{srv.url}/files/{glb_key}", timeout=60) as r:
        assert r.read() == glb
    for path in ("/files/../" + glb_key, "/files/catalog/assets/", "/files/%2e%2e/x"):
        assert _raw_get(srv.url, path)[0] in (403, 404)
    pg.keyboard.press("a")
    pg.locator("#toast").wait_for(state="visible")
    assert "approve: 1 recorded" in pg.locator("#toast").inner_text()
    # a selection in the queue: two cards ticked, one click
    pg.goto(f"{srv.url}/queue?all=1&status=ok&sort=sku")
    listed = pg.locator("#cards .card").evaluate_all("els => els.map(e => e.dataset.sku)")
    picked = [s for s in listed if s != sku][:2]
    for s in picked:
        pg.check(f"#cards .card[data-sku='{s}'] input.sel")
    assert pg.locator("#selcount").inner_text() == "2 selected"
    pg.click("#selbar button.reject")
    pg.locator("#toast").wait_for(state="visible")
    assert "reject: 2 recorded" in pg.locator("#toast").inner_text()
    _shot(pg, screenshot_dir, "s3-queue-selection")
    ctx.close()
    with Catalog(s3_root) as cat:
        got = {r["sku"]: r for r in cat.rows("SELECT * FROM decisions")}
    assert got[sku]["decision"] == "approve" and got[sku]["reviewer"] == "s3 reviewer"
    assert {s: got[s]["decision"] for s in picked} == {s: "reject" for s in picked}
    assert len(got) == 3

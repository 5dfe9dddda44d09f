"""The review dashboard: a FastAPI app with server-rendered Jinja2 pages and a little JavaScript.

Pages: ``/runs`` (each run's counts, throughput, wall time, charts), ``/queue`` (the assets that
need attention, filtered, sorted, paginated), ``/asset?sku=`` (photos beside renders from the
same cameras, the GLB in ``<model-viewer>`` with AR and the USDZ, maps, metrics, timings,
provenance, attempts, validator reports, failure and fix). Writes (``POST /api/decisions``,
``POST /api/reprocess``) need the bearer token; everything else only reads.

It reads the catalog through ``catalog.views`` and the storage layer, so a local folder and an
S3 prefix look the same; files are served from the storage root only, under the prefixes in
``security.SERVED_PREFIXES``.
"""

from __future__ import annotations

import json
import logging
import math
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from ..core.storage import LocalStorage, media_type_for
from . import actions, charts, renders
from .data import (
    EQUALITY_FILTERS,
    KEY_METRICS,
    Catalog,
    QueueQuery,
    asset_detail,
    facets,
    queue_page,
    run_detail,
    runs_overview,
)
from .security import UnsafePath, inside_root, key_for_uri, safe_key, token_matches

log = logging.getLogger("assetfactory.dashboard")

HERE = Path(__file__).resolve().parent
MODEL_VIEWER = Path("@google") / "model-viewer" / "dist" / "model-viewer.min.js"
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}


@dataclass
class Settings:
    root: str
    token: str
    host: str = "127.0.0.1"
    refresh_s: float = 30.0
    per_page: int = 48
    reviewer: str | None = None       # the default reviewer name (else the page asks)
    node_modules: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def find_model_viewer(node_modules: Path | None = None) -> Path:
    """``model-viewer.min.js`` from the project's node_modules (installed by ``npm ci``)."""
    from ..core.validate import _candidates

    cands = ([node_modules] if node_modules else []) + _candidates()
    for cand in cands:
        if cand is not None and (cand / MODEL_VIEWER).is_file():
            return cand / MODEL_VIEWER
    raise RuntimeError("the npm package @google/model-viewer was not found: run `npm ci` in the "
                       "project folder (make setup does), or point ASSETFACTORY_NODE_MODULES at a "
                       "node_modules that has it")


def create_app(settings: Settings, catalog: Catalog | None = None) -> FastAPI:
    cat = catalog or Catalog(settings.root, settings.refresh_s)
    if cat.loaded_at == 0:
        cat.load()
    cat.start_watching()
    app = FastAPI(title="asset factory review", docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.catalog = cat
    app.state.settings = settings
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    env = templates.env
    env.autoescape = True   # every catalog string is escaped (Jinja's default for .html too)
    env.filters["num"] = _num
    env.filters["mb"] = _mb
    env.filters["secs"] = _secs
    env.filters["pretty"] = _pretty_json
    env.filters["when"] = lambda t: time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))
    env.filters["ts"] = _ts
    env.globals["metric_groups"] = metric_groups
    env.globals["file_url"] = lambda uri: _file_url(cat, uri)
    env.globals["key_url"] = lambda key: None if not key else "/files/" + urllib.parse.quote(key)
    env.globals["KEY_METRICS"] = KEY_METRICS
    env.globals["decision_overrides"] = actions.override_help
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    mv_path = find_model_viewer(settings.node_modules)
    # warm up what the first page view would otherwise pay for: the stage option names (they
    # import every stage module) and the compiled templates
    actions.override_help()
    for name in ("runs.html", "queue.html", "asset.html"):
        env.get_template(name)
    loopback = settings.host in LOOPBACK_HOSTS

    @app.middleware("http")
    async def guard(request: Request, call_next):
        # DNS rebinding: a page served from another name must not read a loopback dashboard
        host = (request.headers.get("host") or "").rsplit(":", 1)[0]
        if loopback and host not in LOOPBACK_HOSTS:
            return Response("unknown host", status_code=400)
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault(
            "Content-Security-Policy",
            # model-viewer compiles WebAssembly (wasm-unsafe-eval) and styles its shadow DOM
            "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; "
            "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
            "connect-src 'self' data: blob:; worker-src 'self' blob:; object-src 'none'; "
            "base-uri 'none'; frame-ancestors 'none'")
        return response

    def page(request: Request, name: str, **ctx) -> Response:
        ctx.setdefault("loaded_at", cat.loaded_at)
        ctx.setdefault("root", cat.root)
        ctx.setdefault("default_reviewer", settings.reviewer or "")
        return templates.TemplateResponse(request, name, ctx)

    def require_token(request: Request) -> None:
        if not token_matches(settings.token, request.headers.get("authorization")):
            raise HTTPException(401, "this write needs the dashboard token: open the URL "
                                     "`assetfactory serve` printed, or send "
                                     "'Authorization: Bearer <token>'")

    # ------------------------------------------------------------------ pages

    @app.get("/")
    def index() -> RedirectResponse:
        return RedirectResponse("/runs", status_code=302)

    @app.get("/runs")
    def runs_page(request: Request, run: str | None = None):
        runs = runs_overview(cat)
        selected = run or (runs[0]["run_id"] if runs else None)
        detail = run_detail(cat, selected) if selected else None
        hist = []
        stage_chart = None
        if detail is not None:
            th = actions.thresholds(detail)
            for label, vals in detail.metrics.items():
                hist.append(charts.histogram(vals, label, th.get(label, ())))
            stage_chart = charts.stage_bars(detail.stages)
        bars = {r["run_id"]: charts.status_bar({"ok": r["ok"], "failed": r["failed"]})
                for r in runs}
        vbars = {r["run_id"]: charts.status_bar(r["verdicts"]) for r in runs if r["verdicts"]}
        return page(request, "runs.html", runs=runs, selected=selected, detail=detail,
                    hist=hist, stage_chart=stage_chart, bars=bars, vbars=vbars,
                    verdict_chart=charts.status_bar)

    @app.get("/queue")
    def queue(request: Request):
        q = parse_queue(request, settings.per_page)
        try:
            rows, total = queue_page(cat, q)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        for i, r in enumerate(rows):
            r["_pos"] = (q.page - 1) * q.per_page + i
            r["_reasons"] = actions.reasons(r)
        pages = max(1, math.ceil(total / q.per_page))
        qs = queue_qs(request)
        return page(request, "queue.html", rows=rows, total=total, q=q, pages=pages,
                    facets=facets(cat), numeric=cat.numeric_columns(), qs=qs,
                    filters=EQUALITY_FILTERS, page_url=lambda n: _with(qs, page=n),
                    sort_url=lambda col: _sort_url(qs, q, col))

    @app.get("/queue/at")
    def queue_at(request: Request, pos: int = 0):
        """The asset at position ``pos`` of a queue (the keyboard's next / previous)."""
        q = parse_queue(request, 1)
        q.page, q.per_page = max(pos, 0) + 1, 1
        rows, _total = queue_page(cat, q)
        if not rows:
            return RedirectResponse("/queue?" + queue_qs(request), status_code=302)
        return RedirectResponse(_asset_url(rows[0]["sku"], queue_qs(request), pos),
                                status_code=302)

    @app.get("/asset")
    def asset(request: Request, sku: str, attempt: str | None = None, pos: int | None = None,
              q: str = ""):
        d = asset_detail(cat, sku, attempt)
        if d is None:
            raise HTTPException(404, f"no SKU {sku!r} in the catalog")
        row = d.row
        glb = key_for_uri(cat.root, row.get("glb_uri"))
        usdz = key_for_uri(cat.root, row.get("usdz_uri"))
        stage_chart = charts.stage_bars([
            {"stage": s["stage"], "mean_s": s.get("duration_s") or 0.0, "p95_s": None,
             "total_s": s.get("duration_s") or 0.0}
            for s in d.stages])
        try:
            views = json.loads(d.metrics.get("metrics_iou_views") or "{}")
        except (TypeError, ValueError):
            views = {}
        return page(request, "asset.html", d=d, row=row, glb=glb, usdz=usdz,
                    poster=key_for_uri(cat.root, row.get("poster_uri")), iou_views=views,
                    stage_chart=stage_chart, can_render=bool(
                        "cameras" in d.artifacts and "mesh" in d.artifacts and renders.safe_name(
                            str(row.get("attempt_id")))),
                    reasons=actions.reasons(row), pos=pos, qs=q,
                    recipe=_pretty_json(row.get("recipe")),
                    libs=_pretty_json(row.get("library_versions")),
                    inputs=_pretty_json(row.get("input_hashes")))

    # ------------------------------------------------------------------ files

    @app.get("/files/{key:path}")
    def files(key: str):
        try:
            key = safe_key(key)
        except UnsafePath as exc:
            raise HTTPException(403, str(exc)) from None
        store = cat.store
        mt = media_type_for(key)
        if isinstance(store, LocalStorage):
            try:
                path = inside_root(store.root, key)
            except UnsafePath as exc:
                raise HTTPException(403, str(exc)) from None
            if not path.is_file():
                raise HTTPException(404, f"no file {key!r} under the storage root")
            return FileResponse(path, media_type=mt,
                                headers={"Cache-Control": "private, max-age=3600"})
        if not store.exists(key):
            raise HTTPException(404, f"no file {key!r} under the storage root")
        return Response(store.get(key), media_type=mt,
                        headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/render/{attempt_id}/{label}.png")
    def render_view(attempt_id: str, label: str, sku: str):
        if not (renders.safe_name(attempt_id) and renders.safe_name(label)):
            raise HTTPException(403, "not a plain attempt id or view label")
        d = asset_detail(cat, sku, attempt_id)
        if d is None or "cameras" not in d.artifacts or "mesh" not in d.artifacts:
            raise HTTPException(404, "this attempt has no final mesh and cameras to render")
        try:
            data = renders.cached_png(cat.store, renders.cache_key(attempt_id, "view-" + label),
                                      lambda: renders.view_render(cat.store, d.artifacts, label))
        except KeyError as exc:
            raise HTTPException(404, str(exc)) from None
        return Response(data, media_type="image/png",
                        headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/uv/{attempt_id}.png")
    def uv_png(attempt_id: str, sku: str):
        if not renders.safe_name(attempt_id):
            raise HTTPException(403, "not a plain attempt id")
        d = asset_detail(cat, sku, attempt_id)
        if d is None or "mesh" not in d.artifacts:
            raise HTTPException(404, "this attempt has no final mesh")
        try:
            data = renders.cached_png(cat.store, renders.cache_key(attempt_id, "uv-layout"),
                                      lambda: renders.uv_layout(cat.store, d.artifacts))
        except KeyError as exc:
            raise HTTPException(404, str(exc)) from None
        return Response(data, media_type="image/png")

    @app.get("/api/validate")
    def validate(sku: str, attempt: str):
        """The validators' full reports for one attempt (run once, then cached)."""
        if not renders.safe_name(attempt):
            raise HTTPException(403, "not a plain attempt id")
        d = asset_detail(cat, sku, attempt)
        if d is None:
            raise HTTPException(404, "no such attempt")
        glb = key_for_uri(cat.root, d.row.get("glb_uri"))
        if not glb:
            raise HTTPException(404, "this attempt wrote no GLB")
        return JSONResponse(actions.validator_reports(cat, attempt, glb))

    @app.get("/vendor/model-viewer.min.js")
    def model_viewer():
        return FileResponse(mv_path, media_type="text/javascript",
                            headers={"Cache-Control": "public, max-age=86400"})

    # ------------------------------------------------------------------ writes

    @app.post("/api/decisions")
    async def decide(request: Request):
        require_token(request)
        try:
            body = await request.json()
        except ValueError:
            raise HTTPException(400, "the body must be JSON") from None
        try:   # file and catalog work: off the event loop
            result = await run_in_threadpool(actions.record_decisions, cat, body,
                                             settings.reviewer)
        except actions.DecisionError as exc:
            raise HTTPException(400, str(exc)) from None
        return JSONResponse(result, status_code=200 if result["recorded"] else 409)

    @app.post("/api/reprocess")
    async def reprocess(request: Request):
        require_token(request)
        try:
            body = await request.json()
        except ValueError:
            body = {}
        try:
            result = await run_in_threadpool(actions.start_reprocess, cat, body or {})
        except actions.DecisionError as exc:
            raise HTTPException(400, str(exc)) from None
        return JSONResponse(result)

    @app.get("/api/reprocess")
    def reprocess_status():
        return JSONResponse(actions.reprocess_jobs())

    @app.get("/api/whoami")
    def whoami(request: Request):
        """Lets the page check a pasted token without writing anything."""
        ok = token_matches(settings.token, request.headers.get("authorization"))
        return JSONResponse({"token_ok": ok}, status_code=200 if ok else 401)

    return app


# ---------------------------------------------------------------------- helpers

def parse_queue(request: Request, per_page: int) -> QueueQuery:
    p = request.query_params
    equals = {k: p.get(k, "") for k in EQUALITY_FILTERS if p.get(k)}
    ranges: list[tuple[str, float | None, float | None]] = []
    for col, lo, hi in zip(p.getlist("m"), p.getlist("lo"), p.getlist("hi")):
        if col:
            ranges.append((col, _float(lo), _float(hi)))
    for spec in p.getlist("range"):
        col, _, rest = spec.partition(":")
        lo, _, hi = rest.partition(":")
        if col:
            ranges.append((col, _float(lo), _float(hi)))
    try:
        page = max(1, int(p.get("page", "1")))
        per = max(1, min(500, int(p.get("per", str(per_page)))))
    except ValueError:
        raise HTTPException(400, "page and per must be whole numbers") from None
    return QueueQuery(equals=equals, ranges=ranges, text=p.get("q", "").strip(),
                      attention=p.get("all", "") not in ("1", "on", "true"),
                      sort=p.get("sort", "severity") or "severity",
                      desc=None if p.get("desc", "") == "" else p.get("desc") in ("1", "true"),
                      page=page, per_page=per)


def queue_qs(request: Request) -> str:
    keep = [(k, v) for k, v in request.query_params.multi_items()
            if k not in ("page", "pos", "sku", "attempt", "token")]
    return urllib.parse.urlencode(keep)


def _with(qs: str, **changes) -> str:
    items = [(k, v) for k, v in urllib.parse.parse_qsl(qs, keep_blank_values=True)
             if k not in changes]
    items += [(k, str(v)) for k, v in changes.items()]
    return "/queue?" + urllib.parse.urlencode(items)


def _sort_url(qs: str, q: QueueQuery, col: str) -> str:
    """Sort by ``col``; on the column already sorted by, flip the direction."""
    items = [(k, v) for k, v in urllib.parse.parse_qsl(qs, keep_blank_values=True)
             if k not in ("sort", "desc", "page")]
    items.append(("sort", col))
    if col == q.sort:
        items.append(("desc", "0" if q.desc_effective else "1"))
    return "/queue?" + urllib.parse.urlencode(items)


def _asset_url(sku: str, qs: str, pos: int | None) -> str:
    items = [("sku", sku)]
    if pos is not None:
        items += [("pos", str(pos)), ("q", qs)]
    return "/asset?" + urllib.parse.urlencode(items)


def _float(v: str | None) -> float | None:
    if v is None or v.strip() == "":
        return None
    try:
        f = float(v)
    except ValueError:
        raise HTTPException(400, f"not a number: {v!r}") from None
    if not math.isfinite(f):
        raise HTTPException(400, f"not a finite number: {v!r}")
    return f


def _file_url(cat: Catalog, uri: str | None) -> str | None:
    key = key_for_uri(cat.root, uri)
    return None if key is None else "/files/" + urllib.parse.quote(key)


def _num(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
            return f"{v:.3g}"
        return f"{v:.4g}"
    return str(v)


def _mb(v: Any) -> str:
    """Bytes as megabytes; a dash where there is no file (as ``num`` shows a missing value)."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v / 1e6:.2f} MB"


def _ts(v: Any) -> str:
    """A catalog timestamp to the second, in UTC (what the rows hold)."""
    if v is None:
        return "–"
    if hasattr(v, "strftime"):
        return v.strftime("%Y-%m-%d %H:%M:%S")
    return str(v)


def metric_groups(metrics: dict[str, Any]) -> list[tuple[str, list[tuple[str, Any]]]]:
    """Metrics grouped by the stage that wrote them (their name's prefix), in stage order."""
    from ..flows.recipe import STAGE_ORDER

    groups: dict[str, list[tuple[str, Any]]] = {}
    for k, v in sorted(metrics.items()):
        head = k.split("_", 1)[0]
        group = head if head in STAGE_ORDER else ("validators" if head in ("gltf", "usd")
                                                   else "other")
        groups.setdefault(group, []).append((k, v))
    order = {n: i for i, n in enumerate((*STAGE_ORDER, "validators", "other"))}
    return sorted(groups.items(), key=lambda kv: order.get(kv[0], 99))


def _secs(v: Any) -> str:
    if v is None:
        return "–"
    v = float(v)
    if v >= 3600:
        return f"{v / 3600:.1f} h"
    if v >= 120:
        return f"{v / 60:.1f} min"
    return f"{v:.2f} s"


def _pretty_json(v: Any) -> str:
    if v is None or v == "":
        return ""
    try:
        return json.dumps(json.loads(v) if isinstance(v, str) else v, indent=1, sort_keys=True,
                          default=str)
    except ValueError:
        return str(v)

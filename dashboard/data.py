"""What the dashboard reads: the catalog's views (``catalog.views.Catalog``) over rows held in
memory, and the page queries on them.

Why in memory: the views read Parquet files (on S3 through a local cache) and take the latest
attempt, verdict and decision per SKU with aggregates on every query. At 100k assets that costs
hundreds of milliseconds per page; a page should cost a few. So the dashboard builds the views
once, copies the row sources they read (attempts, verdicts, reviews, published, rulesets) into
in-memory DuckDB tables that take the sources' place, adds a narrow ``stage_times`` table, and
rebuilds all of it in the background when the catalog's folders change. Stage rows in full
(options, artifact hashes) stay in their Parquet files and are read per asset, from the files
that can hold that attempt's run.

Every value that comes from a request reaches SQL as a bound parameter; the only identifiers
written into SQL text are column names checked against the catalog's own column list.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from ..catalog.views import Catalog as CatalogViews
from ..catalog.views import quote_ident
from ..core.storage import open_storage

log = logging.getLogger("assetfactory.dashboard")

#: Row sources copied into memory (``_src_<kind>`` of ``catalog.views``); stages stay on disk.
IN_MEMORY = ("assets", "verdicts", "reviews", "published", "rulesets")

#: Views of ``catalog.views`` computed once per snapshot (they change only with new attempts
#: or verdicts; a decision made here updates ``queue`` in place, see ``Catalog.add_reviews``).
DERIVED = ("current_assets", "current_verdicts", "queue")

#: The key metrics the runs page charts: label -> (column, unit divisor). The columns are the
#: ones the default triage rules judge, so the rules' thresholds apply to what is drawn.
KEY_METRICS: dict[str, tuple[str, float]] = {
    "silhouette IoU (worst view)": ("metrics_iou_min", 1.0),
    "observed texels": ("texture_observed_frac", 1.0),
    "triangles": ("metrics_tris", 1.0),
    "file size (MB)": ("export_glb_bytes", 1e6),
}

#: Artifact name -> extension of its content-addressed object (``core.artifacts`` save_*).
_EXT = {"image/": ".png", "mask/": ".png", "texture/": ".png", "cameras": ".json",
        "materials": ".json", "mesh": ".npz", "dense_mesh": ".npz", "clean_mesh": ".npz",
        "collision": ".npz", "lod": ".npz"}


class Reader(CatalogViews):
    """The catalog's views on one cursor of the in-memory snapshot: what the ``catalog`` API
    functions take as their ``root``, and what one request uses (cursors are not shared)."""

    def __init__(self, base: CatalogViews, cursor: duckdb.DuckDBPyConnection) -> None:
        self.root = base.root
        self.con = cursor
        # the attributes ``catalog.views.Catalog`` reads, shared with the snapshot's own
        for name, value in vars(base).items():
            if name not in ("con", "root"):
                setattr(self, name, value)
        self.cache: dict[Any, Any] = base.dashboard_cache   # results of this snapshot

    def refresh(self) -> Reader:
        """The snapshot is replaced whole by ``Catalog.load``; a reader keeps what it has."""
        return self


class Catalog:
    """The dashboard's in-memory copy of the catalog under one storage root."""

    def __init__(self, root: str, refresh_s: float = 30.0) -> None:
        self.root = root if root.startswith("s3://") else os.path.abspath(root)
        self.store = open_storage(self.root)
        self.refresh_s = refresh_s
        self._lock = threading.Lock()
        self._views: CatalogViews | None = None
        self._signature: Any = None
        self.loaded_at = 0.0
        self.load_s = 0.0
        self.columns: dict[str, str] = {}        # the queue view's columns and types
        self.generation = 0                      # bumped by every full load
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ loading

    def load(self) -> None:
        """Build a fresh snapshot and swap it in (readers keep the old one until done)."""
        t0 = time.perf_counter()
        sig = self.signature()
        views = CatalogViews(self.root)
        views.dashboard_cache = {}
        con = views.con
        _promote_temp_tables(con)
        queue_sql = con.execute("SELECT sql FROM duckdb_views() WHERE view_name = 'queue'"
                                ).fetchone()[0]
        views.dashboard_queue_sql = queue_sql[queue_sql.index(" AS ") + 4:].rstrip().rstrip(";")
        for name in (*(f"_src_{k}" for k in IN_MEMORY), *DERIVED):
            # the view's rows become a table, and the view reads the table: every view of
            # ``catalog.views`` keeps its meaning and becomes a scan of memory
            mem = quote_ident("_mem_" + name.removeprefix("_src_"))
            con.execute(f"CREATE TABLE {mem} AS SELECT * FROM {quote_ident(name)}")
            con.execute(f"CREATE OR REPLACE VIEW {quote_ident(name)} AS SELECT * FROM {mem}")
        con.execute("CREATE INDEX _mem_assets_sku ON _mem_assets (sku)")
        con.execute("CREATE INDEX _mem_queue_sku ON _mem_queue (sku)")
        con.execute("""CREATE TABLE stage_times AS
            SELECT attempt_id, run_id, sku, seq, stage, status, duration_s FROM stages""")
        cols = dict(con.execute("SELECT column_name, column_type FROM (DESCRIBE queue)")
                    .fetchall())
        with self._lock:
            old, self._views = self._views, views
            self.generation += 1
            self.columns = cols
            self._signature = sig
            self.loaded_at = time.time()
            self.load_s = time.perf_counter() - t0
        if old is not None:
            old.close()
        log.info("dashboard: catalog snapshot of %s loaded in %.2f s", self.root, self.load_s)

    def reader(self) -> Reader:
        with self._lock:
            if self._views is None:
                raise RuntimeError("the catalog snapshot is not loaded yet")
            return Reader(self._views, self._views.con.cursor())

    def signature(self) -> dict[str, Any]:
        """Cheap change markers per top-level catalog folder (``assets``, ``reviews``,
        ``compacted``, ...): the folders' mtimes locally, the key counts on S3."""
        out: dict[str, Any] = {}
        if self.root.startswith("s3://"):
            for key in self.store.list("catalog/"):
                top = key.split("/")[1] if key.count("/") > 1 else ""
                out[top] = out.get(top, 0) + 1
            return out
        base = Path(self.root) / "catalog"
        try:
            tops = [Path(e.path) for e in os.scandir(base) if e.is_dir()]
        except OSError:
            return out
        for top in tops:
            marks, stack = [], [top]
            while stack:
                d = stack.pop()
                try:
                    marks.append((str(d), d.stat().st_mtime_ns))
                    stack += [Path(e.path) for e in os.scandir(d) if e.is_dir()]
                except OSError:
                    continue
            out[top.name] = tuple(sorted(marks))
        return out

    def refresh_if_changed(self) -> bool:
        """Reload what changed: only the decisions when only they did (cheap), else all."""
        sig, old = self.signature(), self._signature or {}
        changed = {k for k in set(sig) | set(old) if sig.get(k) != old.get(k)}
        if not changed:
            return False
        if changed <= {"reviews"} and self._views is not None:
            self.reload_reviews(sig)
        else:
            self.load()
        return True

    def reload_reviews(self, sig: dict[str, Any] | None = None) -> None:
        """Re-read the decision rows (another reviewer, the CLI) and recompute the queue from
        the in-memory current assets and verdicts: milliseconds, not a full reload."""
        with self._lock:
            views = self._views
        if views is None:
            return
        sig = sig if sig is not None else self.signature()
        # re-list the decision files only; ``_src_reviews`` becomes the view over them again
        # (the other kinds keep their in-memory tables)
        views.refresh_kinds(["reviews"])
        con = views.con     # the connection that owns the views (and any temporary table)
        _promote_temp_tables(con)
        con.execute("CREATE OR REPLACE TABLE _mem_reviews AS SELECT * FROM _src_reviews")
        con.execute("CREATE OR REPLACE VIEW _src_reviews AS SELECT * FROM _mem_reviews")
        con.execute(f"CREATE OR REPLACE TABLE _mem_queue AS {views.dashboard_queue_sql}")
        con.execute("CREATE INDEX _mem_queue_sku ON _mem_queue (sku)")
        with self._lock:
            self._signature = sig

    def start_watching(self) -> None:
        if self.refresh_s <= 0 or self._thread is not None:
            return

        def loop() -> None:
            while not self._stop.wait(self.refresh_s):
                try:
                    self.refresh_if_changed()
                except Exception:
                    log.exception("dashboard: catalog refresh failed; serving the last snapshot")

        self._thread = threading.Thread(target=loop, name="catalog-refresh", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            if self._views is not None:
                self._views.close()
                self._views = None

    def add_reviews(self, rows: list[dict[str, Any]]) -> None:
        """Put decision rows just written into the snapshot, so pages show them at once (the
        next full reload reads the same rows from their files)."""
        if not rows:
            return
        import pyarrow as pa

        from ..catalog.fragments import REVIEW_SCHEMA, rows_table

        table = rows_table(rows, REVIEW_SCHEMA)
        with self._lock:
            views = self._views
        if views is None:
            return
        cur = views.con.cursor()
        try:
            cur.register("_new_reviews", pa.Table.from_batches(table.to_batches(),
                                                                 table.schema))
            cur.execute("INSERT INTO _mem_reviews BY NAME SELECT * FROM _new_reviews")
            cur.unregister("_new_reviews")
            # the newest decision on an attempt is its decision (the ``decisions`` view)
            for row in rows:
                cur.execute("""UPDATE _mem_queue SET review_status = ?, reviewer = ?,
                        review_note = ?, review_overrides = ?, decided_at = to_timestamp(? / 1000),
                        review_id = ? WHERE attempt_id = ?""",
                            [row["decision"], row["reviewer"], row["note"], row["overrides"],
                             row["decided_at"], row["review_id"], row["attempt_id"]])
        finally:
            cur.close()

    def numeric_columns(self) -> list[str]:
        kinds = ("DOUBLE", "FLOAT", "BIGINT", "INTEGER", "HUGEINT", "SMALLINT", "DECIMAL")
        skip = {"row", "severity"}
        return sorted(c for c, t in self.columns.items()
                      if t.startswith(kinds) and c not in skip)


def _promote_temp_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Make ``catalog.views``' temporary tables (the fragment rows it holds) ordinary ones.

    A temporary table belongs to the connection that made it, and each request reads through
    its own cursor (another connection to the same database), which would not see it."""
    for (name,) in con.execute("SELECT table_name FROM duckdb_tables() WHERE temporary"
                               ).fetchall():
        q = quote_ident(name)
        con.execute(f"CREATE OR REPLACE TABLE main.{q} AS SELECT * FROM temp.main.{q}")
        con.execute(f"DROP TABLE temp.main.{q}")


# ---------------------------------------------------------------------- runs page

def runs_overview(cat: Catalog) -> list[dict[str, Any]]:
    """Every run, newest first: counts by status, verdict and decision, wall time, throughput."""
    import copy

    r = cat.reader()
    try:
        base = r.cache.get("runs")
        if base is None:
            base = r.cache["runs"] = _runs_base(r)
        runs = copy.deepcopy(base)
        decisions: dict[str, dict[str, int]] = {}
        for row in r.rows("""SELECT a.run_id, d.decision, count(*) AS n FROM decisions d
                             JOIN attempts a USING (attempt_id) GROUP BY ALL"""):
            decisions.setdefault(row["run_id"], {})[row["decision"]] = row["n"]
    finally:
        r.close()
    for run in runs:
        run["decisions"] = decisions.get(run["run_id"], {})
    return runs


def _runs_base(r: Reader) -> list[dict[str, Any]]:
    runs = r.rows("""
            SELECT run_id, count(*) AS attempts,
                   count(*) FILTER (WHERE status = 'ok') AS ok,
                   count(*) FILTER (WHERE status = 'failed') AS failed,
                   min(started_at) AS started, max(finished_at) AS finished,
                   epoch(max(finished_at)) - epoch(min(started_at)) AS wall_s,
                   sum(wall_s) AS asset_seconds,
                   string_agg(DISTINCT profile, ', ') AS profiles
            FROM attempts GROUP BY run_id ORDER BY max(finished_at) DESC NULLS LAST""")
    verdicts: dict[str, dict[str, int]] = {}
    for row in r.rows("""SELECT a.run_id, coalesce(v.verdict, 'untriaged') AS verdict,
                                count(*) AS n
                         FROM attempts a LEFT JOIN current_verdicts v USING (attempt_id)
                         GROUP BY ALL"""):
        verdicts.setdefault(row["run_id"], {})[row["verdict"]] = row["n"]
    order = ("fail", "review", "untriaged", "pass")
    for run in runs:
        wall = run["wall_s"] or 0.0
        run["throughput_per_min"] = 60.0 * run["attempts"] / wall if wall > 0 else None
        v = verdicts.get(run["run_id"], {})
        run["verdicts"] = {k: v[k] for k in order if k in v}
    return runs


@dataclass
class RunDetail:
    run: dict[str, Any]
    stages: list[dict[str, Any]]
    metrics: dict[str, list[float]] = field(default_factory=dict)
    failures_by_stage: list[dict[str, Any]] = field(default_factory=list)
    profile: str | None = None
    rules: list[dict[str, Any]] = field(default_factory=list)
    budgets: dict[str, float] = field(default_factory=dict)


def run_detail(cat: Catalog, run_id: str) -> RunDetail | None:
    """One run's stage times, key metric values, failures and the rules that judged it
    (computed once per snapshot: none of it changes with decisions)."""
    runs = {r["run_id"]: r for r in runs_overview(cat)}
    if run_id not in runs:
        return None
    r = cat.reader()
    try:
        key = ("run", run_id)
        if key not in r.cache:
            r.cache[key] = _run_detail(r, cat, run_id)
        d = r.cache[key]
    finally:
        r.close()
    return RunDetail(runs[run_id], d.stages, d.metrics, d.failures_by_stage, d.profile,
                     d.rules, d.budgets)


def _run_detail(r: Reader, cat: Catalog, run_id: str) -> RunDetail:
    from ..catalog.triage import failures_by_stage

    stages = r.rows("""
        SELECT stage, count(*) AS runs, min(seq) AS seq, avg(duration_s) AS mean_s,
               quantile_cont(duration_s, 0.5) AS p50_s,
               quantile_cont(duration_s, 0.95) AS p95_s, sum(duration_s) AS total_s
        FROM stage_times WHERE run_id = ? GROUP BY stage ORDER BY min(seq)""", [run_id])
    metrics: dict[str, list[float]] = {}
    for label, (col, div) in KEY_METRICS.items():
        if col not in cat.columns:
            continue
        q = quote_ident(col)
        metrics[label] = [v / div for (v,) in r.execute(
            f"SELECT {q}::DOUBLE FROM attempts WHERE run_id = ? AND {q} IS NOT NULL",
            [run_id]).fetchall()]
    prof = r.rows("SELECT profile, any_value(recipe) AS recipe FROM attempts "
                  "WHERE run_id = ? GROUP BY profile ORDER BY count(*) DESC LIMIT 1",
                  [run_id])
    rules = r.rows("""SELECT s.rules FROM rulesets s JOIN (
            SELECT rules_hash, count(*) AS n FROM verdicts WHERE run_id = ?
            GROUP BY rules_hash ORDER BY n DESC LIMIT 1) v USING (rules_hash)""", [run_id])
    fails = failures_by_stage(r, run_id)
    rule_list = json.loads(rules[0]["rules"]) if rules else []
    budgets = _budgets(prof[0]["recipe"]) if prof else {}
    return RunDetail({}, stages, metrics, fails, prof[0]["profile"] if prof else None,
                     rule_list, budgets)


def _budgets(recipe_json: str | None) -> dict[str, float]:
    """The recipe's triangle and file-size budgets (what the rules' budget metrics mean)."""
    try:
        stages = {s.get("name"): s.get("options", {})
                  for s in json.loads(recipe_json or "{}").get("stages", [])}
    except (ValueError, AttributeError):
        return {}
    out = {}
    tris = stages.get("simplify", {}).get("target_tris")
    mb = stages.get("export", {}).get("max_glb_mb")
    if isinstance(tris, (int, float)):
        out["budget_tris"] = float(tris)
    if isinstance(mb, (int, float)):
        out["budget_glb_bytes"] = float(mb) * 1e6
    return out


# ---------------------------------------------------------------------- queue page

#: The queue's equality filters: request name -> column of the ``queue`` view.
EQUALITY_FILTERS = {"run": "run_id", "status": "status", "verdict": "verdict",
                    "stage": "failed_stage", "error": "error_kind", "category": "category",
                    "decision": "review_status"}
#: Severity as ``assetfactory triage`` orders it: failed first, then fail, review, untriaged.
SEVERITY_SQL = ("CASE WHEN status = 'failed' THEN 4 WHEN verdict = 'fail' THEN 3 "
                "WHEN verdict = 'review' THEN 2 WHEN verdict = 'untriaged' THEN 1 ELSE 0 END")
CARD_COLUMNS = ("sku", "title", "category", "run_id", "attempt_id", "status", "failed_stage",
                "error", "fix", "error_kind", "poster_uri", "glb_uri", "verdict", "reasons",
                "review_status", "reviewer", "review_note", "review_id", "decided_at",
                "metric_silhouette_iou", "metric_observed_texels",
                "metric_triangles", "metric_glb_bytes")


@dataclass
class QueueQuery:
    """A queue request, validated: equality filters, metric ranges, text, sort, page."""

    equals: dict[str, str] = field(default_factory=dict)
    ranges: list[tuple[str, float | None, float | None]] = field(default_factory=list)
    text: str = ""
    attention: bool = True
    sort: str = "severity"
    desc: bool | None = None
    page: int = 1
    per_page: int = 48

    @property
    def desc_effective(self) -> bool:
        """Severity sorts worst first unless told otherwise; other columns ascending."""
        return (self.sort == "severity") if self.desc is None else self.desc


def facets(cat: Catalog) -> dict[str, list[str]]:
    """The values each equality filter can take (for the filter form's menus)."""
    r = cat.reader()
    try:
        if "facets" not in r.cache:
            r.cache["facets"] = _facets(r, cat)
        return r.cache["facets"]
    finally:
        r.close()


def _facets(r: Reader, cat: Catalog) -> dict[str, list[str]]:
    from ..catalog.triage import REVIEW_STATES, VERDICT_STATES

    out: dict[str, list[str]] = {}
    for name, col in EQUALITY_FILTERS.items():
        if name == "verdict":
            out[name] = list(VERDICT_STATES)
        elif name == "decision":
            out[name] = list(REVIEW_STATES)
        elif col in cat.columns:
            q = quote_ident(col)
            out[name] = [v for (v,) in r.execute(
                f"SELECT DISTINCT {q} FROM current_assets WHERE {q} IS NOT NULL "
                "ORDER BY 1 LIMIT 500").fetchall()]
    return out


def queue_where(cat: Catalog, q: QueueQuery) -> tuple[str, list[Any]]:
    """The WHERE clause (over the ``queue`` view) and its bound parameters."""
    where: list[str] = []
    params: list[Any] = []
    for name, value in q.equals.items():
        col = EQUALITY_FILTERS.get(name)
        if not value or col is None or col not in cat.columns:
            continue
        where.append(f"{quote_ident(col)} = ?")
        params.append(value)
    numeric = set(cat.numeric_columns())
    for col, lo, hi in q.ranges:
        if col not in numeric:
            raise ValueError(f"unknown metric {col!r}: use a numeric column of the queue view")
        if lo is not None:
            where.append(f"{quote_ident(col)} >= ?")
            params.append(lo)
        if hi is not None:
            where.append(f"{quote_ident(col)} <= ?")
            params.append(hi)
    if q.text:
        where.append("(contains(lower(sku), lower(?)) OR contains(lower(title), lower(?)))")
        params += [q.text, q.text]
    if q.attention:
        where.append("(status = 'failed' OR verdict <> 'pass') "
                     "AND review_status = 'unreviewed'")
    return ("WHERE " + " AND ".join(where)) if where else "", params


def queue_page(cat: Catalog, q: QueueQuery) -> tuple[list[dict[str, Any]], int]:
    """One page of the current assets matching ``q`` and how many match in all."""
    desc = q.desc_effective
    if q.sort == "severity":
        order = f"{SEVERITY_SQL} {'DESC' if desc else 'ASC'}, sku"
    elif q.sort in cat.columns:
        order = f"{quote_ident(q.sort)} {'DESC' if desc else 'ASC'} NULLS LAST, sku"
    else:
        raise ValueError(f"cannot sort by {q.sort!r}: use severity or a column of the queue")
    where, params = queue_where(cat, q)
    cols = ", ".join(quote_ident(c) for c in CARD_COLUMNS if c in cat.columns)
    r = cat.reader()
    try:
        offset = max(0, (q.page - 1) * q.per_page)
        # two queries: a window count(*) OVER () would make DuckDB keep every matching row
        rows = r.rows(f"""SELECT {cols}, {SEVERITY_SQL} AS severity_rank FROM queue {where}
                          ORDER BY {order} LIMIT ? OFFSET ?""", [*params, q.per_page, offset])
        total = int(r.execute(f"SELECT count(*) FROM queue {where}", params).fetchone()[0])
    finally:
        r.close()
    return rows, total


# ---------------------------------------------------------------------- asset page

@dataclass
class AssetDetail:
    row: dict[str, Any]
    metrics: dict[str, Any]
    stages: list[dict[str, Any]]
    attempts: list[dict[str, Any]]
    reviews: list[dict[str, Any]]
    history: list[dict[str, Any]]
    artifacts: dict[str, str]          # artifact name -> storage key
    labels: list[str]                  # input views with a photo
    current: bool                      # the SKU's current attempt (decisions apply to it)


def asset_detail(cat: Catalog, sku: str, attempt_id: str | None = None,
                 with_stages: bool = True) -> AssetDetail | None:
    r = cat.reader()
    try:
        cur_rows = r.rows("SELECT * FROM queue WHERE sku = ?", [sku])
        if not cur_rows:
            return None
        row = cur_rows[0]
        current = True
        if attempt_id and attempt_id != row["attempt_id"]:
            found = r.rows("SELECT a.*, coalesce(v.verdict, 'untriaged') AS verdict, "
                           "v.reasons FROM attempts a LEFT JOIN (SELECT attempt_id, verdict, "
                           "reasons FROM current_verdicts WHERE sku = ?) v USING (attempt_id) "
                           "WHERE a.sku = ? AND a.attempt_id = ?", [sku, sku, attempt_id])
            if not found:
                return None
            row, current = found[0], False
        attempts = r.rows(
            "SELECT a.attempt_id, a.run_id, a.status, a.failed_stage, a.error, a.started_at, "
            "a.finished_at, a.wall_s, a.profile, a.supersedes, a.trigger, "
            "coalesce(v.verdict, 'untriaged') AS verdict FROM attempts a LEFT JOIN "
            "(SELECT attempt_id, verdict FROM current_verdicts WHERE sku = ?) v "
            "USING (attempt_id) WHERE a.sku = ? ORDER BY a.finished_at DESC", [sku, sku])
        reviews = r.rows("SELECT * FROM reviews WHERE sku = ? ORDER BY decided_at DESC",
                         [sku])
        history = r.rows("SELECT * FROM sku_history(?)", [sku])
    finally:
        r.close()
    try:
        metrics = json.loads(row.get("metrics") or "{}")
    except ValueError:
        metrics = {}
    stages = stage_rows(cat, row["run_id"], row["attempt_id"]) if with_stages else []
    artifacts = artifact_keys(stages)
    labels = [k.split("/", 1)[1] for k in sorted(artifacts) if k.startswith("image/")]
    return AssetDetail(row, metrics, stages, attempts, reviews, history, artifacts, labels,
                       current)


def stage_rows(cat: Catalog, run_id: str | None, attempt_id: str) -> list[dict[str, Any]]:
    """Every stage row of one attempt, read from the files that can hold its run."""
    r = cat.reader()
    try:
        src = r.source("stages", [run_id] if run_id else None)
        rows = r.rows(f"SELECT * FROM {src} WHERE attempt_id = ?", [attempt_id])
    finally:
        r.close()
    seen: dict[int, dict[str, Any]] = {}
    for s in sorted(rows, key=lambda s: (s.get("seq") or 0, str(s.get("started_at") or ""))):
        seen.setdefault(int(s.get("seq") or 0), s)
    return [seen[k] for k in sorted(seen)]


def artifact_keys(stages: list[dict[str, Any]]) -> dict[str, str]:
    """Artifact name -> storage key of its content-addressed object (later stages win)."""
    out: dict[str, str] = {}
    for s in stages:
        try:
            outputs = json.loads(s.get("outputs") or "{}")
        except ValueError:
            continue
        for name, sha in outputs.items():
            if not isinstance(sha, str) or not _is_hex(sha) or name in ("glb", "usdz", "poster"):
                continue
            ext = next((e for p, e in _EXT.items() if name.startswith(p)), None)
            if ext is not None:
                out[name] = f"objects/{sha[:2]}/{sha}{ext}"
    return out


def _is_hex(s: str) -> bool:
    return len(s) == 64 and all(c in "0123456789abcdef" for c in s)

"""What the dashboard reads: a snapshot of the catalog views held in memory, and queries on it.

Why a snapshot: the catalog views read Parquet fragments (or, on S3, fetch them through the
storage layer), and a window over every attempt runs on each query. At 100k assets that costs
hundreds of milliseconds per page; a page should cost a few. So the dashboard copies the small
views (``attempts``, ``assets``, ``runs``, ``reviews``, and a narrow ``stage_times``) into
in-memory DuckDB tables once, and rebuilds them in the background when the catalog's folders
change. Full stage rows (options, artifact hashes) are read per asset from that attempt's own
fragment, never for the whole catalog.

Every value that comes from a request reaches SQL as a parameter; the only identifiers built
into SQL text are column names checked against the snapshot's own column list.
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
import pyarrow as pa
import pyarrow.parquet as pq

from ..catalog import views
from ..core.storage import open_storage

log = logging.getLogger("assetfactory.dashboard")

#: Views copied into memory; others defined by ``catalog.views`` stay views over these.
SNAPSHOT_VIEWS = ("attempts", "assets", "runs", "reviews")

#: The key metrics the runs page charts, with the columns that may hold each (first found).
KEY_METRICS: dict[str, tuple[str, ...]] = {
    "silhouette IoU": ("metrics_iou_mean", "metric_silhouette_iou"),
    "observed texels": ("texture_observed_frac",),
    "triangles": ("metrics_tris",),
    "file size (MB)": ("metrics_glb_bytes", "export_glb_bytes"),
}

#: Artifact name -> extension of its content-addressed object (``core.artifacts`` save_*).
_EXT = {"image/": ".png", "mask/": ".png", "texture/": ".png", "cameras": ".json",
        "materials": ".json", "mesh": ".npz", "dense_mesh": ".npz", "clean_mesh": ".npz",
        "collision": ".npz", "lod": ".npz"}


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class Catalog:
    """The dashboard's in-memory copy of the catalog under one storage root."""

    def __init__(self, root: str, refresh_s: float = 30.0) -> None:
        self.root = root if root.startswith("s3://") else os.path.abspath(root)
        self.store = open_storage(self.root)
        self.refresh_s = refresh_s
        self._lock = threading.Lock()
        self._con: duckdb.DuckDBPyConnection | None = None
        self._signature: Any = None
        self.loaded_at = 0.0
        self.load_s = 0.0
        self.columns: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ loading

    def load(self) -> None:
        """Build a fresh snapshot and swap it in (readers keep the old one until done)."""
        t0 = time.perf_counter()
        sig = self.signature()
        con = duckdb.connect()
        views.connect(self.root, con)
        present = {r[0] for r in con.execute(
            "SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
        for name in SNAPSHOT_VIEWS:
            if name in present:
                con.execute(f"CREATE TABLE {quote_ident('_snap_' + name)} AS "
                            f"SELECT * FROM {quote_ident(name)}")
        con.execute("""CREATE TABLE _snap_stage_times AS
            SELECT attempt_id, run_id, sku, seq, stage, status, duration_s FROM stages""")
        for name in (*SNAPSHOT_VIEWS, "stage_times"):
            if name in present or name == "stage_times":
                if name in present:
                    con.execute(f"DROP VIEW {quote_ident(name)}")
                con.execute(f"ALTER TABLE {quote_ident('_snap_' + name)} "
                            f"RENAME TO {quote_ident(name)}")
        if "reviews" not in present:
            con.execute("CREATE TABLE reviews (sku VARCHAR, attempt_id VARCHAR, "
                        "decision VARCHAR, reviewer VARCHAR, note VARCHAR)")
        cols = dict(con.execute("SELECT column_name, data_type FROM duckdb_columns() "
                                "WHERE table_name = 'assets'").fetchall())
        with self._lock:
            old, self._con = self._con, con
            self.columns = cols
            self._signature = sig
            self.loaded_at = time.time()
            self.load_s = time.perf_counter() - t0
        if old is not None:
            old.close()
        log.info("dashboard: catalog snapshot of %s loaded in %.2f s", self.root, self.load_s)

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor on the current snapshot (one per request: cursors are not shared)."""
        with self._lock:
            if self._con is None:
                raise RuntimeError("the catalog snapshot is not loaded yet")
            return self._con.cursor()

    def signature(self) -> Any:
        """Cheap change marker: the catalog folders' mtimes locally, the key count on S3."""
        if self.root.startswith("s3://"):
            return sum(1 for _ in self.store.list("catalog/"))
        base = Path(self.root) / "catalog"
        marks = []
        if base.is_dir():
            for kind in sorted(os.scandir(base), key=lambda e: e.name):
                if not kind.is_dir():
                    continue
                marks.append((kind.name, kind.stat().st_mtime_ns))
                for sub in os.scandir(kind.path):
                    if sub.is_dir():
                        marks.append((sub.path, sub.stat().st_mtime_ns))
        return tuple(sorted(marks))

    def refresh_if_changed(self) -> bool:
        if self.signature() == self._signature:
            return False
        self.load()
        return True

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
            if self._con is not None:
                self._con.close()
                self._con = None

    def reload_reviews(self) -> None:
        """Re-read only the review rows (after a decision): cheap, unlike a full snapshot."""
        src = _raw_source(self.root, "reviews")
        with self._lock:
            con = self._con
        if con is None or src is None:
            return
        cur = con.cursor()
        try:
            cur.execute(f"CREATE OR REPLACE TABLE reviews AS SELECT * FROM {src}")
        finally:
            cur.close()

    def numeric_columns(self) -> list[str]:
        kinds = ("DOUBLE", "FLOAT", "BIGINT", "INTEGER", "HUGEINT", "SMALLINT", "DECIMAL")
        skip = {"row"}
        return sorted(c for c, t in self.columns.items()
                      if t.startswith(kinds) and c not in skip)

    def column(self, name: str) -> str | None:
        """``name`` if the snapshot has that column (the guard for identifiers in SQL)."""
        return name if name in self.columns else None

    def metric_column(self, label: str) -> str | None:
        for c in KEY_METRICS.get(label, ()):
            if c in self.columns:
                return c
        return None


def _raw_source(root: str, kind: str) -> str | None:
    """A ``read_parquet`` over one kind's fragments, locally; None on S3 or when absent."""
    if root.startswith("s3://"):
        return None
    base = Path(root) / "catalog"
    globs = []
    if (base / kind).is_dir() and any((base / kind).rglob("*.parquet")):
        globs.append(str(base / kind / "**" / "*.parquet"))
    if (base / "compacted").is_dir() and any((base / "compacted").glob(f"{kind}-*.parquet")):
        globs.append(str(base / "compacted" / f"{kind}-*.parquet"))
    if not globs:
        return None
    lst = ", ".join("'" + g.replace("'", "''") + "'" for g in globs)
    return f"read_parquet([{lst}], union_by_name = true, hive_partitioning = false)"


# ---------------------------------------------------------------------- rows as dicts

def rows_as_dicts(cur: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


# ---------------------------------------------------------------------- runs page

def runs_overview(cat: Catalog) -> list[dict[str, Any]]:
    """Every run, newest first: counts by status, wall time, throughput."""
    cur = cat.cursor()
    try:
        runs = rows_as_dicts(cur.execute("""
            SELECT run_id, count(*) AS attempts,
                   count(*) FILTER (WHERE status = 'ok') AS ok,
                   count(*) FILTER (WHERE status = 'failed') AS failed,
                   min(started_at) AS started, max(finished_at) AS finished,
                   epoch(max(finished_at)) - epoch(min(started_at)) AS wall_s,
                   sum(wall_s) AS asset_seconds,
                   string_agg(DISTINCT profile, ', ') AS profiles,
                   string_agg(DISTINCT backend, ', ') AS backends
            FROM attempts GROUP BY run_id ORDER BY max(finished_at) DESC NULLS LAST"""))
        verdicts = verdict_counts(cat, cur)
        decisions = {(r, d): n for r, d, n in cur.execute("""
            SELECT a.run_id, r.decision, count(*) FROM reviews r
            JOIN attempts a USING (attempt_id) GROUP BY ALL""").fetchall()} \
            if "attempt_id" in _table_columns(cur, "reviews") else {}
    finally:
        cur.close()
    for r in runs:
        wall = r["wall_s"] or 0.0
        r["throughput_per_min"] = 60.0 * r["attempts"] / wall if wall > 0 else None
        r["verdicts"] = verdicts.get(r["run_id"], {})
        r["decisions"] = {d: n for (run, d), n in decisions.items() if run == r["run_id"]}
    return runs


def _table_columns(cur: duckdb.DuckDBPyConnection, table: str) -> set[str]:
    return {r[0] for r in cur.execute(
        "SELECT column_name FROM duckdb_columns() WHERE table_name = ?", [table]).fetchall()}


def verdict_counts(cat: Catalog, cur: duckdb.DuckDBPyConnection) -> dict[str, dict[str, int]]:
    """run -> verdict -> count, where the catalog has verdicts (else empty)."""
    if "verdict" not in cat.columns:
        return {}
    out: dict[str, dict[str, int]] = {}
    for run, verdict, n in cur.execute(
            "SELECT run_id, verdict, count(*) FROM attempts GROUP BY ALL").fetchall():
        out.setdefault(run, {})[verdict or "none"] = n
    return out


@dataclass
class RunDetail:
    run: dict[str, Any]
    stages: list[dict[str, Any]]
    metrics: dict[str, list[float]] = field(default_factory=dict)
    failures_by_stage: list[tuple[str, int]] = field(default_factory=list)
    profile: str | None = None


def run_detail(cat: Catalog, run_id: str) -> RunDetail | None:
    runs = {r["run_id"]: r for r in runs_overview(cat)}
    if run_id not in runs:
        return None
    cur = cat.cursor()
    try:
        stages = rows_as_dicts(cur.execute("""
            SELECT stage, count(*) AS runs, min(seq) AS seq, avg(duration_s) AS mean_s,
                   quantile_cont(duration_s, 0.5) AS p50_s,
                   quantile_cont(duration_s, 0.95) AS p95_s, sum(duration_s) AS total_s
            FROM stage_times WHERE run_id = ? GROUP BY stage ORDER BY min(seq)""", [run_id]))
        metrics: dict[str, list[float]] = {}
        for label in KEY_METRICS:
            col = cat.metric_column(label)
            if col is None:
                continue
            vals = [v for (v,) in cur.execute(
                f"SELECT {quote_ident(col)}::DOUBLE FROM attempts WHERE run_id = ? "
                f"AND {quote_ident(col)} IS NOT NULL", [run_id]).fetchall()]
            if label.startswith("file size"):
                vals = [v / 1e6 for v in vals]
            metrics[label] = vals
        fails = cur.execute("""SELECT coalesce(failed_stage, '?'), count(*) FROM attempts
            WHERE run_id = ? AND status = 'failed' GROUP BY ALL ORDER BY 2 DESC""",
                            [run_id]).fetchall()
        prof = cur.execute("SELECT profile FROM attempts WHERE run_id = ? "
                           "GROUP BY profile ORDER BY count(*) DESC LIMIT 1", [run_id]).fetchone()
    finally:
        cur.close()
    return RunDetail(runs[run_id], stages, metrics, [(s, n) for s, n in fails],
                     prof[0] if prof else None)


# ---------------------------------------------------------------------- queue page

#: Filters the queue understands, each matched exactly against one column.
EQUALITY_FILTERS = {"run": "run_id", "status": "status", "verdict": "verdict",
                    "stage": "failed_stage", "error": "error_kind", "category": "category",
                    "decision": "decision"}
SORTABLE_DEFAULT = ("sku", "title", "status", "failed_stage", "finished_at", "wall_s")


@dataclass
class QueueQuery:
    """A queue request, validated: equality filters, metric ranges, text, sort, page."""

    equals: dict[str, str] = field(default_factory=dict)
    ranges: list[tuple[str, float | None, float | None]] = field(default_factory=list)
    text: str = ""
    attention: bool = True
    sort: str = "severity"
    desc: bool = False
    page: int = 1
    per_page: int = 48


def facets(cat: Catalog) -> dict[str, list[str]]:
    """The values each equality filter can take (for the filter form's menus)."""
    cur = cat.cursor()
    try:
        out: dict[str, list[str]] = {}
        for name, col in EQUALITY_FILTERS.items():
            if name == "decision":
                out[name] = ["approve", "reject", "rework", "none"]
                continue
            if col not in cat.columns:
                continue
            out[name] = [r[0] for r in cur.execute(
                f"SELECT DISTINCT {quote_ident(col)} FROM assets WHERE {quote_ident(col)} "
                f"IS NOT NULL ORDER BY 1 LIMIT 500").fetchall()]
        return out
    finally:
        cur.close()


def _latest_decision_sql() -> str:
    return """(SELECT sku, decision FROM reviews
               QUALIFY row_number() OVER (PARTITION BY sku ORDER BY decided_at DESC) = 1)"""


def queue_page(cat: Catalog, q: QueueQuery) -> tuple[list[dict[str, Any]], int]:
    """One page of current assets matching ``q`` and the total number that match."""
    where, params = [], []
    has_decided_at = "decided_at" in cat.columns or _reviews_have(cat, "decided_at")
    for name, value in q.equals.items():
        col = EQUALITY_FILTERS.get(name)
        if not value or col is None:
            continue
        if name == "decision":
            if value == "none":
                where.append("d.decision IS NULL")
            else:
                where.append("d.decision = ?")
                params.append(value)
            continue
        if col not in cat.columns:
            continue
        where.append(f"a.{quote_ident(col)} = ?")
        params.append(value)
    numeric = set(cat.numeric_columns())
    for col, lo, hi in q.ranges:
        if col not in numeric:
            raise ValueError(f"unknown metric {col!r}")
        if lo is not None:
            where.append(f"a.{quote_ident(col)} >= ?")
            params.append(lo)
        if hi is not None:
            where.append(f"a.{quote_ident(col)} <= ?")
            params.append(hi)
    if q.text:
        where.append("(a.sku ILIKE ? OR a.title ILIKE ?)")
        like = "%" + q.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        params += [like, like]
    if q.attention:
        needs = ["a.status = 'failed'"]
        if "verdict" in cat.columns:
            needs.append("coalesce(a.verdict, '') <> 'pass'")
        where.append("(" + " OR ".join(needs) + ") AND d.decision IS NULL")
    severity = ("CASE WHEN a.status = 'failed' THEN 0 "
                + ("WHEN a.verdict = 'fail' THEN 1 WHEN a.verdict = 'review' THEN 2 "
                   if "verdict" in cat.columns else "")
                + "ELSE 3 END")
    if q.sort == "severity":
        order = f"{severity} {'DESC' if q.desc else 'ASC'}, a.sku"
    elif q.sort in cat.columns:
        order = f"a.{quote_ident(q.sort)} {'DESC' if q.desc else 'ASC'} NULLS LAST, a.sku"
    else:
        raise ValueError(f"cannot sort by {q.sort!r}")
    decisions = _latest_decision_sql() if has_decided_at else \
        "(SELECT NULL::VARCHAR AS sku, NULL::VARCHAR AS decision WHERE false)"
    sql_where = ("WHERE " + " AND ".join(where)) if where else ""
    base = f"FROM assets a LEFT JOIN {decisions} d USING (sku) {sql_where}"
    cur = cat.cursor()
    try:
        total = cur.execute(f"SELECT count(*) {base}", params).fetchone()[0]
        offset = max(0, (q.page - 1) * q.per_page)
        rows = rows_as_dicts(cur.execute(
            f"SELECT a.*, d.decision, {severity} AS severity {base} ORDER BY {order} "
            "LIMIT ? OFFSET ?", [*params, q.per_page, offset]))
    finally:
        cur.close()
    return rows, total


def _reviews_have(cat: Catalog, col: str) -> bool:
    cur = cat.cursor()
    try:
        return col in _table_columns(cur, "reviews")
    finally:
        cur.close()


# ---------------------------------------------------------------------- asset page

@dataclass
class AssetDetail:
    row: dict[str, Any]
    metrics: dict[str, Any]
    stages: list[dict[str, Any]]
    attempts: list[dict[str, Any]]
    reviews: list[dict[str, Any]]
    artifacts: dict[str, str]          # artifact name -> storage key
    cameras_key: str | None
    labels: list[str]                  # input views with a photo and a camera


def asset_detail(cat: Catalog, sku: str, attempt_id: str | None = None) -> AssetDetail | None:
    cur = cat.cursor()
    try:
        if attempt_id:
            cur.execute("SELECT * FROM attempts WHERE sku = ? AND attempt_id = ?",
                        [sku, attempt_id])
        else:
            cur.execute("SELECT * FROM assets WHERE sku = ?", [sku])
        found = rows_as_dicts(cur)
        if not found:
            return None
        row = found[0]
        attempts = rows_as_dicts(cur.execute(
            "SELECT attempt_id, run_id, status, failed_stage, error, fix, error_kind, "
            "started_at, finished_at, wall_s, profile, backend, recipe_hash "
            "FROM attempts WHERE sku = ? ORDER BY finished_at DESC", [sku]))
        reviews = rows_as_dicts(cur.execute("SELECT * FROM reviews WHERE sku = ?", [sku]))
    finally:
        cur.close()
    reviews.sort(key=lambda r: str(r.get("decided_at") or ""), reverse=True)
    try:
        metrics = json.loads(row.get("metrics") or "{}")
    except ValueError:
        metrics = {}
    stages = stage_rows(cat, row["run_id"], row["attempt_id"])
    artifacts = artifact_keys(stages)
    labels = [k.split("/", 1)[1] for k in sorted(artifacts) if k.startswith("image/")]
    return AssetDetail(row, metrics, stages, attempts, reviews, artifacts,
                       artifacts.get("cameras"), labels)


def stage_rows(cat: Catalog, run_id: str | None, attempt_id: str) -> list[dict[str, Any]]:
    """Every stage row of one attempt: from its own fragment when it has one, else from the
    files of its run and the compacted files (reading only the matching rows)."""
    import re

    plain = re.compile(r"^[A-Za-z0-9_.:=+-]+$")
    keys: list[str] = []
    if run_id and plain.match(run_id) and plain.match(attempt_id):
        own = f"catalog/stages/run={run_id}/{attempt_id}.parquet"
        if cat.store.exists(own):
            keys = [own]
        else:
            keys = [k for k in cat.store.list(f"catalog/stages/run={run_id}/")]
    if not keys:
        keys = [k for k in cat.store.list("catalog/stages/")]
    keys += [k for k in cat.store.list("catalog/compacted/")
             if k.split("/")[-1].startswith("stages-") or k.startswith("catalog/compacted/stages/")]
    rows: list[dict[str, Any]] = []
    for k in keys:
        if not k.endswith(".parquet"):
            continue
        local = cat.store.local_path(k)
        try:
            source = str(local) if local is not None else pa.BufferReader(cat.store.get(k))
            rows += pq.read_table(source, filters=[("attempt_id", "=", attempt_id)]).to_pylist()
        except (OSError, ValueError, pa.ArrowException):
            log.warning("dashboard: could not read stage rows from %s", k)
    seen: dict[int, dict[str, Any]] = {}
    for r in sorted(rows, key=lambda r: (r.get("seq") or 0, str(r.get("started_at") or ""))):
        seen.setdefault(int(r.get("seq") or 0), r)
    return [seen[k] for k in sorted(seen)]


def artifact_keys(stages: list[dict[str, Any]]) -> dict[str, str]:
    """Artifact name -> storage key of its content-addressed object (later stages win)."""
    out: dict[str, str] = {}
    for r in stages:
        try:
            outputs = json.loads(r.get("outputs") or "{}")
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

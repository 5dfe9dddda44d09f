"""DuckDB views over the catalog's Parquet files, locally or on S3.

``Catalog(root)`` takes a snapshot of the catalog's files (``files.snapshot``: every row exactly
once, even while a compaction runs) and defines the views below on an in-memory DuckDB
connection. Locally DuckDB reads the files where they are; on S3 they are first copied into a
local cache through the project's storage layer (boto3, any endpoint), so DuckDB needs no
extension download at run time, which this factory never does, and still gets Parquet
statistics and filter pushdown.

Views:
  ``attempts``         every committed asset attempt
  ``current_assets``   the current attempt of each SKU: its latest (``assets`` is the same view)
  ``stages``           every stage run of a committed attempt
  ``verdicts``         every triage verdict; ``current_verdicts``: the latest per attempt
  ``reviews``          every review decision; ``decisions``: the latest per attempt
  ``queue``            current assets with their verdict, decision and metric aliases
                       (``metric_silhouette_iou``, ``metric_observed_texels``, ...)
  ``open_reworks``     current assets whose latest decision is ``rework``
  ``published``        every publication row; ``delivered``: what each destination holds now
  ``rulesets``         the triage rules verdicts were computed by
  ``history``          every event of every SKU (attempt, verdict, decision, published)
  ``runs``             one row per run: counts and wall time
  ``run_latest``       per run and SKU, its latest attempt in that run with status, failed
                       stage, verdict and metrics (read from the run's latest-attempt table
                       where one is fresh: see ``latest``)
  ``flow_runs``        one row per scheduled/bulk flow run (sync, ingest): its latest state
  ``ingested``         one row per catalog file a bulk-ingest run finished with
Table macros:
  ``sku_history(sku)``             one SKU's events, oldest first
  ``run_diff(run_a, run_b)``       per SKU: new, fixed, regressed, same or missing
  ``run_metric_changes(run_a, run_b, tolerance)``  per SKU and metric, the values that moved
"""

from __future__ import annotations

import os
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Self, TypeVar

import duckdb
import pyarrow as pa

from .files import KINDS, LATEST_KINDS, Snapshot, local_paths, prune_cache, snapshot
from .flow_runs import FLOW_RUN_SCHEMA, INGESTED_SCHEMA
from .fragments import (
    ASSET_SCHEMA,
    PUBLISHED_SCHEMA,
    REVIEW_SCHEMA,
    RULESET_SCHEMA,
    STAGE_SCHEMA,
    VERDICT_SCHEMA,
)

SCHEMAS: dict[str, pa.Schema] = {
    "assets": ASSET_SCHEMA, "stages": STAGE_SCHEMA, "verdicts": VERDICT_SCHEMA,
    "reviews": REVIEW_SCHEMA, "published": PUBLISHED_SCHEMA, "rulesets": RULESET_SCHEMA,
    "flow_runs": FLOW_RUN_SCHEMA, "ingested": INGESTED_SCHEMA,
}

#: Metric columns the views guarantee (NULL where no attempt recorded them), because rules,
#: aliases and the manifest read them.
KNOWN_METRICS: dict[str, str] = {
    "metrics_tris": "BIGINT", "metrics_glb_bytes": "BIGINT", "metrics_iou_min": "DOUBLE",
    "metrics_iou_mean": "DOUBLE", "metrics_bbox_x_m": "DOUBLE", "metrics_bbox_y_m": "DOUBLE",
    "metrics_bbox_z_m": "DOUBLE", "metrics_boundary_edges": "BIGINT",
    "metrics_watertight": "BOOLEAN", "export_glb_bytes": "BIGINT",
    "export_usdz_bytes": "BIGINT", "gltf_errors": "BIGINT", "usd_errors": "BIGINT",
    "texture_observed_frac": "DOUBLE", "cleanup_dims_error_max": "DOUBLE",
    "cleanup_parts": "BIGINT", "cleanup_parts_watertight": "BIGINT",
    "ingest_views": "BIGINT", "ingest_views_posed": "BIGINT",
}

#: Friendly names for the metrics people filter on most (columns of ``queue``).
ALIASES: dict[str, str] = {
    "metric_silhouette_iou": "metrics_iou_min",
    "metric_observed_texels": "texture_observed_frac",
    "metric_triangles": "metrics_tris",
    "metric_glb_bytes": "coalesce(export_glb_bytes, metrics_glb_bytes)",
    "metric_dims_error": "cleanup_dims_error_max",
}

_DUCK_TYPES = {
    pa.string(): "VARCHAR", pa.int64(): "BIGINT", pa.float64(): "DOUBLE", pa.bool_(): "BOOLEAN",
    pa.timestamp("ms", tz="UTC"): "TIMESTAMPTZ", pa.list_(pa.string()): "VARCHAR[]",
}

#: Numeric columns that are bookkeeping, not metrics of the asset (left out of run diffs).
_NOT_METRICS = {"row", "wall_s", "peak_rss_mb", "severity"}
_NUMERIC = ("BIGINT", "DOUBLE", "INTEGER", "BOOLEAN", "FLOAT", "HUGEINT", "SMALLINT")


def is_metric(name: str, duck_type: str) -> bool:
    """Whether an attempt column is a metric a run diff compares: numeric, not one of the
    attempt's own fields, not bookkeeping or a duration."""
    return (name not in _FIXED_ASSET and name not in _NOT_METRICS and duck_type in _NUMERIC
            and "seconds" not in name and not name.endswith("_s"))


_FIXED_ASSET = {f.name for f in ASSET_SCHEMA}

T = TypeVar("T")


def arrow_table(cur: Any) -> pa.Table:
    """A DuckDB result as an Arrow table (the method's name changed across DuckDB releases)."""
    for name in ("to_arrow_table", "fetch_arrow_table", "arrow"):
        fn = getattr(cur, name, None)
        if fn is not None:
            with warnings.catch_warnings():   # "makes an extra copy": fine at our sizes
                warnings.simplefilter("ignore")
                out = fn()
            return out.read_all() if isinstance(out, pa.RecordBatchReader) else out
    raise RuntimeError("this DuckDB release offers no Arrow result method")


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


#: Fragments of one kind are held in memory (read once per snapshot) up to these bounds;
#: beyond them they are read in place by every query. Holding a million uncompacted attempts
#: (gigabytes of rows) would make opening the catalog take minutes and spill to disk, while a
#: query over them in place costs a scan; a few hundred small files (what the runner leaves
#: between compactions) are cheaper to read once than to open on every query.
HOLD_MAX_BYTES = 32 * 1024 * 1024
HOLD_MAX_FILES = 4000


def _many_small(files: Sequence[Any]) -> bool:
    """Fragments as the runner writes them (one small file per attempt), few enough in all to
    be worth holding in memory once per snapshot (as opposed to a few large batches, or a
    catalog that has not been compacted for a long time)."""
    if len(files) <= 32:
        return True
    total = sum(f.size for f in files)
    return total / len(files) < 4 * 1024 * 1024 and total <= HOLD_MAX_BYTES and \
        len(files) <= HOLD_MAX_FILES


def _with_file(paths: Sequence[str]) -> str:
    """The rows of Parquet files with the file each came from (``_file``)."""
    return (f"SELECT * EXCLUDE (filename), filename AS _file FROM read_parquet("
            f"[{', '.join(_lit(p) for p in paths)}], union_by_name = true, "
            "hive_partitioning = false, filename = true)")


def read_sql(paths: Sequence[str]) -> str:
    return (f"read_parquet([{', '.join(_lit(p) for p in paths)}], union_by_name = true, "
            "hive_partitioning = false)")


class Catalog:
    """A read snapshot of the catalog under ``root`` with the views defined on a connection.

    Cheap to keep: the dashboard holds one and calls ``refresh()`` to see new rows.
    """

    def __init__(self, root: str, con: duckdb.DuckDBPyConnection | None = None,
                 threads: int | None = None) -> None:
        root = str(root)
        self.root = root if root.startswith("s3://") else os.path.abspath(root)
        self.con = con or duckdb.connect()
        self.con.execute("SET parquet_metadata_cache = true")
        # the fragment rows a snapshot holds may outgrow memory before a compaction: spill
        self.con.execute("SET memory_limit = ?", [os.environ.get("ASSETFACTORY_DUCKDB_MEMORY",
                                                                  "4GB")])
        self.con.execute("SET temp_directory = ?", [os.path.join(
            tempfile.gettempdir(), f"assetfactory-duckdb-{os.getpid()}")])
        if threads:
            self.con.execute(f"SET threads = {int(threads)}")
        self.snap: Snapshot | None = None
        self.columns: dict[str, dict[str, str]] = {}
        self._loaded: dict[str, set[str]] = {}     # fragment files held in _frag_<kind>
        self._direct: dict[str, list[str]] = {}    # large fragment files read in place
        self._real: dict[str, str] = {}            # each source's SQL, bound last
        self._latest: dict[str, str] = {}          # run -> its fresh latest-attempt table
        self._latest_cols: dict[str, dict[str, str]] = {}
        self.refresh()

    # ------------------------------------------------------------------ sources

    def refresh(self) -> Catalog:
        """Take a new snapshot of the files and (re)define every view over it."""
        for i in range(_RETRIES):
            self.snap = snapshot(self.root)
            try:
                self._find_latest()
                for kind in KINDS:
                    self._define_source(kind)
                self._define_views()
                self._bind_sources(KINDS)
                break
            except duckdb.IOException as exc:
                if i == _RETRIES - 1 or not _vanished(exc):
                    raise
                time.sleep(0.05 * (i + 1))    # a compaction removed a file we listed
        prune_cache(self.root, self.snap)
        return self

    def refresh_kinds(self, kinds: Iterable[str]) -> Catalog:
        """Re-list only the files of ``kinds`` (e.g. ``["reviews"]``, which change most often)
        and redefine their sources; every view over them sees the new rows at once, the other
        kinds keep their snapshot."""
        import dataclasses

        kinds = list(kinds)
        unknown = set(kinds) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown kind(s) {sorted(unknown)}; use {sorted(KINDS)}")
        assert self.snap is not None
        for i in range(_RETRIES):
            fresh = snapshot(self.root, kinds)
            derived = fresh.derived if set(kinds) & set(LATEST_KINDS) else self.snap.derived
            self.snap = dataclasses.replace(self.snap, files={**self.snap.files, **fresh.files},
                                            derived=derived)
            try:
                self._find_latest()
                for kind in kinds:
                    self._define_source(kind)
                self._define_views()     # a view's columns are fixed when it is defined
                self._bind_sources(kinds)
                break
            except duckdb.IOException as exc:
                if i == _RETRIES - 1 or not _vanished(exc):
                    raise
                time.sleep(0.05 * (i + 1))
        return self

    def _find_latest(self) -> None:
        """The runs whose latest-attempt table was computed from exactly their files in this
        snapshot (local paths; on S3 copies in the cache), and each table's columns."""
        assert self.snap is not None
        runs = sorted({f.partition for f in self.snap.of("assets") if f.partition})
        fresh = {r: f for r in runs if (f := self.snap.fresh_latest(r)) is not None}
        paths = local_paths(self.root, list(fresh.values())) if fresh else []
        self._latest = dict(zip(fresh, paths))
        self._latest_cols = {}

    def latest_columns(self, run: str) -> dict[str, str] | None:
        """Columns (name -> DuckDB type) of run ``run``'s fresh latest-attempt table, or None
        when it has none (the run is then computed from its rows)."""
        path = self._latest.get(run)
        if path is None:
            return None
        if run not in self._latest_cols:
            self._latest_cols[run] = {r[0]: r[1] for r in self.con.execute(
                f"DESCRIBE SELECT * FROM {read_sql([path])}").fetchall()}
        return self._latest_cols[run]

    def latest(self, run: str, metrics: Sequence[str] = ()) -> tuple[str, bool]:
        """``(sql, from_table)``: per SKU, its latest attempt in run ``run`` with the columns of
        ``LATEST_COLUMNS`` and ``metrics`` (NULL where the run has none). From the run's
        latest-attempt table when one is fresh (``from_table``), else computed from the run's
        attempt and verdict files (the same answer, a scan and two groupings slower)."""
        cols = self.latest_columns(run)
        if cols is not None:
            types = self.columns.get("assets", {})
            sel = [quote_ident(c) for c in LATEST_COLUMNS]
            sel += [quote_ident(m) if m in cols else
                    f"NULL::{types.get(m, 'DOUBLE')} AS {quote_ident(m)}" for m in metrics]
            return f"(SELECT {', '.join(sel)} FROM {read_sql([self._latest[run]])})", True
        return (latest_sql(self.relation("assets", [run]), self.relation("verdicts", [run]),
                           f"run_id = {_lit(run)}", metrics), False)

    def define_source(self, kind: str) -> None:
        """(Re)define ``_src_<kind>``, the view every named view reads ``kind``'s rows from,
        over the files of the current snapshot (``self.snap``)."""
        self._define_source(kind)
        self._bind_sources([kind])

    def _load_fragments(self, kind: str) -> bool:
        """Hold the snapshot's fragment rows of ``kind`` in a temporary table, adding the new
        fragment files and dropping the vanished ones since the last refresh; True if any.

        Fragments are many small files (one per attempt): reading them once per snapshot
        instead of once per query is what keeps an uncompacted catalog usable, and a refresh
        reads only what is new."""
        assert self.snap is not None
        frag = [f for f in self.snap.of(kind) if not f.compacted]
        table = f"_frag_{kind}"
        paths = local_paths(self.root, frag) if frag else []
        want, have = set(paths), self._loaded.get(kind)
        self._direct[kind] = []
        if paths and not _many_small(frag):
            # a few large fragments (writers' batches): read them in place, like compacted files
            self.con.execute(f"DROP TABLE IF EXISTS {table}")
            self._loaded[kind] = set()
            self._direct[kind] = paths
            return False
        if not paths:
            self.con.execute(f"DROP TABLE IF EXISTS {table}")
            self._loaded[kind] = set()
            return False
        if have:
            try:
                self._update_fragments(table, have - want, [p for p in paths if p not in have])
                self._loaded[kind] = want
                return True
            except duckdb.IOException:
                raise
            except duckdb.Error:      # e.g. a column changed type: load them all again
                pass
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS {_with_file(paths)}")
        self._loaded[kind] = want
        return True

    def _update_fragments(self, table: str, gone: set[str], new: list[str]) -> None:
        if gone:
            self.con.execute(f"DELETE FROM {table} WHERE _file IN (SELECT unnest(?))",
                             [sorted(gone)])
        if not new:
            return
        incoming = f"({_with_file(new)})"
        cols = {r[0]: r[1] for r in self.con.execute(f"DESCRIBE {table}").fetchall()}
        for name, typ in self.con.execute(f"DESCRIBE SELECT * FROM {incoming}").fetchall():
            if name not in cols:
                self.con.execute(f"ALTER TABLE {table} ADD COLUMN {quote_ident(name)} {typ}")
            elif cols[name] != typ:
                raise duckdb.ConversionException(f"{name}: {cols[name]} vs {typ}")
        self.con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM {incoming}")

    def source(self, kind: str, runs: Iterable[str] | None = None) -> str:
        """SQL for the rows of ``kind`` (optionally only files that can hold ``runs``), each row
        once: a row in both a fragment and a compacted file is taken from the fragment."""
        assert self.snap is not None
        key = KINDS[kind][0]
        comp = [f for f in self.snap.of(kind, runs) if f.compacted]
        frag = None
        if self._loaded.get(kind):
            frag = f"(SELECT * EXCLUDE (_file) FROM _frag_{kind}"
            if runs is not None:
                frag += f" WHERE run_id IN ({', '.join(_lit(r) for r in runs) or 'NULL'})"
            frag += ")"
        elif self._direct.get(kind):
            # the same partition pruning as for compacted files (run partitions, ``all``)
            live = {f.key for f in self.snap.of(kind, runs) if not f.compacted}
            direct = [p for f, p in zip([f for f in self.snap.of(kind) if not f.compacted],
                                        self._direct[kind]) if f.key in live]
            if direct:
                frag = f"(SELECT * FROM {read_sql(direct)}"
                if runs is not None:
                    frag += f" WHERE run_id IN ({', '.join(_lit(r) for r in runs) or 'NULL'})"
                frag += ")"
        if frag is None and not comp:
            return f"(SELECT * FROM _empty_{kind})"
        if not comp:
            return frag
        cp = read_sql(local_paths(self.root, comp))
        if frag is None:
            return cp
        k = quote_ident(key)
        return (f"(SELECT * FROM {cp} WHERE {k} NOT IN "
                f"(SELECT {k} FROM {frag} WHERE {k} IS NOT NULL) "
                f"UNION ALL BY NAME SELECT * FROM {frag})")

    def relation(self, kind: str, runs: Iterable[str] | None = None) -> str:
        """A subquery over the rows of ``kind`` with every column the views know (NULL where
        its files lack one); with ``runs``, only the files that can hold those runs are read
        (the partition pruning the run-scoped functions rely on)."""
        if runs is None:
            return f"(SELECT * FROM _src_{kind})"
        runs = list(runs)

        def build() -> str:
            src = self.source(kind, runs)
            have = {r[0] for r in self.con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()}
            extra = [f"NULL::{t} AS {quote_ident(n)}" for n, t in self.columns[kind].items()
                     if n not in have]
            return f"(SELECT *{''.join(', ' + e for e in extra)} FROM {src})"

        return with_retry(self, build)

    def _define_source(self, kind: str) -> None:
        schema = SCHEMAS[kind]
        empty = ", ".join(f"NULL::{_DUCK_TYPES[f.type]} AS {quote_ident(f.name)}" for f in schema)
        self.con.execute(f"CREATE OR REPLACE VIEW _empty_{kind} AS SELECT {empty} WHERE false")
        self._load_fragments(kind)
        src = self.source(kind)
        have = {r[0]: r[1] for r in self.con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()}
        wanted = {f.name: _DUCK_TYPES[f.type] for f in schema}
        if kind == "assets":
            wanted.update(KNOWN_METRICS)
        extra = [f"NULL::{t} AS {quote_ident(n)}" for n, t in wanted.items() if n not in have]
        cols = "*" + "".join(", " + e for e in extra)
        self.columns[kind] = {**have, **{n: t for n, t in wanted.items() if n not in have}}
        # The views over this source are defined against a stand-in with the same columns and
        # types, and the real source replaces it afterwards (``_bind_sources``): DuckDB binds
        # a view when it is defined, and binding Parquet files read by name (files of
        # different schemas) opens every one of them; over thousands of uncompacted
        # fragments that was seconds per view, for twenty views.
        self._real[kind] = f"SELECT {cols} FROM {src}"
        stand_in = ", ".join(f"NULL::{t} AS {quote_ident(n)}" for n, t in
                             self.columns[kind].items())
        self.con.execute(f"CREATE OR REPLACE VIEW _src_{kind} AS SELECT {stand_in} WHERE false")

    def _bind_sources(self, kinds: Iterable[str]) -> None:
        for kind in kinds:
            self.con.execute(f"CREATE OR REPLACE VIEW _src_{kind} AS {self._real.pop(kind)}")

    def _define_views(self) -> None:
        c = self.con
        c.execute("CREATE OR REPLACE VIEW attempts AS SELECT * FROM _src_assets")
        c.execute("""CREATE OR REPLACE VIEW current_assets AS
            SELECT * FROM attempts WHERE attempt_id IN (
                SELECT max_by(attempt_id, (finished_at, attempt_id)) FROM attempts GROUP BY sku)""")
        c.execute("CREATE OR REPLACE VIEW assets AS SELECT * FROM current_assets")
        c.execute("""CREATE OR REPLACE VIEW stages AS
            SELECT * FROM _src_stages WHERE attempt_id IN (SELECT attempt_id FROM attempts)""")
        c.execute("CREATE OR REPLACE VIEW verdicts AS SELECT * FROM _src_verdicts")
        c.execute("""CREATE OR REPLACE VIEW current_verdicts AS
            SELECT * FROM verdicts WHERE verdict_id IN (
                SELECT max_by(verdict_id, (computed_at, verdict_id)) FROM verdicts
                GROUP BY attempt_id)""")
        c.execute("CREATE OR REPLACE VIEW reviews AS SELECT * FROM _src_reviews")
        c.execute("""CREATE OR REPLACE VIEW decisions AS
            SELECT * FROM reviews WHERE review_id IN (
                SELECT max_by(review_id, (decided_at, review_id)) FROM reviews
                GROUP BY attempt_id)""")
        aliases = "".join(f", {expr} AS {name}" for name, expr in ALIASES.items())
        c.execute(f"""CREATE OR REPLACE VIEW queue AS
            SELECT a.*, coalesce(v.verdict, 'untriaged') AS verdict, v.severity, v.reasons,
                   v.rules_hit, v.rules_version, v.verdict_id, v.computed_at AS triaged_at,
                   coalesce(d.decision, 'unreviewed') AS review_status, d.reviewer,
                   d.note AS review_note, d.overrides AS review_overrides, d.decided_at,
                   d.review_id {aliases}
            FROM current_assets a
            LEFT JOIN current_verdicts v ON v.attempt_id = a.attempt_id
            LEFT JOIN decisions d ON d.attempt_id = a.attempt_id""")
        c.execute("CREATE OR REPLACE VIEW open_reworks AS "
                  "SELECT * FROM queue WHERE review_status = 'rework'")
        c.execute("CREATE OR REPLACE VIEW published AS SELECT * FROM _src_published")
        c.execute("""CREATE OR REPLACE VIEW delivered AS
            SELECT * FROM published WHERE action = 'published' AND item_id IN (
                SELECT max_by(item_id, (published_at, item_id)) FROM published
                GROUP BY destination, sku)""")
        c.execute("CREATE OR REPLACE VIEW rulesets AS SELECT * FROM _src_rulesets")
        c.execute("""CREATE OR REPLACE VIEW history AS
            SELECT sku, finished_at AS happened_at, 'attempt' AS event, attempt_id, run_id,
                   status AS outcome,
                   concat_ws('; ', CASE WHEN failed_stage IS NOT NULL
                                        THEN failed_stage || ': ' || error END,
                             CASE WHEN supersedes IS NOT NULL
                                  THEN 'supersedes ' || supersedes END,
                             trigger) AS detail,
                   host AS actor FROM attempts
            UNION ALL
            SELECT sku, computed_at, 'verdict', attempt_id, run_id, verdict, reasons,
                   computed_by FROM verdicts
            UNION ALL
            SELECT sku, decided_at, 'decision', attempt_id, run_id, decision,
                   concat_ws('; ', note, CASE WHEN overrides IS NOT NULL AND overrides <> '{}'
                                              THEN 'set ' || overrides END), reviewer
            FROM reviews
            UNION ALL
            SELECT sku, published_at, action, attempt_id, run_id, action, destination, publisher
            FROM published""")
        c.execute("""CREATE OR REPLACE MACRO sku_history(s) AS TABLE
            SELECT * FROM history WHERE sku = s ORDER BY happened_at, event""")
        c.execute("""CREATE OR REPLACE VIEW runs AS
            SELECT run_id, count(*) AS attempts,
                   count(*) FILTER (WHERE status = 'ok') AS ok,
                   count(*) FILTER (WHERE status = 'failed') AS failed,
                   min(finished_at) AS first_finished, max(finished_at) AS last_finished,
                   sum(wall_s) AS asset_seconds
            FROM attempts GROUP BY run_id""")
        # flow runs (catalog/flow_runs.py): each run's latest row; each ingested file once
        c.execute("""CREATE OR REPLACE VIEW flow_runs AS SELECT * FROM _src_flow_runs
            QUALIFY row_number() OVER (PARTITION BY flow_run_id ORDER BY seq DESC) = 1""")
        c.execute("""CREATE OR REPLACE VIEW ingested AS SELECT * FROM _src_ingested
            QUALIFY row_number() OVER (PARTITION BY uri, sha256, flow_run_id
                                       ORDER BY ingested_at) = 1""")
        # each run's latest attempts: the run's latest-attempt table where it is fresh, else
        # computed from the run's rows (the plan of ``history.run_diff``)
        metrics = self.metric_columns()
        c.execute(f"CREATE OR REPLACE VIEW run_latest AS SELECT * FROM "
                  f"{self._latest_union(None, metrics)}")
        side_a, side_b = self._latest_union("run_a"), self._latest_union("run_b")
        c.execute(f"CREATE OR REPLACE MACRO run_diff(run_a, run_b) AS TABLE "
                  f"{run_diff_sql(side_a, side_b)}")
        if metrics:
            side_a, side_b = (self._latest_union("run_a", metrics),
                              self._latest_union("run_b", metrics))
            c.execute("CREATE OR REPLACE MACRO run_metric_changes(run_a, run_b, tolerance) AS "
                      f"TABLE {metric_changes_sql(metrics, side_a, side_b)}")

    def _latest_union(self, run: str | None, metrics: Sequence[str] = ()) -> str:
        """The latest attempts of run ``run`` (an SQL expression: a macro's parameter), or of
        every run, over the views (the SQL of the named view and the macros): the fresh
        latest-attempt tables' rows, and for the other runs the rows computed from
        ``attempts`` and ``verdicts``. For one run, the branch it does not need folds away
        (``run NOT IN (...)`` is a constant once the macro is expanded)."""
        cols = list(LATEST_COLUMNS) + [m for m in metrics if m not in LATEST_COLUMNS]
        fresh = sorted(self._latest)
        where = "true" if run is None else f"run_id = {run}"
        if fresh:
            names = ", ".join(_lit(r) for r in fresh)
            where += f" AND {run or 'run_id'} NOT IN ({names})"
        computed = latest_sql("attempts", "verdicts", where, metrics)
        if not fresh:
            return computed
        tables = read_sql([self._latest[r] for r in fresh])
        have = {r[0] for r in self.con.execute(f"DESCRIBE SELECT * FROM {tables}").fetchall()}
        types = {**self.columns.get("assets", {}), **dict.fromkeys(
            ("verdict", "verdict_id"), "VARCHAR"), "severity": "BIGINT"}
        sel = ", ".join(quote_ident(x) if x in have else
                        f"NULL::{types.get(x, 'DOUBLE')} AS {quote_ident(x)}" for x in cols)
        mine = "true" if run is None else f"run_id = {run}"
        return (f"(SELECT {sel} FROM {tables} WHERE {mine} "
                f"UNION ALL BY NAME SELECT * FROM {computed})")

    def metric_columns(self) -> list[str]:
        """Numeric metric columns of the attempts (what a run diff compares)."""
        return sorted(n for n, t in self.columns.get("assets", {}).items() if is_metric(n, t))

    # ------------------------------------------------------------------ queries

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> duckdb.DuckDBPyConnection:
        return with_retry(self, lambda: self.con.execute(sql, list(params or [])))

    def rows(self, sql: str, params: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        def run() -> list[dict[str, Any]]:
            cur = self.con.execute(sql, list(params or []))
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, r)) for r in cur.fetchall()]
        return with_retry(self, run)

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_RETRIES = 6


def _vanished(exc: Exception) -> bool:
    msg = str(exc)
    return any(s in msg for s in ("No such file", "No files found", "does not exist",
                                  "Cannot open file"))


def with_retry(cat: Catalog, fn: Callable[[], T], attempts: int = _RETRIES) -> T:
    """Run ``fn``; when a file of the snapshot was deleted under it (a compaction finished),
    take a new snapshot and run it again. The new snapshot holds the same rows."""
    for i in range(attempts):
        try:
            return fn()
        except duckdb.IOException as exc:
            if i == attempts - 1 or not _vanished(exc):
                raise
            time.sleep(0.05 * (i + 1))
            cat.refresh()
    raise AssertionError("unreachable")


#: What a run's latest-attempt table holds besides metrics: one row per SKU of the run, its
#: latest attempt there (the largest ``(finished_at, attempt_id)``) and that attempt's latest
#: verdict (the largest ``(computed_at, verdict_id)``).
LATEST_COLUMNS = ("run_id", "sku", "attempt_id", "finished_at", "status", "failed_stage",
                  "verdict", "severity", "verdict_id")

#: A side's severity in a run diff: 2 failed, else its verdict's severity (0 untriaged).
SEV = "CASE WHEN status = 'failed' THEN 2 ELSE coalesce(severity, 0) END"

#: The columns of a run diff, from the latest attempts ``a`` and ``b`` of a SKU in two runs
#: (each with ``sev``): the kind of change and both sides.
DIFF_COLUMNS = """coalesce(a.sku, b.sku) AS sku,
    CASE WHEN a.sku IS NULL THEN 'new' WHEN b.sku IS NULL THEN 'missing'
         WHEN b.sev < a.sev THEN 'fixed' WHEN b.sev > a.sev THEN 'regressed'
         ELSE 'same' END AS change,
    a.attempt_id AS attempt_a, b.attempt_id AS attempt_b,
    a.status AS status_a, b.status AS status_b,
    a.failed_stage AS failed_stage_a, b.failed_stage AS failed_stage_b,
    a.verdict AS verdict_a, b.verdict AS verdict_b"""


def latest_sql(assets: str, verdicts: str, where: str, metrics: Sequence[str] = ()) -> str:
    """Per run and SKU among the attempts ``where`` selects (a condition on ``run_id``, also
    applied to the verdicts): the latest attempt with ``LATEST_COLUMNS`` and ``metrics``.

    The latest attempt is a ``max`` over a two-field struct per SKU and a semi-join back to
    it, and its latest verdict one struct ``max`` per attempt: one aggregate state per group,
    no strings carried in the grouping (three ``max_by`` columns per group took ~3 times as
    long at a million attempts). This is what a run's latest-attempt table is made by, and
    what a run diff computes for a run that has no fresh table."""
    mcols = "".join(f", {quote_ident(m)}" for m in metrics)
    s_m = "".join(f", s.{quote_ident(m)}" for m in metrics)
    return f"""(
        WITH s AS (SELECT run_id, sku, attempt_id, finished_at, status, failed_stage{mcols}
                   FROM {assets} WHERE {where}),
        latest AS (SELECT max({{'t': finished_at, 'a': attempt_id}}).a AS attempt_id
                   FROM s GROUP BY run_id, sku),
        v AS (SELECT attempt_id, max({{'t': computed_at, 'i': verdict_id, 'v': verdict,
                                      's': severity}}) AS m
              FROM {verdicts} WHERE {where} GROUP BY attempt_id)
        SELECT s.run_id, s.sku, s.attempt_id, s.finished_at, s.status, s.failed_stage,
               v.m.v AS verdict, v.m.s AS severity, v.m.i AS verdict_id{s_m}
        FROM s SEMI JOIN latest ON s.attempt_id = latest.attempt_id
        LEFT JOIN v ON v.attempt_id = s.attempt_id)"""


def run_diff_sql(side_a: str, side_b: str, positional: bool = False) -> str:
    """Per SKU in either run: the kind of change and both sides (``DIFF_COLUMNS``), from each
    run's latest attempts (``side_a``, ``side_b``: relations with ``LATEST_COLUMNS``).
    ``positional``: the two sides hold the same SKUs in the same order (paired row by row)."""
    cols = f"sku, attempt_id, status, failed_stage, verdict, {SEV} AS sev"
    join = "POSITIONAL JOIN" if positional else "FULL OUTER JOIN"
    on = "" if positional else "ON a.sku = b.sku"
    return f"""
        SELECT {DIFF_COLUMNS}
        FROM (SELECT {cols} FROM {side_a}) a
        {join} (SELECT {cols} FROM {side_b}) b {on}"""


def metric_changes_sql(metrics: Sequence[str], side_a: str, side_b: str,
                       tolerance: str = "tolerance") -> str:
    """Long form: (sku, metric, value_a, value_b, delta) for the SKUs in both runs where the
    metric moved by more than ``tolerance`` (relative), or changed at all for booleans; from
    each run's latest attempts (``side_a``, ``side_b``, with the metric columns)."""
    parts, cols = [], []
    for i, m in enumerate(metrics):
        q = quote_ident(m)
        cols.append(f"a.{q} AS a{i}, b.{q} AS b{i}")
        parts.append(f"SELECT sku, {_lit(m)} AS metric, a{i}::DOUBLE AS value_a, "
                     f"b{i}::DOUBLE AS value_b FROM pair WHERE a{i} IS DISTINCT FROM b{i}")
    return f"""
        WITH pair AS (
            SELECT a.sku, {', '.join(cols)} FROM {side_a} a JOIN {side_b} b ON a.sku = b.sku),
        long AS ({' UNION ALL '.join(parts)})
        SELECT sku, metric, value_a, value_b, value_b - value_a AS delta FROM long
        WHERE value_a IS NULL OR value_b IS NULL
           OR abs(value_b - value_a) > {tolerance} * greatest(abs(value_a), 1e-12)"""


def connect(root: str, con: duckdb.DuckDBPyConnection | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the catalog views defined over ``root``."""
    return Catalog(root, con).con


def open_catalog(root: str | Catalog) -> tuple[Catalog, bool]:
    """``(catalog, opened_here)``: API functions accept a root or an open ``Catalog``."""
    if isinstance(root, Catalog):
        return root, False
    return Catalog(str(root)), True


def query(root: str, sql: str, params: Sequence[Any] | None = None):
    """Run SQL against the catalog views; returns (column names, rows)."""
    cat = Catalog(root)
    try:
        def run():
            cur = cat.con.execute(sql, list(params or []))
            cols = [d[0] for d in cur.description] if cur.description else []
            return cols, cur.fetchall()
        return with_retry(cat, run)
    finally:
        cat.close()

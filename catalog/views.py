"""DuckDB views over the catalog's Parquet fragments, locally or on S3.

Locally DuckDB reads the fragment files directly (globs). On S3 the fragments are read through
the project's storage layer (boto3, any endpoint) into Arrow and registered with DuckDB: that
needs no DuckDB extension download at run time, which this factory never does.

Views:
  ``attempts``  every asset attempt (deduplicated by attempt_id, so a half-finished compaction
                never shows a row twice)
  ``assets``    the latest attempt of each SKU
  ``stages``    every stage run of a committed attempt
  ``reviews``   review decisions, when any were made
  ``runs``      one row per run: counts and wall time
  ``flow_runs`` one row per scheduled/bulk flow run (sync, ingest): its latest state and counts
  ``ingested``  one row per catalog file a bulk-ingest run finished with
"""

from __future__ import annotations

import os

import duckdb

from ..core.storage import open_storage


def _glob(root: str, kind: str) -> list[str]:
    base = root.rstrip("/")
    return [f"{base}/catalog/{kind}/**/*.parquet", f"{base}/catalog/compacted/{kind}-*.parquet"]


def _has_files(root: str, kind: str) -> list[str]:
    store = open_storage(root)
    found = []
    for pattern, prefix in ((0, f"catalog/{kind}/"), (1, "catalog/compacted/")):
        for key in store.list(prefix):
            if key.endswith(".parquet") and (pattern == 0 or
                                             key.split("/")[-1].startswith(f"{kind}-")):
                found.append(_glob(root, kind)[pattern])
                break
    return found


def _arrow_from_store(root: str, kind: str):
    """All fragments of ``kind`` under an S3 root as one Arrow table (None when there are none)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    store = open_storage(root)
    keys = [k for k in store.list(f"catalog/{kind}/") if k.endswith(".parquet")]
    keys += [k for k in store.list("catalog/compacted/")
             if k.split("/")[-1].startswith(f"{kind}-") and k.endswith(".parquet")]
    if not keys:
        return None
    tables = [pq.read_table(pa.BufferReader(store.get(k))) for k in keys]
    return pa.concat_tables(tables, promote_options="permissive")


def connect(root: str, con: duckdb.DuckDBPyConnection | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the catalog views defined over ``root``."""
    root = str(root)
    if not root.startswith("s3://"):
        root = os.path.abspath(root)
    con = con or duckdb.connect()
    remote = root.startswith("s3://")

    def source(kind: str) -> str | None:
        if remote:
            table = _arrow_from_store(root, kind)
            if table is None:
                return None
            con.register(f"_{kind}_fragments", table)
            return f"_{kind}_fragments"
        globs = _has_files(root, kind)
        if not globs:
            return None
        lst = ", ".join(f"'{g}'" for g in globs)
        return f"read_parquet([{lst}], union_by_name = true, hive_partitioning = false)"

    assets_src = source("assets")
    if assets_src is None:
        con.execute("CREATE OR REPLACE VIEW attempts AS SELECT NULL::VARCHAR AS attempt_id, "
                    "NULL::VARCHAR AS run_id, NULL::VARCHAR AS asset_id, NULL::VARCHAR AS sku, "
                    "NULL::VARCHAR AS status, NULL::VARCHAR AS failed_stage, NULL::VARCHAR AS error, "
                    "NULL::VARCHAR AS fix, NULL::TIMESTAMPTZ AS finished_at, NULL::DOUBLE AS wall_s "
                    "WHERE false")
    else:
        con.execute(f"""CREATE OR REPLACE VIEW attempts AS
            SELECT * FROM {assets_src}
            QUALIFY row_number() OVER (PARTITION BY attempt_id ORDER BY finished_at) = 1""")
    con.execute("""CREATE OR REPLACE VIEW assets AS
        SELECT * FROM attempts
        QUALIFY row_number() OVER (PARTITION BY sku ORDER BY finished_at DESC, attempt_id DESC) = 1""")
    stages_src = source("stages")
    if stages_src is None:
        con.execute("CREATE OR REPLACE VIEW stages AS SELECT NULL::VARCHAR AS attempt_id, "
                    "NULL::VARCHAR AS run_id, NULL::VARCHAR AS sku, NULL::BIGINT AS seq, "
                    "NULL::VARCHAR AS stage, NULL::VARCHAR AS status, NULL::DOUBLE AS duration_s "
                    "WHERE false")
    else:
        con.execute(f"""CREATE OR REPLACE VIEW stages AS
            SELECT s.* FROM {stages_src} s
            WHERE s.attempt_id IN (SELECT attempt_id FROM attempts)
            QUALIFY row_number() OVER (PARTITION BY s.attempt_id, s.seq ORDER BY s.started_at) = 1""")
    reviews_src = source("reviews")
    if reviews_src is not None:
        con.execute(f"CREATE OR REPLACE VIEW reviews AS SELECT * FROM {reviews_src}")
    con.execute("""CREATE OR REPLACE VIEW runs AS
        SELECT run_id, count(*) AS attempts,
               count(*) FILTER (WHERE status = 'ok') AS ok,
               count(*) FILTER (WHERE status = 'failed') AS failed,
               min(finished_at) AS first_finished, max(finished_at) AS last_finished,
               sum(wall_s) AS asset_seconds
        FROM attempts GROUP BY run_id""")
    _flow_views(con, source)
    return con


def _flow_views(con: duckdb.DuckDBPyConnection, source) -> None:
    """``flow_runs`` and ``ingested`` (catalog/flow_runs.py); empty views when none exist."""
    flow_runs = source("flow_runs")
    if flow_runs is None:
        con.execute("CREATE OR REPLACE VIEW flow_runs AS SELECT NULL::VARCHAR AS flow_run_id, "
                    "NULL::VARCHAR AS flow, NULL::VARCHAR AS status, NULL::BIGINT AS converted, "
                    "NULL::TIMESTAMPTZ AS started_at, NULL::TIMESTAMPTZ AS finished_at "
                    "WHERE false")
    else:  # a fragment seen twice (compaction cut short) counts once: latest seq per run
        con.execute(f"""CREATE OR REPLACE VIEW flow_runs AS SELECT * FROM {flow_runs}
            QUALIFY row_number() OVER (PARTITION BY flow_run_id ORDER BY seq DESC) = 1""")
    ingested = source("ingested")
    if ingested is None:
        con.execute("CREATE OR REPLACE VIEW ingested AS SELECT NULL::VARCHAR AS uri, "
                    "NULL::VARCHAR AS sha256, NULL::VARCHAR AS status, "
                    "NULL::VARCHAR AS flow_run_id, NULL::TIMESTAMPTZ AS ingested_at WHERE false")
    else:
        con.execute(f"""CREATE OR REPLACE VIEW ingested AS SELECT * FROM {ingested}
            QUALIFY row_number() OVER (PARTITION BY uri, sha256, flow_run_id
                                       ORDER BY ingested_at) = 1""")


def query(root: str, sql: str):
    """Run SQL against the catalog views; returns (column names, rows)."""
    con = connect(root)
    try:
        cur = con.execute(sql)
        cols = [d[0] for d in cur.description] if cur.description else []
        return cols, cur.fetchall()
    finally:
        con.close()

"""DuckDB views over the catalog's Parquet fragments, locally or on S3 (httpfs).

Views:
  ``attempts``  every asset attempt (deduplicated by attempt_id, so a half-finished compaction
                never shows a row twice)
  ``assets``    the latest attempt of each SKU
  ``stages``    every stage run of a committed attempt
  ``reviews``   review decisions, when any were made
  ``runs``      one row per run: counts and wall time
"""

from __future__ import annotations

import os
from urllib.parse import urlparse

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


def _configure_s3(con: duckdb.DuckDBPyConnection, root: str) -> None:
    con.execute("INSTALL httpfs; LOAD httpfs;")
    endpoint = os.environ.get("ASSETFACTORY_S3_ENDPOINT") or os.environ.get("AWS_ENDPOINT_URL")
    opts = ["TYPE s3", "URL_STYLE 'path'"]
    if endpoint:
        parsed = urlparse(endpoint)
        opts.append(f"ENDPOINT '{parsed.netloc}'")
        opts.append(f"USE_SSL {'true' if parsed.scheme == 'https' else 'false'}")
    for env, key in (("AWS_ACCESS_KEY_ID", "KEY_ID"), ("AWS_SECRET_ACCESS_KEY", "SECRET"),
                     ("AWS_REGION", "REGION")):
        if os.environ.get(env):
            opts.append(f"{key} '{os.environ[env]}'")
    con.execute(f"CREATE OR REPLACE SECRET assetfactory_s3 ({', '.join(opts)})")


def connect(root: str, con: duckdb.DuckDBPyConnection | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the catalog views defined over ``root``."""
    root = str(root)
    if not root.startswith("s3://"):
        root = os.path.abspath(root)
    con = con or duckdb.connect()
    if root.startswith("s3://"):
        _configure_s3(con, root)

    def source(kind: str) -> str | None:
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
    return con


def query(root: str, sql: str):
    """Run SQL against the catalog views; returns (column names, rows)."""
    con = connect(root)
    try:
        cur = con.execute(sql)
        cols = [d[0] for d in cur.description] if cur.description else []
        return cols, cur.fetchall()
    finally:
        con.close()

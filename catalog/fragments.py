"""Append-only catalog fragments: one Parquet file per asset attempt, never updated in place.

Layout under the output root (local or S3)::

    catalog/stages/run=<run_id>/<attempt_id>.parquet   one row per stage run
    catalog/assets/run=<run_id>/<attempt_id>.parquet   one row: the attempt's outcome
    catalog/stages/run=<run_id>/b-<block>.parquet      the same for a block of attempts
    catalog/assets/run=<run_id>/b-<block>.parquet      (one file each per Ray task, see below)
    catalog/verdicts/run=<run_id>/<batch_id>.parquet   triage verdicts (one row per attempt judged)
    catalog/reviews/<review_id>.parquet                 review decisions
    catalog/published/<publish_id>.parquet              what a publish delivered
    catalog/rulesets/<rules_hash>.parquet               the triage rules a verdict was computed by
    catalog/compacted/<kind>/<partition>/c-*.parquet    merged fragments (see ``compact``)

The asset fragment is written last and acts as the commit marker: stage rows whose attempt has
no asset row are ignored by the views. Many workers write side by side without contention, and
no row is ever rewritten: a new verdict, decision or publication is a new row.

The executor records the SKUs of one task together (``write_attempts``): two files per block
of SKUs instead of two per SKU (each file is fsynced before its rename, which cost more than a
trivial SKU's stages). A block's name is a hash of its attempt ids, so a retried task rewrites
the same two files instead of adding rows; an attempt is in at most one committed file.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import platform
import socket
import time
import uuid
from collections.abc import Collection, Iterable
from importlib import metadata
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..core.storage import Storage
from ..core.types import AssetState, StageRecord

ASSET_FIELDS: list[pa.Field] = [
    pa.field("attempt_id", pa.string()),
    pa.field("run_id", pa.string()),
    pa.field("asset_id", pa.string()),
    pa.field("sku", pa.string()),
    pa.field("title", pa.string()),
    pa.field("category", pa.string()),
    pa.field("row", pa.int64()),
    pa.field("status", pa.string()),          # ok | failed
    pa.field("failed_stage", pa.string()),
    pa.field("error", pa.string()),
    pa.field("fix", pa.string()),
    pa.field("error_kind", pa.string()),
    pa.field("profile", pa.string()),
    pa.field("backend", pa.string()),
    pa.field("catalog_source", pa.string()),
    pa.field("started_at", pa.timestamp("ms", tz="UTC")),
    pa.field("finished_at", pa.timestamp("ms", tz="UTC")),
    pa.field("wall_s", pa.float64()),
    pa.field("peak_rss_mb", pa.float64()),
    pa.field("glb_uri", pa.string()),
    pa.field("poster_uri", pa.string()),
    pa.field("glb_sha256", pa.string()),
    pa.field("input_hashes", pa.string()),    # JSON {artifact: sha256}
    pa.field("recipe_hash", pa.string()),
    pa.field("recipe", pa.string()),          # JSON: stage -> version + options
    pa.field("code_version", pa.string()),
    pa.field("library_versions", pa.string()),  # JSON
    pa.field("host", pa.string()),
    pa.field("metrics", pa.string()),         # JSON of every metric, also spread into columns
    pa.field("usdz_uri", pa.string()),
    pa.field("usdz_sha256", pa.string()),
    pa.field("poster_sha256", pa.string()),
    pa.field("supersedes", pa.string()),      # the attempt_id this attempt re-does (reprocess)
    pa.field("trigger", pa.string()),         # why it ran: null for a run, else the reprocess reason
]
ASSET_SCHEMA = pa.schema(ASSET_FIELDS)
FIXED_COLUMNS = {f.name for f in ASSET_FIELDS}

STAGE_SCHEMA = pa.schema([
    pa.field("attempt_id", pa.string()),
    pa.field("run_id", pa.string()),
    pa.field("asset_id", pa.string()),
    pa.field("sku", pa.string()),
    pa.field("seq", pa.int64()),
    pa.field("stage", pa.string()),
    pa.field("version", pa.string()),
    pa.field("status", pa.string()),
    pa.field("error", pa.string()),
    pa.field("options_hash", pa.string()),
    pa.field("options", pa.string()),
    pa.field("inputs", pa.string()),
    pa.field("outputs", pa.string()),
    pa.field("started_at", pa.timestamp("ms", tz="UTC")),
    pa.field("duration_s", pa.float64()),
    pa.field("host", pa.string()),
    pa.field("device", pa.string()),
    pa.field("peak_rss_mb", pa.float64()),
])

TS = pa.timestamp("ms", tz="UTC")

#: One row per attempt judged by the triage rules; recomputing appends new rows.
VERDICT_SCHEMA = pa.schema([
    pa.field("verdict_id", pa.string()),
    pa.field("attempt_id", pa.string()),
    pa.field("run_id", pa.string()),
    pa.field("sku", pa.string()),
    pa.field("verdict", pa.string()),         # pass | review | fail
    pa.field("severity", pa.int64()),         # 2 fail, 1 review, 0 pass
    pa.field("reasons", pa.string()),         # the hit rules' reasons, worst first, "; "-joined
    pa.field("rules_hit", pa.list_(pa.string())),
    pa.field("details", pa.string()),         # JSON [{rule, verdict, metric, value, threshold}]
    pa.field("rules_version", pa.string()),
    pa.field("rules_hash", pa.string()),
    pa.field("computed_at", TS),
    pa.field("computed_by", pa.string()),
])

#: One row per review decision; a later decision on the same attempt wins.
REVIEW_SCHEMA = pa.schema([
    pa.field("review_id", pa.string()),
    pa.field("sku", pa.string()),
    pa.field("attempt_id", pa.string()),      # the attempt that was looked at
    pa.field("run_id", pa.string()),
    pa.field("asset_id", pa.string()),
    pa.field("decision", pa.string()),        # approve | reject | rework
    pa.field("note", pa.string()),
    pa.field("overrides", pa.string()),       # JSON {stage: {option: value}} for rework
    pa.field("reviewer", pa.string()),
    pa.field("decided_at", TS),
    pa.field("source", pa.string()),          # cli | api | dashboard
    pa.field("verdict", pa.string()),         # the verdict shown when deciding
])

#: One row per SKU a publish changed at a destination (copied or withdrawn).
PUBLISHED_SCHEMA = pa.schema([
    pa.field("item_id", pa.string()),
    pa.field("publish_id", pa.string()),
    pa.field("destination", pa.string()),
    pa.field("sku", pa.string()),
    pa.field("attempt_id", pa.string()),
    pa.field("run_id", pa.string()),
    pa.field("review_id", pa.string()),       # the approval; null when published unreviewed
    pa.field("action", pa.string()),          # published | withdrawn
    pa.field("files", pa.string()),           # JSON [{role, name, uri, bytes, sha256}]
    pa.field("glb_sha256", pa.string()),
    pa.field("published_at", TS),
    pa.field("publisher", pa.string()),
])

#: The effective triage rules, stored once per hash so every verdict can be explained later.
RULESET_SCHEMA = pa.schema([
    pa.field("rules_hash", pa.string()),
    pa.field("rules_version", pa.string()),
    pa.field("sources", pa.string()),         # JSON list of the files layered into it
    pa.field("rules", pa.string()),           # JSON of the effective rules
    pa.field("recorded_at", TS),
])

_LIBS = ("numpy", "scipy", "trimesh", "xatlas", "fast-simplification", "pillow",
         "opencv-python-headless", "scikit-image", "moderngl", "pyarrow", "duckdb", "ray", "prefect")


def library_versions() -> dict[str, str]:
    """The versions of the libraries an attempt ran with (a copy; see ``_library_versions``)."""
    return dict(_library_versions())


@functools.lru_cache(maxsize=1)
def _library_versions() -> dict[str, str]:
    # read once per process: importlib.metadata parses every package's METADATA file on each
    # call (~30 ms per library), which made writing one attempt's row take 0.4 s
    out = {"python": platform.python_version()}
    for name in _LIBS:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


@functools.lru_cache(maxsize=1)
def _library_versions_json() -> str:
    return json.dumps(library_versions())


def code_version() -> str:
    from .. import __version__

    return __version__


def new_attempt_id() -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:12]


def _ts(seconds: float | None):
    return None if seconds is None else int(seconds * 1000)


def _metric_column(name: str) -> str:
    return name if name not in FIXED_COLUMNS else f"m_{name}"


def _to_table(rows: list[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    extra: dict[str, pa.DataType] = {}
    for row in rows:
        for k, v in row.items():
            if k in schema.names or k in extra or v is None:
                continue
            if isinstance(v, bool):
                extra[k] = pa.bool_()
            elif isinstance(v, int):
                extra[k] = pa.int64()
            elif isinstance(v, float):
                extra[k] = pa.float64()
            else:
                extra[k] = pa.string()
    full = pa.schema(list(schema) + [pa.field(k, t) for k, t in sorted(extra.items())])
    cols = {}
    for f in full:
        vals = [row.get(f.name) for row in rows]
        if pa.types.is_floating(f.type):
            vals = [None if v is None else float(v) for v in vals]
        elif pa.types.is_string(f.type):
            vals = [None if v is None else str(v) for v in vals]
        cols[f.name] = pa.array(vals, type=f.type)
    return pa.table(cols, schema=full)


def _parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def parquet_bytes(table: pa.Table) -> bytes:
    """A table as zstd Parquet bytes (what every fragment is)."""
    return _parquet_bytes(table)


def rows_table(rows: list[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    """Rows as a table of ``schema``; keys outside it become extra typed columns."""
    return _to_table(rows, schema)


def asset_row(state: AssetState, *, started_at: float, finished_at: float, recipe: dict,
              recipe_hash: str, input_hashes: dict, catalog_source: str = "",
              supersedes: str | None = None, trigger: str | None = None) -> dict[str, Any]:
    f = state.failure
    glb = state.artifacts.get("glb")
    poster = state.artifacts.get("poster")
    usdz = state.artifacts.get("usdz")
    metrics = {k: v for k, v in state.metrics.items()}
    row: dict[str, Any] = {
        "attempt_id": state.attempt_id, "run_id": state.run_id, "asset_id": state.asset_id,
        "sku": state.sku, "title": state.spec.title, "category": state.spec.category,
        "row": state.spec.row, "status": "ok" if f is None else "failed",
        "failed_stage": f.stage if f else None, "error": f.message if f else None,
        "fix": f.fix if f else None, "error_kind": f.kind if f else None,
        "profile": state.profile, "backend": state.backend, "catalog_source": catalog_source,
        "started_at": _ts(started_at), "finished_at": _ts(finished_at),
        "wall_s": finished_at - started_at,
        "peak_rss_mb": max((r.peak_rss_mb for r in state.records), default=None),
        "glb_uri": glb.uri if glb else None, "poster_uri": poster.uri if poster else None,
        "glb_sha256": glb.sha256 if glb else None,
        "input_hashes": json.dumps(input_hashes, sort_keys=True),
        "recipe_hash": recipe_hash, "recipe": json.dumps(recipe, sort_keys=True, default=str),
        "code_version": code_version(), "library_versions": _library_versions_json(),
        "host": socket.gethostname(),
        "metrics": json.dumps(metrics, sort_keys=True, default=str),
        "usdz_uri": usdz.uri if usdz else None, "usdz_sha256": usdz.sha256 if usdz else None,
        "poster_sha256": poster.sha256 if poster else None,
        "supersedes": supersedes, "trigger": trigger,
    }
    for k, v in metrics.items():
        if isinstance(v, (bool, int, float, str)) or v is None:
            row[_metric_column(k)] = v
    return row


def stage_rows(state: AssetState) -> list[dict[str, Any]]:
    rows = []
    for seq, r in enumerate(state.records):
        rows.append(_stage_row(state, seq, r))
    return rows


def _stage_row(state: AssetState, seq: int, r: StageRecord) -> dict[str, Any]:
    return {
        "attempt_id": state.attempt_id, "run_id": state.run_id, "asset_id": state.asset_id,
        "sku": state.sku, "seq": seq, "stage": r.stage, "version": r.version,
        "status": r.status, "error": r.error or None, "options_hash": r.options_hash,
        "options": json.dumps(r.options, sort_keys=True, default=str),
        "inputs": json.dumps(dict(r.inputs), sort_keys=True),
        "outputs": json.dumps(dict(r.outputs), sort_keys=True),
        "started_at": _ts(r.started_at), "duration_s": r.duration_s, "host": r.host,
        "device": r.device, "peak_rss_mb": r.peak_rss_mb,
    }


def _write_committed(store: Storage, run: str, name: str, assets: list[dict[str, Any]],
                     stages: list[dict[str, Any]]) -> str:
    """The stage rows' file, then the asset rows' file (the commit marker), both ``name`` in
    run ``run``'s partitions; returns the asset file's key."""
    if stages:
        store.put(f"catalog/stages/run={run}/{name}.parquet",
                  _parquet_bytes(_to_table(stages, STAGE_SCHEMA)))
    key = f"catalog/assets/run={run}/{name}.parquet"
    store.put(key, _parquet_bytes(_to_table(assets, ASSET_SCHEMA)))
    return key


def write_attempt(store: Storage, asset: dict[str, Any], stages: list[dict[str, Any]]) -> str:
    """Write one attempt's fragments: stages first, then the asset row (the commit marker)."""
    return _write_committed(store, asset["run_id"], asset["attempt_id"], [asset], stages)


def block_name(attempt_ids: Iterable[str]) -> str:
    """The file name (without suffix) of a block of attempts: the same attempts, the same
    name, whatever their order."""
    ids = sorted(attempt_ids)
    digest = hashlib.sha256("\0".join(ids).encode()).hexdigest()[:24]
    return f"b-{digest}"


def write_attempts(store: Storage, assets: list[dict[str, Any]],
                   stages: list[dict[str, Any]]) -> str:
    """Write a block of attempts of one run: every stage row in one file, then every asset row
    in one file (the block's commit marker); returns the asset file's key.

    Call it once the block's outputs are all written: a crash before the asset file's rename
    leaves none of the block committed (its SKUs are converted again by a re-run), and a
    crash after it leaves all of them.
    """
    if not assets:
        raise ValueError("write_attempts needs at least one asset row")
    runs = {a["run_id"] for a in assets}
    if len(runs) != 1:
        raise ValueError(f"a block's attempts must share one run, got {sorted(runs)}")
    return _write_committed(store, runs.pop(), block_name(a["attempt_id"] for a in assets),
                            assets, stages)


def committed_attempts(store: Storage, run_id: str,
                       attempt_ids: Collection[str] | None = None) -> dict[str, dict[str, Any]]:
    """The committed asset rows of run ``run_id`` (only ``attempt_ids`` when given), by attempt
    id, read from the run's fragments whether written one per attempt or one per block.

    For recovery (a retried shard, a task Ray gave up on): it reads every asset fragment of
    the run, which is cheap next to the work it saves, not something to call per SKU.
    """
    wanted = None if attempt_ids is None else set(attempt_ids)
    out: dict[str, dict[str, Any]] = {}
    prefix = f"catalog/assets/run={run_id}/"
    for key in store.list(prefix):
        if not key.endswith(".parquet") or "/.tmp-" in key:
            continue
        name = key.rsplit("/", 1)[-1][:-len(".parquet")]
        if wanted is not None and not name.startswith("b-") and name not in wanted:
            continue  # one attempt's fragment, named by its attempt id: not one asked for
        for row in pq.read_table(pa.BufferReader(store.get(key))).to_pylist():
            if wanted is None or row["attempt_id"] in wanted:
                out.setdefault(row["attempt_id"], row)
    return out


def write_table_fragment(store: Storage, key: str, rows: Iterable[dict[str, Any]],
                         schema: pa.Schema) -> None:
    store.put(key, _parquet_bytes(_to_table(list(rows), schema)))

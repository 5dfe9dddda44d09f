"""Rows that scheduled and bulk flows add to the catalog: their runs, and the files ingested.

Append-only like every other fragment (``fragments.py``)::

    catalog/flow_runs/<flow_run_id>-<n>.parquet   one row per state a flow run reached:
                                                   ``running`` at the start, then
                                                   ``completed`` or ``failed`` with counts
    catalog/ingested/<sha256[:16]>-<id>.parquet    one row per catalog file a bulk-ingest run
                                                   finished with (converted or refused)

The views (``views.py``) show each flow run's latest row (``flow_runs``) and every ingested
file (``ingested``). The ingest flow reads ``ingested`` to know which files it has done, so a
restart after a crash never converts a finished file twice (a file cut off mid-conversion has no
row yet and is picked up again; its finished SKUs are then skipped by identity).
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from typing import Any

import pyarrow as pa

from ..core.storage import Storage
from .fragments import write_table_fragment

FLOW_RUN_SCHEMA = pa.schema([
    pa.field("flow_run_id", pa.string()),
    pa.field("seq", pa.int64()),
    pa.field("flow", pa.string()),            # sync | ingest
    pa.field("status", pa.string()),          # running | completed | failed
    pa.field("parameters", pa.string()),      # JSON
    pa.field("counts", pa.string()),          # JSON, also spread into the columns below
    pa.field("catalogs", pa.int64()),
    pa.field("converted", pa.int64()),
    pa.field("ok", pa.int64()),
    pa.field("failed", pa.int64()),
    pa.field("skipped", pa.int64()),
    pa.field("bad_rows", pa.int64()),
    pa.field("run_ids", pa.string()),         # JSON list of the conversion runs it made
    pa.field("error", pa.string()),
    pa.field("started_at", pa.timestamp("ms", tz="UTC")),
    pa.field("finished_at", pa.timestamp("ms", tz="UTC")),
    pa.field("host", pa.string()),
])

INGESTED_SCHEMA = pa.schema([
    pa.field("ingest_id", pa.string()),       # unique per row (the compaction key)
    pa.field("uri", pa.string()),
    pa.field("sha256", pa.string()),
    pa.field("size", pa.int64()),
    pa.field("status", pa.string()),          # converted | refused
    pa.field("error", pa.string()),
    pa.field("flow_run_id", pa.string()),
    pa.field("run_id", pa.string()),
    pa.field("skus", pa.int64()),
    pa.field("ok", pa.int64()),
    pa.field("failed", pa.int64()),
    pa.field("skipped", pa.int64()),
    pa.field("bad_rows", pa.int64()),
    pa.field("ingested_at", pa.timestamp("ms", tz="UTC")),
])

COUNT_COLUMNS = ("catalogs", "converted", "ok", "failed", "skipped", "bad_rows")


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else int(seconds * 1000)


def record_flow_run(store: Storage, *, flow_run_id: str, seq: int, flow: str, status: str,
                    parameters: dict[str, Any], started_at: float,
                    finished_at: float | None = None, counts: dict[str, int] | None = None,
                    run_ids: list[str] | None = None, error: str | None = None) -> str:
    """Append one row of a flow run's history; returns the fragment's key."""
    counts = dict(counts or {})
    row = {"flow_run_id": flow_run_id, "seq": seq, "flow": flow, "status": status,
           "parameters": json.dumps(parameters, sort_keys=True, default=str),
           "counts": json.dumps(counts, sort_keys=True), "run_ids": json.dumps(run_ids or []),
           "error": error, "started_at": _ms(started_at), "finished_at": _ms(finished_at),
           "host": socket.gethostname(), **{c: counts.get(c) for c in COUNT_COLUMNS}}
    key = f"catalog/flow_runs/{flow_run_id}-{seq}.parquet"
    write_table_fragment(store, key, [row], FLOW_RUN_SCHEMA)
    return key


def record_ingested(store: Storage, *, uri: str, sha256: str, size: int, status: str,
                    flow_run_id: str, run_id: str | None = None, error: str | None = None,
                    counts: dict[str, int] | None = None) -> str:
    """Append the row that marks one catalog file as done; returns the fragment's key."""
    counts = counts or {}
    ingest_id = uuid.uuid4().hex[:12]
    row = {"ingest_id": f"{sha256[:16]}-{ingest_id}", "uri": uri, "sha256": sha256, "size": size, "status": status, "error": error,
           "flow_run_id": flow_run_id, "run_id": run_id, "skus": counts.get("skus"),
           "ok": counts.get("ok"), "failed": counts.get("failed"),
           "skipped": counts.get("skipped"), "bad_rows": counts.get("bad_rows"),
           "ingested_at": _ms(time.time())}
    key = f"catalog/ingested/{row['ingest_id']}.parquet"
    write_table_fragment(store, key, [row], INGESTED_SCHEMA)
    return key

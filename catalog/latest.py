"""Each run's latest attempt per SKU, kept as a small sorted table beside the compacted files.

A run diff compares, SKU by SKU, the latest attempt of two runs: their status, verdict and ~50
metric columns. Computed from the rows, that is a grouping of every attempt of each run by SKU,
a grouping of its verdicts by attempt, a join back to the attempts for their metrics and a
join of the two runs: at 250,000 SKUs a run, over a second of CPU. The answer for one run only
changes when the run's files do, so a compaction writes it down: per run whose attempts and
verdicts are all compacted, ``catalog/derived/latest/run=<run>/<digest>.parquet`` with one row
per SKU of the run (``views.LATEST_COLUMNS`` and the metric columns), sorted by SKU. A diff of
two such runs reads two narrow tables.

The table is derived data, never a source of rows:

* it is named by a digest of the keys of the files it was computed from (``files.latest_key``),
  and a reader uses it only while the run's attempt and verdict files in its snapshot are
  exactly those (``Snapshot.fresh_latest``). A new fragment of the run (an attempt, a verdict),
  or a compaction that replaced the run's files, makes it stale; the reader then computes the
  run from its rows (the same SQL, ``views.latest_sql``) until a compaction writes a new table;
* nothing is updated in place: a new answer is a new file with a new name, and a table that
  can no longer match is deleted by the next build for its run;
* any table can be deleted and made again (``build_latest``; ``assetfactory compact`` builds
  the missing ones), with the same rows.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Sequence

import duckdb

from ..core.storage import open_storage
from .compact import (
    DEFAULT_MEMORY_LIMIT,
    ROW_GROUP_ROWS,
    CompactionBusy,
    _delete_many,
    _esc,
    _lock,
    _with_more_memory,
    duckdb_job,
    publish,
    staging_file,
    sweep_staging,
)
from .files import LATEST_KINDS, LATEST_PREFIX, Snapshot, _list, latest_key, local_paths, snapshot
from .fragments import VERDICT_SCHEMA
from .views import _DUCK_TYPES, _lit, is_metric, latest_sql, quote_ident, read_sql


def build_latest(root: str, runs: Sequence[str] | None = None, *,
                 memory_limit: str = DEFAULT_MEMORY_LIMIT) -> list[str]:
    """Write the latest-attempt table of each run (of ``runs``, or every run) whose attempts
    and verdicts are all compacted and that has no fresh one, and delete its tables that no
    longer match. Returns the keys written.

    A run whose partition another compaction holds is left for that compaction (it builds the
    table when it is done); a run whose files change while its table is computed is left for
    the compaction that changed them."""
    root = str(root) if str(root).startswith("s3://") else os.path.abspath(str(root))
    store = open_storage(root)
    snap = snapshot(root, LATEST_KINDS)
    wanted = None if runs is None else set(runs)
    todo = sorted({f.partition for f in snap.of("assets") if f.partition
                   and (wanted is None or f.partition in wanted)})
    written = []
    for run in todo:
        stale = _stale_tables(snap, run)
        if not stale and (snap.latest_sources(run) is None or snap.fresh_latest(run)):
            continue
        try:
            # the partitions whose compaction changes the run's sources: held while the table
            # is computed, so it is never computed from files a compaction is replacing
            with _lock(store, "assets", run), _lock(store, "verdicts", run):
                key = _with_more_memory(memory_limit, lambda lim, run=run:
                                        _build_run(root, store, run, lim))
        except CompactionBusy:
            continue
        except duckdb.IOException as exc:
            if "No such file" in str(exc) or "No files found" in str(exc):
                continue          # a writer's compaction removed a file: it builds the table
            raise
        if key:
            written.append(key)
    return written


def _stale_tables(snap: Snapshot, run: str) -> list[str]:
    """The run's tables in ``snap`` that do not match its files."""
    files = snap.latest_sources(run)
    current = latest_key(run, [f.key for f in files]) if files is not None else None
    prefix = f"{LATEST_PREFIX}run={run}/"
    return [k for k in snap.derived if k.startswith(prefix) and k != current]


def _build_run(root: str, store, run: str, memory_limit: str) -> str | None:
    snap = snapshot(root, LATEST_KINDS)          # fresh, now that we hold the locks
    _delete_many(store, _stale_tables(snap, run))
    sweep_staging(store, f"{LATEST_PREFIX}run={run}/")   # a crashed build's staged file
    files = snap.latest_sources(run)
    if files is None:
        return None
    key = latest_key(run, [f.key for f in files])
    if key in snap.derived:
        return None
    assets = [f for f in files if f.kind == "assets"]
    verdicts = [f for f in files if f.kind == "verdicts"]
    with duckdb_job(memory_limit, "assetfactory-latest-") as (con, tmpdir):
        a_sql = read_sql(local_paths(root, assets))
        if verdicts:
            v_sql = read_sql(local_paths(root, verdicts))
        else:                    # an untriaged run: no verdict rows
            v_sql = "(SELECT " + ", ".join(
                f"NULL::{_DUCK_TYPES[f.type]} AS {quote_ident(f.name)}"
                for f in VERDICT_SCHEMA) + " WHERE false)"
        types = con.execute(f"DESCRIBE SELECT * FROM {a_sql}").fetchall()
        metrics = sorted(n for n, t, *_ in types if is_metric(n, t))
        body = latest_sql(a_sql, v_sql, f"run_id = {_lit(run)}", metrics)
        tmp_out = staging_file(store, key, tmpdir)
        meta = json.dumps({"sources": sorted(f.key for f in files), "written_at": time.time(),
                           "host": socket.gethostname()})
        # snappy, not zstd: a diff reads ~100 of these columns whole, and decoding them was
        # half its read cost (0.45 -> 0.25 CPU s for two 250,000-row tables; 40 -> 50 MB)
        con.execute(f"COPY (SELECT * FROM {body} ORDER BY sku, attempt_id) "
                    f"TO '{_esc(str(tmp_out))}' (FORMAT parquet, COMPRESSION snappy, "
                    f"ROW_GROUP_SIZE {ROW_GROUP_ROWS}, KV_METADATA {{sources: {_lit(meta)}}})")
        publish(store, tmp_out, key)
    return key


def latest_tables(root: str) -> list[str]:
    """Every latest-attempt table under ``root`` (fresh or not)."""
    store = open_storage(str(root))
    return [k for k, _, _ in _list(store, LATEST_PREFIX) if k.endswith(".parquet")]


__all__ = ["build_latest", "latest_tables"]

"""The ``ingest_prefix`` flow: convert each new catalog file dropped under a folder or S3 prefix.

Suppliers drop catalog files (CSV, TSV, JSONL, JSON, Parquet; their photos beside them) under
one prefix; a schedule (``infra/prefect.yaml``) runs this flow. A file is identified by its URI
and the SHA-256 of its bytes: a file processed before (a row in the catalog's ``ingested``
view) is skipped, so a restart or the next scheduled run never converts it twice; a file
re-uploaded with new content counts as new (and within it, SKUs already converted with the same
identity are skipped by ``convert_catalog``). The row is written only after a file's conversion
finished, so a run killed midway picks that file up again next time.

A file that cannot be read as a catalog at all is recorded as ``refused`` with the reason and
not retried until its content changes. Any other failure (storage down, a lost cluster) fails
the flow run without marking the file, so the next run retries it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from ..catalog.flow_runs import record_ingested
from ..catalog.input import read_catalog
from ..catalog.views import connect
from ..core.errors import InputError
from ..core.storage import open_storage
from .convert import convert_catalog
from .sync import normalise_out, summary_counts, tracked_flow_run

CATALOG_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson", ".json", ".parquet", ".pq")


def list_catalog_files(prefix: str) -> list[tuple[str, str, int]]:
    """``(uri, sha256, size)`` of every catalog file under ``prefix``, in name order.

    Hidden files and names starting with ``.`` or ``_`` (uploads in progress, ``_SUCCESS``
    markers) are ignored.
    """
    found: list[tuple[str, bytes]] = []
    if prefix.startswith("s3://"):
        store = open_storage(prefix.rstrip("/"))
        for key in sorted(store.list("")):
            name = key.rsplit("/", 1)[-1]
            if name.lower().endswith(CATALOG_SUFFIXES) and not name.startswith((".", "_")):
                found.append((store.uri_for(key), store.get(key)))
    else:
        root = Path(prefix).expanduser().resolve()
        if not root.is_dir():
            raise InputError(f"ingest prefix {prefix} is not a folder",
                             fix="give the folder (or s3://bucket/prefix) catalogs are dropped in")
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root).parts
            if (path.is_file() and path.suffix.lower() in CATALOG_SUFFIXES
                    and not any(p.startswith((".", "_")) for p in rel)):
                found.append((str(path), path.read_bytes()))
    return [(uri, hashlib.sha256(data).hexdigest(), len(data)) for uri, data in found]


def processed_files(out: str) -> set[tuple[str, str]]:
    """``(uri, sha256)`` of every catalog file already ingested into ``out``."""
    con = connect(out)
    try:
        return {(u, s) for u, s in con.execute("SELECT uri, sha256 FROM ingested").fetchall()}
    finally:
        con.close()


@flow(name="ingest_prefix", log_prints=True)
def ingest_prefix(prefix: str, out: str = "factory-data", profile: str = "ar",
                  backend: str = "silhouette", input_roots: list[str] | None = None,
                  overrides: dict[str, dict[str, Any]] | None = None,
                  ray_address: str | None = None, num_cpus: int | None = None
                  ) -> dict[str, Any]:
    """Convert every catalog file under ``prefix`` not ingested before; returns per-file
    results and the totals."""
    logger = get_run_logger()
    out = normalise_out(out)
    params = {"prefix": prefix, "out": out, "profile": profile, "backend": backend,
              "input_roots": input_roots or [], "overrides": overrides or {}}
    results: list[dict[str, Any]] = []
    with tracked_flow_run(out, "ingest", params) as run:
        done = processed_files(out)
        files = list_catalog_files(prefix)
        new = [f for f in files if (f[0], f[1]) not in done]
        logger.info("ingest %s: %d catalog files, %d new", prefix, len(files), len(new))
        store = open_storage(out)
        for uri, sha, size in new:
            try:
                read_catalog(uri, input_roots or ())
            except InputError as exc:
                reason = f"{exc.message} (fix: {exc.fix})" if exc.fix else exc.message
                logger.warning("ingest %s: refused: %s", uri, reason)
                record_ingested(store, uri=uri, sha256=sha, size=size, status="refused",
                                flow_run_id=run.flow_run_id, error=reason)
                results.append({"uri": uri, "status": "refused", "error": reason})
                continue
            summary = convert_catalog(catalog=uri, out=out, profile=profile, backend=backend,
                                      ray_address=ray_address, num_cpus=num_cpus,
                                      overrides=overrides, input_roots=input_roots)
            run.add(summary)
            counts = summary_counts(summary)
            record_ingested(store, uri=uri, sha256=sha, size=size, status="converted",
                            flow_run_id=run.flow_run_id, run_id=summary.get("run_id"),
                            counts={**counts, "skus": counts["converted"] + counts["skipped"]})
            results.append({"uri": uri, "status": "converted", "run_id": summary.get("run_id"),
                            **counts})
        run.counts["files_seen"] = len(files)
        run.counts["files_new"] = len(new)
    return {"flow_run_id": run.flow_run_id, "files": results, "counts": run.counts,
            "out": out}

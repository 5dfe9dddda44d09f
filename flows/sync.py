"""The ``sync_catalog`` flow: convert the new and changed rows of a catalog, nothing else.

Built for a schedule (``infra/prefect.yaml`` runs it nightly): the merchant's catalog (a local
file or ``s3://``) is converted with ``convert_catalog``, whose planning skips every SKU whose
identity (``flows/identity.py``: input bytes, the columns stages read, the recipe, the backend
weights) matches a successful attempt. So an unchanged catalog costs one read and one hash per
photo; a new SKU, a retouched photo, a changed ``fov_deg`` or a new stage version is converted.

Each run of this flow adds rows to the catalog's ``flow_runs`` (``catalog/flow_runs.py``):
``running`` when it starts, then ``completed`` with its counts or ``failed`` with the error.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from ..catalog.flow_runs import record_flow_run
from ..core.storage import open_storage
from .convert import convert_catalog


def normalise_out(out: str) -> str:
    """The output root as ``convert_catalog`` uses it: an absolute folder (made) or S3."""
    if out.startswith("s3://"):
        return out.rstrip("/")
    path = Path(out).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


def current_flow_run_id() -> str:
    """Prefect's id of the running flow run (a fresh id outside Prefect)."""
    try:
        from prefect.runtime import flow_run

        return str(flow_run.id or uuid.uuid4())
    except Exception:  # noqa: BLE001 - only ever used as a label
        return str(uuid.uuid4())


class FlowRunLog:
    """The rows one flow run adds to ``flow_runs``; ``finish`` fills the counts."""

    def __init__(self, out: str, flow_name: str, parameters: dict[str, Any]) -> None:
        self.store = open_storage(out)
        self.flow_run_id = current_flow_run_id()
        self.flow = flow_name
        self.parameters = parameters
        self.started = time.time()
        self.counts: dict[str, int] = {}
        self.run_ids: list[str] = []

    def _record(self, seq: int, status: str, error: str | None = None) -> None:
        record_flow_run(self.store, flow_run_id=self.flow_run_id, seq=seq, flow=self.flow,
                        status=status, parameters=self.parameters, started_at=self.started,
                        finished_at=None if status == "running" else time.time(),
                        counts=self.counts, run_ids=self.run_ids, error=error)

    def add(self, summary: dict[str, Any]) -> None:
        """Add one ``convert_catalog`` run's counts."""
        counts = summary_counts(summary)
        for k, v in counts.items():
            self.counts[k] = self.counts.get(k, 0) + v
        self.counts["catalogs"] = self.counts.get("catalogs", 0) + 1
        if summary.get("run_id"):
            self.run_ids.append(summary["run_id"])


@contextmanager
def tracked_flow_run(out: str, flow_name: str, parameters: dict[str, Any]
                     ) -> Iterator[FlowRunLog]:
    """Record the flow run as running, then as completed (counts) or failed (the error)."""
    log = FlowRunLog(out, flow_name, parameters)
    log._record(0, "running")
    try:
        yield log
    except BaseException as exc:
        log._record(1, "failed", f"{type(exc).__name__}: {exc}"[:2000])
        raise
    log._record(1, "completed")


def summary_counts(summary: dict[str, Any]) -> dict[str, int]:
    """converted / ok / failed / skipped / bad_rows from a ``convert_catalog`` summary."""
    counts = summary.get("counts") or {}
    bad = sum(1 for f in summary.get("failures") or [] if f.get("stage") == "catalog")
    ok, failed = int(counts.get("ok", 0)), int(counts.get("failed", 0))
    return {"converted": ok + failed - bad, "ok": ok, "failed": failed - bad,
            "skipped": int(summary.get("skipped", 0)), "bad_rows": bad}


@flow(name="sync_catalog", log_prints=True)
def sync_catalog(catalog: str, out: str = "factory-data", profile: str = "ar",
                 backend: str = "silhouette", input_roots: list[str] | None = None,
                 overrides: dict[str, dict[str, Any]] | None = None,
                 ray_address: str | None = None, num_cpus: int | None = None) -> dict[str, Any]:
    """Convert the rows of ``catalog`` that are new or changed since their last success."""
    logger = get_run_logger()
    out = normalise_out(out)
    params = {"catalog": catalog, "out": out, "profile": profile, "backend": backend,
              "input_roots": input_roots or [], "overrides": overrides or {}}
    with tracked_flow_run(out, "sync", params) as run:
        summary = convert_catalog(catalog=catalog, out=out, profile=profile, backend=backend,
                                  force=False, ray_address=ray_address, num_cpus=num_cpus,
                                  overrides=overrides, input_roots=input_roots)
        run.add(summary)
        logger.info("sync %s: %s", catalog, run.counts)
    return {**summary, "flow_run_id": run.flow_run_id, "sync_counts": run.counts}

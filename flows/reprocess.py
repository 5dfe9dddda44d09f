"""The Prefect flow ``reprocess``: convert selected SKUs again, each new attempt pointing to the
attempt it supersedes.

The selection (``catalog.selection``) is a run's failures, a SQL condition over the ``queue``
view, the open ``rework`` decisions, or any mix. The SKUs are grouped by catalog file, profile,
backend and option overrides; each group is one ``convert_catalog`` subflow (the same machinery
as ``assetfactory run``: one recipe per override set, the same Ray executor, the same catalog
rows and triage), all inside one run id. A SKU that is no longer in its catalog file is
reported with what to do, never converted from stale data.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from ..catalog.input import read_catalog
from ..catalog.selection import ReprocessItem, group_items, select_for_reprocess
from ..catalog.views import Catalog
from ..core.errors import InputError


def plan_reprocess(out: str, *, failures_of: str | None = None, where: str | None = None,
                   reworks: bool = False,
                   overrides: Mapping[str, Mapping[str, Any]] | None = None,
                   catalog: str | None = None) -> dict[str, Any]:
    """What ``reprocess`` would do: the items, their groups and the SKUs it cannot redo."""
    items = select_for_reprocess(out, failures_of=failures_of, where=where, reworks=reworks,
                                 overrides=overrides)
    groups = group_items(items, catalog)
    missing: list[dict[str, str]] = []
    runnable: dict[tuple, list[ReprocessItem]] = {}
    for key, group in groups.items():
        source = key[0]
        try:
            if not source:
                raise InputError("the attempt recorded no catalog file",
                                 "pass the catalog with --catalog PATH")
            parse = read_catalog(source)
            present = {s.sku for s in parse.specs} | {e.sku for e in parse.errors}
        except (InputError, OSError) as exc:
            fix = getattr(exc, "fix", "") or "pass the catalog's current path with --catalog"
            for it in group:
                missing.append({"sku": it.sku, "reason": f"catalog {source or '?'}: {exc}",
                                "fix": f"{fix} (e.g. --catalog PATH)"})
            continue
        ok = [it for it in group if it.sku in present]
        for it in group:
            if it.sku not in present:
                missing.append({"sku": it.sku, "reason": f"not in the catalog file {source} "
                                "any more", "fix": "add the SKU back to the catalog file, or "
                                "pass the file that has it with --catalog"})
        if ok:
            runnable[key] = ok
    return {"items": items, "groups": runnable, "missing": missing}


@flow(name="reprocess", log_prints=True)
def reprocess(out: str = "factory-data", failures_of: str | None = None,
              where: str | None = None, reworks: bool = False,
              overrides: dict[str, dict[str, Any]] | None = None,
              catalog: str | None = None, rules: str | None = None,
              ray_address: str | None = None, num_cpus: int | None = None) -> dict[str, Any]:
    """Re-run the selected SKUs; returns the new run's id, its attempts and what was missing."""
    import time
    import uuid

    from .convert import convert_catalog

    logger = get_run_logger()
    if not out.startswith("s3://"):
        out = str(Path(out).resolve())
    plan = plan_reprocess(out, failures_of=failures_of, where=where, reworks=reworks,
                          overrides=overrides, catalog=catalog)
    run_id = time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:6] + "-rp"
    for m in plan["missing"]:
        logger.warning("sku=%s cannot be reprocessed: %s. Fix: %s", m["sku"], m["reason"],
                       m["fix"])
    summary: dict[str, Any] = {"run_id": run_id, "selected": len(plan["items"]),
                               "missing": plan["missing"], "groups": [], "attempts": []}
    if not plan["groups"]:
        return summary
    import ray

    started_here = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                  "ignore_reinit_error": True}
        address = ray_address or os.environ.get("RAY_ADDRESS") or None
        if address:
            kwargs["address"] = address
        elif num_cpus:
            kwargs["num_cpus"] = num_cpus
        ray.init(**kwargs)
        started_here = True
    try:
        for (source, profile, backend, _), group in plan["groups"].items():
            over = {k: dict(v) for k, v in group[0].overrides.items()}
            logger.info("reprocess %d SKU(s) of %s with profile=%s backend=%s overrides=%s",
                        len(group), source, profile, backend, over)
            convert_catalog(catalog=source, out=out, profile=profile, backend=backend,
                            force=True, overrides=over or None, rules=rules,
                            only_skus=[it.sku for it in group],
                            lineage={it.sku: (it.attempt_id, it.trigger) for it in group},
                            run_id=run_id)
            summary["groups"].append({"catalog": source, "profile": profile, "backend": backend,
                                      "overrides": over, "skus": [it.sku for it in group]})
    finally:
        if started_here:
            ray.shutdown()
    with Catalog(out) as cat:
        summary["attempts"] = cat.rows(
            "SELECT sku, attempt_id, supersedes, trigger, status, failed_stage, error "
            "FROM attempts WHERE run_id = ? ORDER BY sku", [run_id])
    counts: dict[str, int] = {}
    for a in summary["attempts"]:
        counts[a["status"]] = counts.get(a["status"], 0) + 1
    summary["counts"] = counts
    return summary

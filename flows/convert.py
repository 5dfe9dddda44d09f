"""The Prefect flow ``convert_catalog``: a catalog in, assets and catalog rows out.

Prefect runs in its ephemeral mode (no server to install); the heavy work runs on Ray — a
local instance the flow starts, or a cluster named by ``ray_address`` / ``RAY_ADDRESS``.
Prefect tasks are coarse (load, plan, convert, summarise): per-task overhead would dominate at
catalog scale otherwise.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task

from ..catalog.fragments import new_attempt_id, write_attempt
from ..catalog.input import CatalogParse, read_catalog
from ..catalog.summary import run_summary, summary_markdown
from ..catalog.views import connect
from ..core.hashing import sha256_bytes, sha256_obj
from ..core.storage import open_storage, read_ref
from ..core.types import AssetState, SkuSpec
from .preflight import preflight
from .recipe import Recipe, build_recipe
from .runner import AttemptMeta, run_assets_on_ray

log = logging.getLogger("assetfactory.flow")

#: Set by the CLI to show progress; called with each finished SKU's summary dict.
PROGRESS_HOOK: Callable[[dict[str, Any]], None] | None = None
#: Set by the CLI before dispatch with the number of SKUs to convert.
PLAN_HOOK: Callable[[int, int], None] | None = None


def _resolve(uri: str, root: str) -> str:
    if uri.startswith(("s3://", "file://")):
        return uri
    return str(Path(root, uri)) if not os.path.isabs(uri) else uri


def input_hashes(spec: SkuSpec) -> dict[str, str]:
    """Hashes of the SKU's input bytes; unreadable inputs hash to a marker (ingest reports)."""
    out: dict[str, str] = {}
    sources = [(f"image:{i}:{im.view}", im.uri) for i, im in enumerate(spec.images)]
    if spec.mesh_uri:
        sources.append(("mesh", spec.mesh_uri))
    for key, uri in sources:
        try:
            out[key] = sha256_bytes(read_ref(_resolve(uri, spec.catalog_root)))
        except Exception as exc:  # noqa: BLE001 - recorded; the stage gives the real error
            out[key] = f"unreadable:{type(exc).__name__}"
    dims = (spec.width_mm, spec.height_mm, spec.depth_mm, spec.material)
    out["spec"] = sha256_obj({"dims": dims, "views": [(i.view, i.azimuth_deg, i.elevation_deg)
                                                       for i in spec.images]})
    return out


def asset_identity(hashes: dict[str, str], recipe_hash: str) -> str:
    return sha256_obj({"inputs": hashes, "recipe": recipe_hash})[:32]


@task(name="load-catalog", retries=1, retry_delay_seconds=2)
def load_catalog(path: str) -> CatalogParse:
    return read_catalog(path)


@task(name="record-row-errors")
def record_row_errors(parse: CatalogParse, out: str, run_id: str, recipe: Recipe) -> int:
    """Catalog rows that could not even be parsed get their own error rows."""
    store = open_storage(out)
    now = time.time()
    for err in parse.errors:
        from ..catalog.fragments import asset_row
        from ..core.types import StageFailure

        state = AssetState(sku=err.sku, spec=SkuSpec(sku=err.sku, row=err.row), store_uri=out,
                           run_id=run_id, attempt_id=new_attempt_id(),
                           asset_id=sha256_obj({"row-error": err.sku, "row": err.row})[:32],
                           profile=recipe.profile, backend=recipe.backend,
                           failure=StageFailure(err.stage, err.message, err.fix, "row",
                                                "InputError"))
        row = asset_row(state, started_at=now, finished_at=time.time(), recipe=recipe.describe(),
                        recipe_hash=recipe.hash, input_hashes={},
                        catalog_source=parse.source)
        write_attempt(store, row, [])
    return len(parse.errors)


@task(name="plan-assets")
def plan_assets(parse: CatalogParse, out: str, run_id: str, recipe: Recipe,
                force: bool, lineage: Mapping[str, tuple[str, str]] | None = None,
                ) -> tuple[list[AssetState], list[AttemptMeta], list[str]]:
    """Work out each SKU's identity and skip those already converted with the same one."""
    done: set[str] = set()
    if not force:
        con = connect(out)
        try:
            done = {r[0] for r in con.execute(
                "SELECT DISTINCT asset_id FROM attempts WHERE status = 'ok'").fetchall()}
        finally:
            con.close()
    states, metas, skipped = [], [], []
    desc, rhash = recipe.describe(), recipe.hash
    for spec in parse.specs:
        hashes = input_hashes(spec)
        aid = asset_identity(hashes, rhash)
        if aid in done:
            skipped.append(spec.sku)
            continue
        states.append(AssetState(sku=spec.sku, spec=spec, store_uri=out, run_id=run_id,
                                 attempt_id=new_attempt_id(), asset_id=aid,
                                 profile=recipe.profile, backend=recipe.backend))
        sup, why = (lineage or {}).get(spec.sku, (None, None))
        metas.append(AttemptMeta(time.time(), desc, rhash, hashes, parse.source, sup, why))
    return states, metas, skipped


@task(name="convert-assets")
def convert_assets(states: list[AssetState], metas: list[AttemptMeta], recipe: Recipe,
                   ray_address: str | None, num_cpus: int | None) -> list[dict[str, Any]]:
    import ray

    started_here = False
    if not ray.is_initialized():
        address = ray_address or os.environ.get("RAY_ADDRESS") or None
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                  "ignore_reinit_error": True}
        if address:
            kwargs["address"] = address
        elif num_cpus:
            kwargs["num_cpus"] = num_cpus
        ray.init(**kwargs)
        started_here = True
    try:
        metas = [dataclasses.replace(m, started_at=time.time()) for m in metas]
        return run_assets_on_ray(states, recipe, metas, on_done=PROGRESS_HOOK)
    finally:
        if started_here:
            ray.shutdown()


@flow(name="convert_catalog", log_prints=True)
def convert_catalog(catalog: str, out: str = "factory-data", profile: str = "ar",
                    backend: str = "silhouette", force: bool = False,
                    ray_address: str | None = None, num_cpus: int | None = None,
                    overrides: dict[str, dict[str, Any]] | None = None,
                    rules: str | None = None, only_skus: Sequence[str] | None = None,
                    lineage: Mapping[str, tuple[str, str]] | None = None,
                    run_id: str | None = None) -> dict[str, Any]:
    """Convert every SKU of ``catalog`` into assets under ``out``; returns the run summary.

    rules: a triage rules file layered over the defaults for this run's verdicts.
    only_skus, lineage, run_id: for ``reprocess`` (convert only these SKUs; each new attempt
    records the attempt it supersedes and why: {sku: (attempt_id, trigger)}; join a run).
    """
    logger = get_run_logger()
    if not out.startswith("s3://"):
        out = str(Path(out).resolve())
        Path(out).mkdir(parents=True, exist_ok=True)
    run_id = run_id or time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:6]
    # tools and models checked once, before any work; the weights' digests join the identity
    recipe = preflight(build_recipe(profile, backend, overrides))
    triage_rules = _load_triage_rules(rules)      # a bad rules file fails before any work
    parse = load_catalog(catalog)
    if only_skus is not None:
        parse = _only(parse, only_skus)
    logger.info("run %s: %d SKUs, %d bad rows, profile=%s backend=%s", run_id,
                len(parse.specs), len(parse.errors), profile, backend)
    n_bad = record_row_errors(parse, out, run_id, recipe)
    states, metas, skipped = plan_assets(parse, out, run_id, recipe, force, lineage)
    if skipped:
        logger.info("%d SKUs already converted with the same inputs and recipe: skipped",
                    len(skipped))
    if PLAN_HOOK:
        PLAN_HOOK(len(states), len(skipped))
    results = convert_assets(states, metas, recipe, ray_address, num_cpus) if states else []
    if results or n_bad:
        _record_run_verdicts(out, run_id, triage_rules)
        _compact_run(out, run_id)
    summary = run_summary(out, run_id) if (results or n_bad) else {
        "run_id": run_id, "counts": {}, "failures": [], "stages": [], "total": 0}
    summary["skipped"] = len(skipped)
    summary["out"] = out
    try:
        from prefect.artifacts import create_markdown_artifact

        create_markdown_artifact(summary_markdown(summary), key="convert-catalog-summary",
                                 description=f"asset factory run {run_id}")
    except Exception as exc:  # noqa: BLE001 - the summary artifact is a convenience
        logger.warning("could not create the summary artifact: %s", exc)
    return summary


# ---------------------------------------------------------------- triage and reprocess hooks

def _load_triage_rules(path: str | None):
    from ..catalog.rules import load_rules

    return load_rules(path)


def _only(parse: CatalogParse, skus: Sequence[str]) -> CatalogParse:
    """The parse restricted to ``skus`` (their row errors too)."""
    keep = set(skus)
    return dataclasses.replace(parse, specs=[s for s in parse.specs if s.sku in keep],
                               errors=[e for e in parse.errors if e.sku in keep])


@task(name="triage-run")
def _record_run_verdicts(out: str, run_id: str, rules) -> None:
    """Judge the run's attempts under the run's rules (verdict rows; see catalog.triage)."""
    from ..catalog.triage import record_verdicts

    batch = record_verdicts(out, runs=[run_id], rules=rules)
    get_run_logger().info("triage %s (rules %s): %s", run_id, batch.rules_version, batch.counts)


@task(name="compact-run")
def _compact_run(out: str, run_id: str) -> None:
    """Merge the run's fragments (one per attempt) into a few sorted files, so readers open a
    handful of files instead of thousands (see catalog.compact; safe beside readers)."""
    from ..catalog.compact import compact

    report = compact(out, ("assets", "stages", "verdicts"), runs=[run_id])
    get_run_logger().info("compacted run %s: %s", run_id, report.rows)

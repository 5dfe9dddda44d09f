"""The Prefect flow ``convert_catalog``: a catalog in, assets and catalog rows out.

Prefect runs in its ephemeral mode (no server to install); the heavy work runs on Ray — a
local instance the flow starts, or a cluster named by ``ray_address`` / ``RAY_ADDRESS``.

What Prefect sees: the run's inputs checked before any work (an unknown profile or backend, a
catalog that cannot be read, a missing tool or model weights: the run fails with the problem
and the fix, see ``prepare_run``),
``find-converted`` (one catalog query), then one ``convert-shard`` task per shard of the catalog
(``shard_size`` SKUs, default 1,000) with retries: each converts its SKUs, each SKU's identity
worked out first in the task that converts it (and the SKU skipped there if it was converted
with that identity before), so the UI shows progress shard by shard, the CPUs convert from the
first moment instead of waiting on a planning pass, and a run that crashed resumes where it
stopped. Per-SKU work stays inside Ray (``flows/executor.py``): a Prefect task
per SKU or per stage would cost more than a small asset's conversion.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed
from prefect.states import Failed

from ..catalog.fragments import new_attempt_id, write_attempt
from ..catalog.input import CatalogParse, check_file, read_catalog
from ..catalog.summary import run_summary, summary_markdown
from ..core.errors import InputError, MissingWeightsError, OptionsError, PreflightError
from ..core.hashing import sha256_obj
from ..core.storage import open_storage
from ..core.types import AssetState, SkuSpec
from .executor import (
    ExecutorOptions,
    concurrent_runs,
    convert,
    done_identities,
    new_run_id,
    plan,
    ray_session,
    shards,
    task_blocks,
    unrecorded,
    wait_ray_stopped,
)
from .preflight import preflight
from .recipe import PROFILES, Recipe, build_recipe

log = logging.getLogger("assetfactory.flow")

#: Set by the CLI to show progress; called with each finished SKU's summary dict (status "ok",
#: "failed", or "skipped" for a SKU already converted with the same identity).
PROGRESS_HOOK: Callable[[dict[str, Any]], None] | None = None
#: Set by the CLI before dispatch with (SKUs in the catalog, SKUs known to be skipped: 0, as
#: skips are found shard by shard and reported through PROGRESS_HOOK).
PLAN_HOOK: Callable[[int, int], None] | None = None


class RunInputError(ValueError):
    """The run cannot start: a bad profile, backend, option or catalog file. The message is
    one line that names the problem and the fix; nothing was converted."""


def check_names(profile: str, backend: str) -> None:
    """Fail before any work on a profile or backend name that does not exist."""
    from ..models.registry import UnknownBackendError, find

    if profile not in PROFILES:
        raise RunInputError(f"unknown profile {profile!r}; choose one of: "
                            f"{', '.join(sorted(PROFILES))}")
    try:
        find(backend)
    except UnknownBackendError as exc:
        raise RunInputError(str(exc)) from None
    except ImportError as exc:
        raise RunInputError(str(exc)) from None


def _refusal(exc: InputError) -> RunInputError:
    fix = f" Fix: {exc.fix}" if exc.fix else ""
    return RunInputError(f"{exc.message}.{fix}".replace("..", "."))


def check_catalog_file(catalog: str) -> None:
    """The catalog checks that need no parsing (see ``catalog.input.check_file``); raises
    ``RunInputError``. The CLI calls it before Prefect and Ray start; the flow reads the whole
    catalog in ``prepare_run``."""
    if catalog.startswith("s3://"):
        return  # read (and checked) by the flow, through the storage layer
    try:
        check_file(catalog)
    except InputError as exc:
        raise _refusal(exc) from None


def prepare_run(catalog: str, profile: str, backend: str,
                overrides: dict[str, dict[str, Any]] | None,
                execution: dict[str, Any] | None, input_roots: list[str] | None = None
                ) -> tuple[Recipe, ExecutorOptions, CatalogParse]:
    """Everything checked before any SKU is touched; raises ``RunInputError``.

    In order, cheapest first: the profile and backend names, the options, the catalog file,
    then the tools and models the recipe needs (``flows.preflight``), whose weights' digests
    join the recipe and so every asset's identity. ``input_roots``: folders or S3 prefixes
    besides the catalog's folder that its rows may reference files in (``catalog.input``).
    """
    from ..models.learned import MissingDependencyError

    check_names(profile, backend)
    try:
        recipe = build_recipe(profile, backend, overrides)
        options = ExecutorOptions.from_dict(execution)
    except (OptionsError, ValueError, TypeError) as exc:
        raise RunInputError(f"bad option: {exc}") from None
    try:
        parse = read_catalog(catalog, input_roots or ())
    except InputError as exc:
        raise _refusal(exc) from None
    try:
        recipe = preflight(recipe)
    except (OptionsError, PreflightError, MissingWeightsError, MissingDependencyError) as exc:
        raise RunInputError(str(exc)) from None
    return recipe, options, parse


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


@task(name="find-converted", cache_policy=NO_CACHE)
def find_converted(out: str, skus: set[str]) -> dict[str, set[str]]:
    """The identities of the successful attempts already under ``out``, by SKU (one catalog
    query per run; each shard skips its SKUs whose identity is among them)."""
    return done_identities(out, skus)


class Shard:
    """A shard's SKUs, opaque to Prefect (which would otherwise walk and hash every field of
    every SKU to build the task's inputs and cache key)."""

    def __init__(self, index: int, specs: list[SkuSpec], done: dict[str, set[str]],
                 extra: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self.index, self.specs, self.done = index, specs, done
        self.extra = dict(extra or {})  # further asset-row columns by SKU (reprocess lineage)

    def __repr__(self) -> str:
        return f"Shard(index={self.index}, skus={len(self.specs)})"


@task(name="convert-shard", task_run_name="shard-{shard.index:04d}", retries=2,
      retry_delay_seconds=10, cache_policy=NO_CACHE)
def convert_shard(shard: Shard, recipe: Recipe, options: ExecutorOptions, out: str,
                  run_id: str, force: bool, catalog_source: str) -> dict[str, Any]:
    """Convert one shard: each SKU's identity (its inputs read and hashed) worked out in the
    task that converts it, which skips the SKU if it was already converted with it.

    Attempt ids are fixed per run and SKU, and the tasks' blocks by the planned SKUs, so a
    retry converts only the blocks that the failed try did not record, with the same members
    (a late task of the failed try writes the same record files, not a second row).
    """
    from prefect.context import get_run_context

    # each SKU's identity is worked out in the task that converts it (and the SKU skipped
    # there if it was converted with it before): the CPUs convert from the first moment
    p = plan(shard.specs, recipe, out=out, run_id=run_id, force=force, done=shard.done,
             extra=shard.extra, in_tasks=True)
    blocks = task_blocks(p.jobs, recipe, options)
    run_ctx = get_run_context()
    if getattr(getattr(run_ctx, "task_run", None), "run_count", 1) > 1 and blocks:
        blocks = unrecorded(blocks)
    outcome = convert([], recipe, catalog_source=catalog_source, options=options,
                      on_done=PROGRESS_HOOK, blocks=blocks)
    return {"shard": shard.index, "skus": len(shard.specs), "skipped": len(outcome.skipped),
            "converted": len(outcome.summaries), "counts": outcome.counts,
            "lost": outcome.lost}


def run_shards(specs: list[SkuSpec], done: dict[str, set[str]], recipe: Recipe,
               options: ExecutorOptions, out: str, run_id: str, force: bool,
               catalog_source: str, shard_size: int, parallel: int | None = None,
               extra: Mapping[str, Mapping[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Submit the shards as Prefect tasks, ``parallel`` at a time (the next shard's first
    SKUs fill the CPUs that the previous shard's last SKUs leave idle). None: two where the
    cluster can hold two executions at once, else one (``executor.concurrent_runs``: on one
    CPU, or one GPU for a GPU backend, two shards at once would starve each other).
    Results in shard order."""
    if parallel is None:
        parallel = concurrent_runs(recipe, options) if len(specs) > shard_size else 1

    def submit(i: int, part: Sequence[SkuSpec]):
        mine = {s.sku: done[s.sku] for s in part if s.sku in done}
        theirs = {s.sku: extra[s.sku] for s in part if extra and s.sku in extra}
        return convert_shard.submit(Shard(i, list(part), mine, theirs), recipe, options,
                                    out, run_id, force, catalog_source)

    results = bounded_submit(submit, list(enumerate(shards(specs, shard_size))), parallel)
    return sorted(results, key=lambda r: r["shard"])


def bounded_submit(submit: Callable[..., Any], items: Sequence[tuple], parallel: int
                   ) -> list[Any]:
    """Submit ``submit(*item)`` for each item, at most ``parallel`` Prefect futures in flight;
    the next item goes in as soon as *any* running one ends (not the oldest: one slow shard
    must not leave the CPUs idle behind it). Results in the order the futures ended; a
    future that failed raises, as ``result()`` does."""
    results: list[Any] = []
    running: list[Any] = []
    for item in items:
        running.append(submit(*item))
        if len(running) >= max(1, parallel):
            first = next(as_completed(running))
            running.remove(first)
            results.append(first.result())
    for future in as_completed(running):
        results.append(future.result())
    return results


@flow(name="convert_catalog", log_prints=True)
def convert_catalog(catalog: str, out: str = "factory-data", profile: str = "ar",
                    backend: str = "silhouette", force: bool = False,
                    ray_address: str | None = None, num_cpus: int | None = None,
                    overrides: dict[str, dict[str, Any]] | None = None,
                    shard_size: int = 1000,
                    execution: dict[str, Any] | None = None,
                    input_roots: list[str] | None = None,
                    rules: str | None = None, only_skus: Sequence[str] | None = None,
                    lineage: Mapping[str, tuple[str, str]] | None = None,
                    run_id: str | None = None) -> dict[str, Any]:
    """Convert every SKU of ``catalog`` into assets under ``out``; returns the run summary.

    ``execution`` holds ``ExecutorOptions`` fields (timeouts, retries, ...). A run whose
    inputs are unusable ends Failed, with the reason as its message, before any work.
    ``input_roots``: folders or S3 prefixes besides the catalog's folder that its rows may
    reference files in (see ``catalog.input``).
    ``rules``: a triage rules file layered over the defaults for this run's verdicts.
    ``only_skus``, ``lineage``, ``run_id``: for ``reprocess`` (convert only these SKUs; each
    new attempt records the attempt it supersedes and why: {sku: (attempt_id, trigger)}; join
    a run).
    """
    logger = get_run_logger()
    try:
        if shard_size < 1:
            raise RunInputError(f"shard_size must be >= 1, got {shard_size}")
        recipe, options, parse = prepare_run(catalog, profile, backend, overrides, execution,
                                             input_roots)
        triage_rules = _load_triage_rules(rules)  # a bad rules file fails before any work
    except RunInputError as exc:  # the run's message (Prefect UI, CLI), once
        logger.info("run refused: %s", exc)
        return Failed(message=str(exc))
    if only_skus is not None:
        parse = _only(parse, only_skus)
    if not out.startswith("s3://"):
        out = str(Path(out).resolve())
        Path(out).mkdir(parents=True, exist_ok=True)
    run_id = run_id or new_run_id()
    logger.info("run %s: %d SKUs, %d bad rows, profile=%s backend=%s", run_id,
                len(parse.specs), len(parse.errors), profile, backend)
    n_bad = record_row_errors(parse, out, run_id, recipe)
    specs = parse.specs
    done = {} if force else find_converted(out, {s.sku for s in specs})
    if PLAN_HOOK:
        PLAN_HOOK(len(specs), 0)  # skips are reported shard by shard, as they are found
    extra = {sku: {"supersedes": sup, "trigger": why}
             for sku, (sup, why) in (lineage or {}).items()}
    # Ray's shutdown (waiting on its processes) overlaps the compaction and triage below
    with ray_session(ray_address, num_cpus, stop_later=True):
        shard_results = run_shards(specs, done, recipe, options, out, run_id, force,
                                   parse.source, shard_size, extra=extra) if specs else []
    skipped = sum(r["skipped"] for r in shard_results)
    converted = sum(r["converted"] for r in shard_results)
    if skipped:
        logger.info("%d SKUs already converted with the same inputs and recipe: skipped",
                    skipped)
    if converted or n_bad:
        # the run's compaction, triage and summary, each a Prefect task (post_run_steps)
        for name, step in post_run_steps(out, run_id, triage_rules):
            summary = _post_run_step.with_options(name=name)(name, step)
    else:
        summary = {"run_id": run_id, "counts": {}, "failures": [], "stages": [], "total": 0}
    summary["skipped"] = skipped
    summary["out"] = out
    summary["shards"] = len(shard_results)
    try:
        from prefect.artifacts import create_markdown_artifact

        create_markdown_artifact(summary_markdown(summary), key="convert-catalog-summary",
                                 description=f"asset factory run {run_id}")
    except Exception as exc:  # noqa: BLE001 - the summary artifact is a convenience
        logger.warning("could not create the summary artifact: %s", exc)
    wait_ray_stopped()
    return summary


# ---------------------------------------------------------------- triage and reprocess hooks

def _load_triage_rules(path: str | None):
    from ..catalog.rules import RulesError, load_rules

    try:
        return load_rules(path)
    except RulesError as exc:
        raise RunInputError(str(exc)) from None


def _only(parse: CatalogParse, skus: Sequence[str]) -> CatalogParse:
    """The parse restricted to ``skus`` (their row errors too)."""
    keep = set(skus)
    return dataclasses.replace(parse, specs=[s for s in parse.specs if s.sku in keep],
                               errors=[e for e in parse.errors if e.sku in keep])


@task(name="post-run", cache_policy=NO_CACHE)
def _post_run_step(name: str, step: Callable[[], Any]) -> Any:
    """One step of the driver's work after the run's last SKU, as a Prefect task (the UI
    shows each), logged with what it did."""
    result = step()
    if hasattr(result, "rules_version"):  # the triage's batch
        what = f"rules {result.rules_version}: {result.counts}"
    elif hasattr(result, "rows"):  # a compaction's report
        what = f"rows {result.rows}"
    else:
        what = "done"
    get_run_logger().info("%s: %s", name, what)
    return result


def compact_run(out: str, run_id: str, kinds: tuple[str, ...], latest: bool = True):
    """The run's compaction, in the driver: one file per chunk of the run's fragments
    (``RUN_CHUNK_BYTES``), so the driver's memory does not grow with the run (catalog.compact)."""
    from ..catalog.compact import RUN_CHUNK_BYTES, compact

    return compact(out, kinds, runs=[run_id], latest=latest, chunk_bytes=RUN_CHUNK_BYTES)


def judge_run(out: str, run_id: str, rules):
    """The run's verdicts (catalog.triage.record_verdicts, streamed from DuckDB to the file)."""
    from ..catalog.triage import record_verdicts

    return record_verdicts(out, runs=[run_id], rules=rules)


def post_run_steps(out: str, run_id: str, rules) -> list[tuple[str, Callable[[], Any]]]:
    """The driver's work after a run's last SKU, in order: the one list that
    ``convert_catalog`` runs (each step a Prefect task) and ``benchmarks/post_run.py``
    measures. The run's fragments are merged first, so triage reads a handful of files, not
    one per task block (the driver's memory stays flat in the run's size), then its verdicts
    are merged with the run's latest-attempt table; the last step's result is the summary."""
    return [
        ("compact-run", lambda: compact_run(out, run_id, ("assets", "stages"), latest=False)),
        ("triage-run", lambda: judge_run(out, run_id, rules)),
        ("compact-verdicts", lambda: compact_run(out, run_id, ("verdicts",))),
        ("run-summary", lambda: run_summary(out, run_id)),
    ]

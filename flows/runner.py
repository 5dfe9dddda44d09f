"""The one place that maps stages onto execution: in-process, or as Ray tasks.

Stages declare resources as data; this module turns them into Ray options. Each stage of each
asset is one Ray task; the asset's state (references only) flows from one to the next. A stage
failure never raises out of here: it becomes the asset's ``failure`` and the remaining stages
pass the state through, so one SKU's failure never touches another's.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..catalog.fragments import asset_row, stage_rows, write_attempt
from ..core.errors import AssetError
from ..core.stage import failure_record
from ..core.storage import open_storage
from ..core.types import AssetState, Resources, StageFailure
from .recipe import Recipe, StageCall, call_resources

log = logging.getLogger("assetfactory.runner")

INTERNAL_FIX = ("This looks like a bug or an input the factory does not handle yet; "
                "re-run with `assetfactory run --force` after reporting it with this SKU's files.")


def run_stage(call: StageCall, state: AssetState) -> AssetState:
    """Run one stage; never raises for a problem with the asset."""
    if not state.ok:
        return state
    st = call.stage()
    started = time.time()
    try:
        return state.apply(st(state, call.options))
    except AssetError as exc:
        failure = StageFailure(call.name, exc.message, exc.fix, exc.code, type(exc).__name__)
        log.warning("sku=%s stage=%s failed: %s", state.sku, call.name, exc.message)
    except MemoryError:
        failure = StageFailure(call.name, "ran out of memory", "lower the profile's budget or "
                               "give the worker more memory", "oom", "MemoryError")
    except Exception as exc:  # noqa: BLE001 - any other error is this SKU's failure, not the run's
        log.error("sku=%s stage=%s crashed:\n%s", state.sku, call.name, traceback.format_exc())
        failure = StageFailure(call.name, f"{type(exc).__name__}: {exc}", INTERNAL_FIX,
                               "internal", "internal")
    return state.failed(failure, failure_record(st, state, call.options, started,
                                                f"{failure.kind}: {failure.message}"))


def run_asset(state: AssetState, recipe: Recipe) -> AssetState:
    """Run a whole recipe in this process (tests, debugging, one-off SKUs)."""
    for call in recipe.calls:
        state = run_stage(call, state)
    return state


@dataclass(frozen=True)
class AttemptMeta:
    started_at: float
    recipe: dict
    recipe_hash: str
    input_hashes: dict
    catalog_source: str
    supersedes: str | None = None   # reprocess: the attempt this one re-does
    trigger: str | None = None      # reprocess: why (failures / where / rework)


def record_attempt(state: AssetState, meta: AttemptMeta) -> dict[str, Any]:
    """Write the attempt's catalog fragments; return a small summary for the driver."""
    # the asset's own time: from its first stage's start to its last stage's end, not the time
    # a failed asset's pass-through tasks spent queued behind other SKUs' work
    started = min((r.started_at for r in state.records), default=meta.started_at)
    finished = max((r.started_at + r.duration_s for r in state.records), default=time.time())
    row = asset_row(state, started_at=started, finished_at=finished, recipe=meta.recipe,
                    recipe_hash=meta.recipe_hash, input_hashes=meta.input_hashes,
                    catalog_source=meta.catalog_source, supersedes=meta.supersedes,
                    trigger=meta.trigger)
    write_attempt(open_storage(state.store_uri), row, stage_rows(state))
    return {"sku": state.sku, "status": row["status"], "failed_stage": row["failed_stage"],
            "error": row["error"], "fix": row["fix"], "wall_s": row["wall_s"],
            "attempt_id": state.attempt_id}


def ray_options(resources: Resources, name: str = "") -> dict[str, Any]:
    # Stages are pure and their outputs content-addressed, so a stage whose worker died (out of
    # memory, a segfault in a native library) is safely run once more; a stage that raised is
    # not retried (Ray's retry_exceptions stays off): that is the asset's failure.
    opts: dict[str, Any] = {"num_cpus": resources.cpus, "max_retries": 1}
    if resources.gpus:
        opts["num_gpus"] = resources.gpus
    if resources.memory_mb:
        opts["memory"] = int(resources.memory_mb) * 1024 * 1024
    if name:
        opts["name"] = name
    return opts


def gpu_or_cpu(resources: Resources, name: str) -> Resources:
    """A GPU request on a Ray cluster without GPUs would wait forever: ask for none instead
    (the backend then runs on the CPU and flags the fallback, or fails if it may not)."""
    import ray

    if resources.gpus and not ray.cluster_resources().get("GPU", 0):
        log.warning("stage %s asks for %g GPU(s) but the Ray cluster has none: it runs on CPUs",
                    name, resources.gpus)
        return Resources(cpus=resources.cpus, gpus=0.0, memory_mb=resources.memory_mb)
    return resources


def run_assets_on_ray(states: list[AssetState], recipe: Recipe, metas: list[AttemptMeta],
                      on_done: Callable[[dict[str, Any]], None] | None = None) -> list[dict]:
    """Submit every asset's stage chain to Ray and collect the summaries as they finish."""
    import ray

    stage_fn = ray.remote(run_stage)
    record_fn = ray.remote(record_attempt)
    pending: dict[Any, AssetState] = {}
    resources = {c.name: gpu_or_cpu(call_resources(c), c.name) for c in recipe.calls}
    for state, meta in zip(states, metas):
        ref: Any = state
        for call in recipe.calls:
            res = resources[call.name]
            ref = stage_fn.options(**ray_options(res, f"{state.sku}:{call.name}")).remote(call, ref)
        done_ref = record_fn.options(num_cpus=0.25, max_retries=2,
                                     name=f"{state.sku}:record").remote(ref, meta)
        pending[done_ref] = state
    results = []
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        for r in ready:
            state = pending.pop(r)
            try:
                summary = ray.get(r)
            except Exception as exc:  # noqa: BLE001 - a worker died: record it, go on
                log.error("sku=%s: worker failed: %s", state.sku, exc)
                failed = state.failed(StageFailure(
                    "runner", f"the worker running this SKU died: {type(exc).__name__}: "
                    f"{str(exc)[:500]}", "usually memory: lower the budget or give workers "
                    "more memory, then re-run (finished SKUs are skipped)", "worker", "internal"))
                summary = record_attempt(failed, metas[states.index(state)])
            results.append(summary)
            if on_done:
                on_done(summary)
    return results

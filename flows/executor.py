"""The streaming executor: SKUs through the recipe's stages on Ray Data, with bounded work.

Each stage is one Ray Data operator (``Dataset.map``) with the stage's declared resources, so
Ray Data's streaming executor overlaps stages of different SKUs, launches a task only when the
cluster has the CPUs (and memory) the stage declared, and stops launching while the outputs
waiting for the next stage exceed their bound (backpressure). A CPU stage's tasks in flight
are capped at what the cluster runs at once plus ``tasks_ahead`` waiting behind each (handed
to Ray, so a CPU starts its next task as its last ends). However long the catalog, only
the SKUs in those tasks and in the bounded queues are in memory or in the object store.
A generator backend that declares a GPU (``models.base.backend_resources``) runs the generate
stage in a pool of Ray actors instead: each actor builds the backend (loads its weights) once
and serves SKUs until the run ends.

What travels through Ray is an ``AssetState`` (artifact references, metrics, provenance: a few
kilobytes), pickled in a one-column row. Stages run through ``runner.run_stage`` (timeouts,
transient retries, CPU budget); the last operator writes the catalog records of its task's
whole block of SKUs in the worker, once every stage of the block is done and its outputs
written (two fragments per block: ``catalog.fragments.write_attempts``), and hands the driver
one small summary per SKU, so the driver's bookkeeping is one dict lookup per finished SKU.
The blocks are fixed by ``task_blocks`` before the run, so every try of a block (a task Ray runs
again, a shard Prefect runs again) writes the same two files, never a second row for a SKU.

For small assets (every CPU stage's declared memory fits the cluster's memory as often as its
CPUs allow: ``fuse_cpu_stages`` left to None), consecutive CPU stages run in one task and a
task takes up to 32 SKUs: per-stage tasks of ~0.1 s left the CPUs idle between Ray Data's
hand-overs (each hand-over leaves a CPU idle for a few tenths of a second on a busy driver),
and a shard's last tasks are a quarter of the size, so that its end does not leave CPUs
waiting on one long task. Where declared memory would bind, each stage keeps a task of its
own.

Faults:
* a worker that dies (killed, out of memory, a segfault in a native library) fails its task;
  Ray Data runs the task again (``worker_retries``), which is safe because stages are pure and
  their outputs content-addressed, and a block's catalog record is named by its attempt ids
  (a block is recorded whole or not at all: a SKU whose outputs exist but whose block was not
  recorded is converted again by a re-run);
* a stage past its timeout is interrupted in the worker; one stuck in native code is ended by
  its watchdog, which first records the SKU's failure ("timed out after N s; its worker was
  stopped") and leaves a marker on the node so the retried task does not run it again;
* a task that keeps failing is given up (``DataContext.max_errored_blocks``): its SKUs get a
  failure row from the driver, and every other SKU goes on.

``plan`` works out each SKU's identity in parallel (its inputs' bytes are read and hashed in
the workers, not the driver) and leaves out SKUs already converted with the same identity, or,
with ``in_tasks`` (the catalog flow's shards), leaves both to the task that converts the SKU,
so that no planning pass keeps the CPUs waiting before the first stage;
``convert`` runs the planned jobs; ``run_catalog`` is both, for any flow that converts a list
of SKUs (the catalog flow converts shards of it; a reprocess flow can pass its own list).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
import math
import os
import pickle
import signal
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..catalog.fragments import committed_attempts
from ..core.hashing import sha256_obj
from ..core.storage import open_storage
from ..core.types import AssetState, Resources, SkuSpec, StageFailure
from .identity import asset_identity, recipe_identity
from .recipe import Recipe, StageCall
from .runner import (
    AttemptMeta,
    StagePolicy,
    policy_for,
    record_attempt,
    record_attempts,
    run_stage,
    summary_of,
)

log = logging.getLogger("assetfactory.executor")

LOST_FIX = ("usually memory (the stage's worker was killed by the system): give workers more "
            "memory or lower the profile's budget, then re-run; finished SKUs are skipped")


@dataclass(frozen=True)
class ExecutorOptions:
    """How the executor runs a recipe; every field has a default that suits a laptop and a
    cluster alike.

    timeouts: seconds per stage name (``"*"`` for every stage not named); stages not named
        keep ``runner.DEFAULT_TIMEOUTS``.
    retries, backoff_s, max_backoff_s: transient-fault retries inside a stage
        (``runner.StagePolicy``).
    hang_grace_s: how long a timed-out stage may take to unwind before its worker is ended.
    worker_retries: how often a task whose worker died is run again.
    skus_per_task: SKUs per Ray task (a block, recorded in the catalog together); 0 picks
        1-8 (1-32 where all CPU stages run fused) so that each CPU gets at least four tasks
        of a shard (more per task amortises dispatch and records for tiny assets; fewer
        loses less work to a killed run).
    gpu_actors: actors in a GPU backend's pool; 0 = as many as the cluster's GPUs hold.
    fuse_cpu_stages: run consecutive CPU stages of a SKU in one task (declaring the largest
        of their resources) instead of one task per stage: less dispatch for tiny assets,
        less precise packing for large ones. None (the default): fuse where the fused
        resources let as many tasks run at once as the cluster's CPUs do (the declared
        memory does not bind; ``fuse_pays``).
    resources: per-stage replacements of the declared resources (e.g. ``{"uv": Resources(
        cpus=4)}`` to give the unwrapper four processes).
    tasks_ahead: tasks handed to Ray beyond those the cluster can run at once, per place a
        CPU stage's task fits (1: one waits behind each running task, so a CPU starts its next
        task the moment its last ends). Ray Data's resource-budget backpressure, which holds a
        task back until the one before it has ended and the driver's loop has noticed (a few
        tenths of a second of idle CPU at every task boundary), is then off; this cap bounds
        the work in flight instead. 0: Ray Data's own policies, as they come.
    """

    timeouts: Mapping[str, float | None] = field(default_factory=dict)
    retries: int = 8
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    hang_grace_s: float = 10.0
    worker_retries: int = 2
    skus_per_task: int = 0
    gpu_actors: int = 0
    fuse_cpu_stages: bool | None = None
    resources: Mapping[str, Resources] = field(default_factory=dict)
    tasks_ahead: int = 1

    def __post_init__(self) -> None:
        if (self.worker_retries < 0 or self.skus_per_task < 0 or self.gpu_actors < 0
                or self.tasks_ahead < 0):
            raise ValueError(
                "worker_retries, skus_per_task, gpu_actors and tasks_ahead must be >= 0")
        for name, t in self.timeouts.items():
            if t is not None and not t > 0:
                raise ValueError(f"timeout for {name!r} must be > 0 seconds, got {t}")
        StagePolicy(retries=self.retries, backoff_s=self.backoff_s,
                    max_backoff_s=self.max_backoff_s, hang_grace_s=self.hang_grace_s)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> ExecutorOptions:
        """From plain values (a flow parameter or a config file); unknown keys are an error."""
        values = dict(values or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown execution option(s) {unknown}; known: {sorted(known)}")
        if "resources" in values:
            values["resources"] = {k: v if isinstance(v, Resources) else Resources(**v)
                                   for k, v in values["resources"].items()}
        return cls(**values)

    def policy(self, stage: str) -> StagePolicy:
        return policy_for(stage, self.timeouts, StagePolicy(
            retries=self.retries, backoff_s=self.backoff_s, max_backoff_s=self.max_backoff_s,
            hang_grace_s=self.hang_grace_s))


@dataclass(frozen=True)
class Job:
    """One SKU to convert: its state (attempt and asset ids set) and its identity's inputs."""

    state: AssetState
    input_hashes: Mapping[str, str]
    extra: Mapping[str, Any] = field(default_factory=dict)
    #: CPU seconds its stages used in the worker processes (not in their child processes);
    #: reported to the driver beside the stages' wall time
    cpu_s: float = 0.0
    #: identities of the SKU's earlier successful attempts, for a job whose identity is
    #: worked out in the task that converts it (``plan(in_tasks=True)``: its ``asset_id`` is
    #: empty until then); a job whose identity is among them is skipped there
    done: tuple[str, ...] = ()
    #: set in the task: the SKU was already converted with this identity (nothing recorded)
    skip: bool = False


@dataclass(frozen=True)
class Plan:
    jobs: list[Job]
    skipped: list[str]


@dataclass
class Outcome:
    """What a conversion did; ``summaries`` holds one small dict per SKU (see
    ``runner.summary_of``), in the order they finished."""

    summaries: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    lost: int = 0

    @property
    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.summaries:
            out[s["status"]] = out.get(s["status"], 0) + 1
        return out


# ---------------------------------------------------------------------------- Ray session


def _init_kwargs(address: str | None, num_cpus: int | None,
                 num_gpus: int | None) -> dict[str, Any]:
    """``ray.init``'s arguments for a session: a cluster (``address`` or ``RAY_ADDRESS``) or
    a local instance of ``num_cpus`` / ``num_gpus``."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                              "ignore_reinit_error": True,
                              "logging_level": logging.WARNING}
    if address:
        kwargs["address"] = address
        # a cluster's workers start on demand, on any node: each imports the stages as it
        # starts (a local instance is warmed as it starts instead: ``_warm_session``)
        kwargs["runtime_env"] = {"worker_process_setup_hook":
                                 "assetfactory.flows.executor.warm_worker"}
    else:
        if num_cpus:
            kwargs["num_cpus"] = num_cpus
        if num_gpus is not None:
            kwargs["num_gpus"] = num_gpus
        _quiet_log_monitor()
    return kwargs


#: Ray's log monitor, for a local instance: it lists the session's log folder every 0.5 s
#: (``LOG_NAME_UPDATE_INTERVAL_S``), and, below ``RAY_LOG_MONITOR_MANY_FILES_THRESHOLD``
#: files, on every 0.1 s pass as well. Its only reader is a driver with ``log_to_driver``,
#: which the factory's is not (each stage's output is in its catalog record and the worker's
#: log file), so a local instance's monitor looks for new files every 5 s.
LOG_MONITOR_ENV = {"RAY_LOG_MONITOR_MANY_FILES_THRESHOLD": "0", "LOG_NAME_UPDATE_INTERVAL_S": "5"}


def _quiet_log_monitor() -> None:
    """``LOG_MONITOR_ENV`` in this process's environment, which the local instance's log
    monitor inherits; a value the user set is kept."""
    for name, value in LOG_MONITOR_ENV.items():
        os.environ.setdefault(name, value)


#: A Ray start begun by ``early_ray`` and not yet taken over by a ``ray_session``.
_EARLY: dict[str, Any] = {}
#: The thread stopping the last session that ``ray_session(stop_later=True)`` started.
_STOPPING: list[threading.Thread] = []


class _NotMainThread(logging.Filter):
    """Drops ``ray.init``'s notice that a thread other than the main one cannot set its
    SIGTERM handler (``early_ray`` sets the same handler from the main thread)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("SIGTERM handler is not set")


@contextlib.contextmanager
def early_ray(address: str | None = None, num_cpus: int | None = None) -> Iterator[None]:
    """Start Ray (as ``ray_session(address, num_cpus)`` would) in a thread while the body
    starts Prefect, so that Ray's processes and warm workers come up beside Prefect's
    temporary server instead of after it; the body's ``ray_session`` with the same arguments
    takes the instance over (and shuts it down). An instance the body never took over (a run
    refused before its conversion) is shut down on exit. Nothing is started when Ray is
    already initialised."""
    import ray

    if ray.is_initialized() or _EARLY:
        yield
        return
    wait_ray_stopped()
    kwargs = _init_kwargs(address, num_cpus, None)
    if threading.current_thread() is threading.main_thread():
        # what ray.init does when called from the main thread: a SIGTERM ends the driver
        # through its exit handlers (which stop the local instance)
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(signum))
    notice = _NotMainThread()
    worker_log = logging.getLogger("ray._private.worker")
    worker_log.addFilter(notice)
    outcome: dict[str, BaseException] = {}
    started, release = threading.Event(), threading.Event()

    def start() -> None:
        try:
            ray.init(**copy.deepcopy(kwargs))  # ray.init fills in the runtime_env it is given
            if "address" not in kwargs:
                _start_warming()
        except BaseException as exc:  # noqa: BLE001 - handed to the session that takes it
            outcome["error"] = exc
        finally:
            started.set()
        # Ray's processes are started with PR_SET_PDEATHSIG, which fires when the *thread*
        # that started them ends: this one lives until the session has shut Ray down
        release.wait()

    thread = threading.Thread(target=start, name="ray-start", daemon=True)
    _EARLY.update(started=started, release=release, kwargs=kwargs, outcome=outcome)
    thread.start()
    try:
        yield
    finally:
        left = _take_early()
        worker_log.removeFilter(notice)
        if left is not None:
            _stop(left)


def _take_early() -> dict[str, Any] | None:
    """The pending early start, once ``ray.init`` has returned (None when there is none)."""
    if not _EARLY:
        return None
    early = dict(_EARLY)
    _EARLY.clear()
    early["started"].wait()
    return early


def _stop(early: dict[str, Any] | None) -> None:
    """Shut Ray down, then let the thread that started it (``early_ray``) end."""
    import ray

    await_warm()
    try:
        if ray.is_initialized():
            ray.shutdown()
    finally:
        if early is not None:
            early["release"].set()


def wait_ray_stopped() -> None:
    """Wait until the session that ``ray_session(stop_later=True)`` left stopping is down."""
    while _STOPPING:
        _STOPPING.pop().join()


@contextlib.contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None,
                num_gpus: int | None = None, stop_later: bool = False) -> Iterator[None]:
    """Ray for the body: the running one, a cluster (``address`` or ``RAY_ADDRESS``), or a
    local instance started here (or by an enclosing ``early_ray``) and shut down after.

    ``stop_later``: the shutdown (mostly waiting on Ray's processes to exit, ~1.5 s) runs in
    a thread while the caller goes on with work that needs no Ray (compaction, triage); the
    caller then calls ``wait_ray_stopped`` before it returns. Any later session waits for it
    too."""
    import ray

    kwargs = _init_kwargs(address, num_cpus, num_gpus)
    early = _take_early()
    if early is not None and (early["outcome"] or early["kwargs"] != kwargs):
        _stop(early)  # started for other arguments, or failed: ray.init below says why
        early = None
    if early is None:
        if ray.is_initialized():
            yield
            return
        wait_ray_stopped()
        ray.init(**kwargs)
        if "address" not in kwargs:
            _start_warming()
    try:
        yield
    finally:
        if stop_later:
            stopper = threading.Thread(target=_stop, args=(early,), name="ray-stop")
            _STOPPING.append(stopper)
            stopper.start()
        else:
            _stop(early)


#: The thread warming the local instance a session started (``_warm_session``).
_WARMING: list[threading.Thread] = []


def _start_warming() -> None:
    thread = threading.Thread(target=_warm_session, name="ray-warm", daemon=True)
    _WARMING.append(thread)
    thread.start()


def await_warm() -> None:
    """Wait until the local instance's warm-up (``_warm_session``) is done, if one runs."""
    while _WARMING:
        _WARMING.pop().join()


def _warm_session() -> None:
    """Bring up, right after a local instance starts and while the driver starts Prefect and
    reads the catalog, what the first conversion would otherwise wait for: a worker per CPU
    with every stage imported (a task each running ``warm_worker``: Ray starts workers for a
    job's runtime environment only when a task needs one, so a set-up hook ran only once the
    first conversion's tasks were waiting), then Ray Data's statistics and autoscaling actors
    (an execution of one row; each actor is a process of its own that imports Ray Data, ~3 CPU
    s on this machine's cores). Measured alone (2 CPUs, a map of sleeping tasks): the first
    task started 8-13 s after its execution began on a fresh instance, 0.4 s after this.
    Failures are left to the conversion, which would meet them too."""
    try:
        import ray
        import ray.data

        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        task = ray.remote(num_cpus=1, max_retries=0)(warm_worker)
        ray.get([task.remote() for _ in range(cpus)])
        _data_context()
        for _ in ray.data.from_items([{"warm": 0}]).map(_warm_row).iter_rows():
            pass
    except Exception as exc:  # noqa: BLE001 - a warm-up only; the conversion reports
        log.debug("warming the Ray session failed: %s", exc)


def _warm_row(row: dict[str, Any]) -> dict[str, Any]:
    return row


def warm_worker() -> None:
    """Import every stage's module (and so the geometry, numba and rendering libraries beneath
    them) in a Ray worker before its first SKU, while the driver is still starting Prefect and
    reading the catalog, instead of in the first task each worker runs, where seconds of
    imports left its CPU idle: in a task per CPU of a local instance (``_warm_session``), or
    as Ray's start hook of each worker on a cluster. A module that cannot be imported is left
    for its stage to report."""
    import importlib

    from .recipe import STAGE_ORDER

    for name in STAGE_ORDER:
        with contextlib.suppress(Exception):
            importlib.import_module(f"assetfactory.tasks.{name}")


class _StarvationNotice(logging.Filter):
    """Drops Ray Data's "Cluster resources are not enough to run any task ... may hang forever"
    while the resource-budget policy is off (``tasks_ahead``): its allocator then counts the
    tasks of a shard that runs beside this one against this one's share, but nothing holds
    this one's tasks back, so it is not starved (the fits are checked before the run:
    ``concurrent_runs``, the declared memory)."""

    active = False

    def filter(self, record: logging.LogRecord) -> bool:
        return not (self.active and record.getMessage().startswith(
            "Cluster resources are not enough to run any task"))


_STARVATION_NOTICE = _StarvationNotice()


def _data_context(tasks_ahead: int = 0):
    """Ray Data settings for the factory: quiet, and a failed block is its SKUs' failure,
    not the run's. ``tasks_ahead`` > 0: without the resource-budget backpressure policy (the
    conversion caps its tasks in flight itself: ``ExecutorOptions.tasks_ahead``)."""
    import ray.data
    from ray.data._internal.execution import backpressure_policy as bp

    ctx = ray.data.DataContext.get_current()
    budget_off = tasks_ahead > 0
    ctx.set_config(bp.ENABLED_BACKPRESSURE_POLICIES_CONFIG_KEY, [
        p for p in bp.ENABLED_BACKPRESSURE_POLICIES
        if not (budget_off and p is bp.ResourceBudgetBackpressurePolicy)])
    _STARVATION_NOTICE.active = budget_off
    starved = logging.getLogger("ray.data._internal.execution.resource_manager")
    if _STARVATION_NOTICE not in starved.filters:
        starved.addFilter(_STARVATION_NOTICE)
    ctx.enable_progress_bars = False
    ctx.enable_operator_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.enable_auto_log_stats = False
    ctx.max_errored_blocks = -1
    _scheduling_wait(tasks_ahead)
    # no thread per task reading the worker's memory map every second for Ray Data's metrics
    ctx.memory_usage_poll_interval_s = None
    with contextlib.suppress(AttributeError):
        ctx.issue_detectors_config.detectors = []
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    # "progress bars disabled": the CLI shows its own, per SKU
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)
    return ctx


#: How long Ray Data's scheduling loop waits for tasks to finish before its next pass, when
#: tasks wait in Ray behind the running ones (``tasks_ahead``): a CPU then starts its next
#: task as its last ends whatever the loop does, and the loop only refills that queue and
#: hands finished blocks on. Ray Data's own 0.1 s made ~10 passes a second on the driver
#: (each a ``ray.wait`` on every running task and an update of every operator's usage and
#: budgets): half of the driver's CPU while tasks run (measured: 1.05 CPU s in 30 s of an
#: execution whose tasks sleep, 0.56 with 0.5 s).
SCHEDULING_WAIT_S = 0.5


def _scheduling_wait(tasks_ahead: int) -> None:
    """Ray Data's wait for finished tasks (a module constant it reads on every pass; no
    setting): ``SCHEDULING_WAIT_S`` with ``tasks_ahead``, its own 0.1 s without (the loop
    then dispatches every task, so it must hear of a free CPU at once)."""
    from ray.data._internal.execution import streaming_executor_state as state

    if not hasattr(state, "WAIT_FOR_TASK_COMPLETION_TIMEOUT_S"):
        return  # another Ray Data: its own pace
    state.WAIT_FOR_TASK_COMPLETION_TIMEOUT_S = SCHEDULING_WAIT_S if tasks_ahead > 0 else 0.1


def _cluster(resource: str) -> float:
    import ray

    return float(ray.cluster_resources().get(resource, 0.0))


# ---------------------------------------------------------------------------- planning


def _identity(spec: SkuSpec, recipe: Recipe, recipe_id: str) -> tuple[str, dict[str, str]]:
    """(asset id, input hashes) of one SKU: ``flows.identity`` says what they cover."""
    return asset_identity(spec, recipe, recipe_id)


def _recipe_id(recipe: Recipe) -> str:
    return recipe_identity(recipe)


def done_identities(out: str, skus: Collection[str] | None = None) -> dict[str, set[str]]:
    """SKU -> identities of its successful attempts under ``out`` (what a run may skip)."""
    from ..catalog.views import connect

    con = connect(out)
    try:
        rows = con.execute("SELECT DISTINCT sku, asset_id FROM attempts "
                           "WHERE status = 'ok'").fetchall()
    finally:
        con.close()
    wanted = None if skus is None else set(skus)
    done: dict[str, set[str]] = {}
    for sku, aid in rows:
        if wanted is None or sku in wanted:
            done.setdefault(sku, set()).add(aid)
    return done


#: CPUs a planning task declares (``plan``)
PLAN_CPUS = 0.5


def _identify_batch(batch: dict[str, Any], recipe: Recipe, recipe_id: str) -> dict[str, Any]:
    aids, hashes = [], []
    for blob in batch["spec"]:
        aid, h = _identity(pickle.loads(blob), recipe, recipe_id)
        aids.append(aid)
        hashes.append(json.dumps(h, sort_keys=True))
    return {"i": batch["i"], "aid": aids, "hashes": hashes}


def attempt_id_for(run_id: str, sku: str) -> str:
    """The attempt id of ``sku`` in run ``run_id``: one attempt per SKU per run, named so that
    a retried shard (or a driver that lost track) finds what an earlier try recorded."""
    return f"{run_id}-{sha256_obj(['attempt', sku])[:16]}"


def plan(specs: Sequence[SkuSpec], recipe: Recipe, *, out: str, run_id: str,
         force: bool = False, done: Mapping[str, Collection[str]] | None = None,
         extra: Mapping[str, Mapping[str, Any]] | None = None,
         local_below: int = 64, in_tasks: bool = False) -> Plan:
    """Jobs for the SKUs that need converting; the others (same identity as a successful
    attempt, unless ``force``) are listed as skipped.

    Identities need every input's bytes, so they are computed in Ray tasks (in this process
    for fewer than ``local_below`` SKUs). ``done`` (SKU -> identities) is read from the
    catalog under ``out`` when not given.

    ``in_tasks``: work out nothing here; each job carries its SKU's earlier identities
    (``Job.done``) and the task that converts the SKU works out its identity first and skips
    it there if it is among them (``convert`` reports it in ``Outcome.skipped``). The CPUs
    then start converting at once instead of waiting for a planning pass over the shard, and
    the inputs' bytes are read by the task that reads them anyway.
    """
    recipe_id = _recipe_id(recipe)
    if not force and done is None:
        done = done_identities(out, {s.sku for s in specs})
    done = {} if force else done or {}
    if in_tasks:
        return Plan([Job(AssetState(sku=s.sku, spec=s, store_uri=out, run_id=run_id,
                                    attempt_id=attempt_id_for(run_id, s.sku),
                                    profile=recipe.profile, backend=recipe.backend), {},
                         dict((extra or {}).get(s.sku, {})),
                         done=tuple(sorted(done.get(s.sku, ()))))
                     for s in specs], [])
    if len(specs) < local_below:
        ids = [_identity(s, recipe, recipe_id) for s in specs]
    else:
        import ray.data

        await_warm()
        _data_context()
        rows = [{"i": i, "spec": pickle.dumps(s)} for i, s in enumerate(specs)]
        ids = [None] * len(specs)  # type: ignore[list-item]
        cpus = int(max(1.0, _cluster("CPU")))
        blocks = max(1, min(len(rows), 4 * cpus))
        # as many tasks at once as CPUs: the workers already started (and warmed by
        # ``warm_worker``) plan, instead of more started for planning alone
        ds = ray.data.from_items(rows, override_num_blocks=blocks).map_batches(
            _identify_batch, fn_kwargs={"recipe": recipe, "recipe_id": recipe_id},
            batch_size=None, num_cpus=PLAN_CPUS, batch_format="numpy",
            compute=ray.data.TaskPoolStrategy(size=cpus))
        for r in ds.iter_rows():
            ids[int(r["i"])] = (str(r["aid"]), json.loads(r["hashes"]))
        missing = [specs[i].sku for i, v in enumerate(ids) if v is None]
        if missing:
            raise RuntimeError(f"identity planning lost {len(missing)} SKUs "
                               f"(first: {missing[:3]}); re-run")
    jobs, skipped = [], []
    for spec, (aid, hashes) in zip(specs, ids):
        if aid in done.get(spec.sku, ()):
            skipped.append(spec.sku)
            continue
        state = AssetState(sku=spec.sku, spec=spec, store_uri=out, run_id=run_id,
                           attempt_id=attempt_id_for(run_id, spec.sku), asset_id=aid,
                           profile=recipe.profile, backend=recipe.backend)
        jobs.append(Job(state, hashes, dict((extra or {}).get(spec.sku, {}))))
    return Plan(jobs, skipped)


# ---------------------------------------------------------------------------- segments


@dataclass(frozen=True)
class Segment:
    """Consecutive stages run by one Ray Data operator."""

    calls: tuple[StageCall, ...]
    resources: Resources
    actor: bool = False   # a GPU backend's actor pool

    @property
    def name(self) -> str:
        return "+".join(c.name for c in self.calls)


def _max_resources(a: Resources, b: Resources) -> Resources:
    return Resources(max(a.cpus, b.cpus), max(a.gpus, b.gpus), max(a.memory_mb, b.memory_mb))


def generate_backend_resources(call: StageCall) -> Resources:
    """What the recipe's generator backend declares (None-safe for toy recipes)."""
    from ..models.base import backend_resources
    from ..tasks.generate import backend_config

    options = call.options
    return backend_resources(backend_config(options.backend, options))


def gpu_or_cpu(resources: Resources, name: str, cluster_gpus: float) -> Resources:
    """A GPU request on a Ray cluster without GPUs would wait forever: ask for none instead
    (the backend then runs on the CPU and flags the fallback, or fails if it may not)."""
    if resources.gpus and not cluster_gpus:
        log.warning("stage %s asks for %g GPU(s) but the Ray cluster has none: it runs on CPUs",
                    name, resources.gpus)
        return dataclasses.replace(resources, gpus=0.0)
    return resources


def segments(recipe: Recipe, options: ExecutorOptions,
             cluster_gpus: float | None = None,
             cluster: Mapping[str, float] | None = None) -> list[Segment]:
    """The recipe as operators: one per stage (or fused CPU runs), the backend's pool apart.

    A backend that declares a GPU gets an actor pool (weights loaded once per actor); on a
    cluster without GPUs (``cluster_gpus`` 0; None: ask Ray) the pool's actors ask for CPUs
    only, and still load the weights once each. ``fuse_cpu_stages`` None is decided by
    ``fuse_pays`` on ``cluster`` (resource totals; None: ask Ray).
    """
    if options.fuse_cpu_stages is None:
        apart = segments(recipe, dataclasses.replace(options, fuse_cpu_stages=False),
                         cluster_gpus, cluster)
        fused = segments(recipe, dataclasses.replace(options, fuse_cpu_stages=True),
                         cluster_gpus, cluster)
        return fused if fuse_pays(fused, cluster) else apart
    out: list[Segment] = []
    for call in recipe.calls:
        res = options.resources.get(call.name, call.stage().resources)
        actor = False
        if call.name == "generate" and hasattr(call.options, "backend"):
            backend = generate_backend_resources(call)
            actor = backend.gpus > 0
            if actor:
                gpus = _cluster("GPU") if cluster_gpus is None else cluster_gpus
                res = gpu_or_cpu(backend, call.name, gpus)
            else:
                res = _max_resources(res, backend)
        seg = Segment((call,), res, actor)
        if (options.fuse_cpu_stages and out and not actor and not out[-1].actor
                and res.gpus == 0 and out[-1].resources.gpus == 0):
            prev = out.pop()
            seg = Segment(prev.calls + (call,), _max_resources(prev.resources, res))
        out.append(seg)
    return out


# ---------------------------------------------------------------------------- in the worker


@dataclass(frozen=True)
class RunContext:
    """What every row of a conversion shares (sent to each operator once, not per row)."""

    recipe_desc: dict
    recipe_hash: str
    catalog_source: str
    options: ExecutorOptions
    #: the recipe, for jobs whose identity is worked out in their task (``plan(in_tasks=)``)
    recipe: Recipe | None = None


_HUNG_DIR = Path(tempfile.gettempdir()) / "assetfactory-hung"


def _hung_marker(attempt_id: str) -> Path:
    return _HUNG_DIR / f"{attempt_id}.json"


def _meta(job: Job, ctx: RunContext) -> AttemptMeta:
    return AttemptMeta(time.time(), ctx.recipe_desc, ctx.recipe_hash, dict(job.input_hashes),
                       ctx.catalog_source, job.extra)


def _on_hang(job: Job, ctx: RunContext) -> Callable[[AssetState], None]:
    """Record the stuck stage's failure, mark it on this node, and end the worker."""
    def hang(failed: AssetState) -> None:
        try:
            f = failed.failure
            assert f is not None
            _HUNG_DIR.mkdir(parents=True, exist_ok=True)
            _hung_marker(failed.attempt_id).write_text(json.dumps(dataclasses.asdict(f)))
            quick = StagePolicy(retries=2, backoff_s=0.5)
            record_attempt(failed, _meta(job, ctx), quick)
            log.error("sku=%s stage=%s: %s", failed.sku, f.stage, f.message)
        finally:
            os._exit(75)  # the worker ends; Ray frees its CPUs and retries what it held

    return hang


def _identified(job: Job, ctx: RunContext) -> Job:
    """``job`` with its identity (asset id, input hashes), worked out here if the driver left
    it to the task; marked ``skip`` when the SKU was already converted with it."""
    if job.state.asset_id or job.skip or ctx.recipe is None:
        return job
    try:
        aid, hashes = _identity(job.state.spec, ctx.recipe, ctx.recipe_hash)
    except Exception as exc:  # noqa: BLE001 - the SKU's failure, not its task's
        return dataclasses.replace(job, state=job.state.failed(StageFailure(
            "ingest", f"its identity could not be worked out: {type(exc).__name__}: {exc}",
            "check the SKU's input references in the catalog, then re-run", "input",
            type(exc).__name__)))
    return dataclasses.replace(job, state=dataclasses.replace(job.state, asset_id=aid),
                               input_hashes=hashes, skip=aid in job.done)


def _run_segment(job: Job, seg: Segment, ctx: RunContext) -> Job:
    job = _identified(job, ctx)
    if job.skip:
        return job
    state = job.state
    marker = _hung_marker(state.attempt_id)
    if state.ok and marker.exists():  # this SKU's stage hung an earlier try of this task
        f = StageFailure(**json.loads(marker.read_text()))
        state = state.failed(f)
    cpu = time.process_time()
    for call in seg.calls:
        if not state.ok:
            break
        state = run_stage(call, state, ctx.options.policy(call.name), _on_hang(job, ctx),
                          cpus=seg.resources.cpus)
    return dataclasses.replace(job, state=state,
                               cpu_s=job.cpu_s + time.process_time() - cpu)


def _row_fn(seg: Segment, ctx: RunContext) -> Callable[[dict], dict]:
    def fn(row: dict[str, Any]) -> dict[str, Any]:
        job = _run_segment(pickle.loads(row["job"]), seg, ctx)
        return {"sku": row["sku"], "job": pickle.dumps(job)}

    return fn


def _single_key(state: AssetState) -> str:
    """Where an attempt recorded on its own is (the watchdog's record of a hung stage, the
    driver's record of a SKU whose task Ray gave up on)."""
    return f"catalog/assets/run={state.run_id}/{state.attempt_id}.parquet"


def record_block(jobs: Sequence[Job], ctx: RunContext) -> list[dict[str, Any]]:
    """Record a finished block's SKUs together (one stage file, one asset file); a summary per
    SKU. A SKU that was already recorded on its own (its stage hung in an earlier try of the
    task, on this node or another, and the watchdog wrote its failure) keeps that record and
    is left out of the block (one existence check per SKU: a stat, or a HEAD on S3)."""
    todo, alone = [], {}
    for job in jobs:
        s = job.state
        if job.skip:  # already converted with this identity: nothing to record
            alone[s.attempt_id] = {"sku": s.sku, "status": "skipped", "failed_stage": None,
                                   "error": None, "attempt_id": s.attempt_id}
            continue
        store = open_storage(s.store_uri)
        if store.exists(_single_key(s)):
            alone[s.attempt_id] = summary_of(_read_single(store, s), s)
        else:
            todo.append(job)
    written = iter(record_attempts([(j.state, _meta(j, ctx)) for j in todo],
                                   ctx.options.policy("record")) if todo else ())
    out = []
    for job in jobs:
        summary = alone.get(job.state.attempt_id) or next(written)
        summary["stage_cpu_s"] = job.cpu_s
        out.append(summary)
    return out


def _read_single(store: Any, state: AssetState) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    return pq.read_table(pa.BufferReader(store.get(_single_key(state)))).to_pylist()[0]


def _record_fn(ctx: RunContext) -> Callable[[dict], dict]:
    def fn(batch: dict[str, Any]) -> dict[str, Any]:
        jobs = [pickle.loads(b) for b in batch["job"]]
        summaries = record_block(jobs, ctx)
        return {"sku": [j.state.sku for j in jobs],
                "summary": [json.dumps(s, default=str) for s in summaries]}

    return fn


class BackendActor:
    """A GPU backend's pool member: builds the backend once, then runs its segment per row.

    A backend that cannot be built (weights missing, CUDA unusable) fails each SKU it is
    given with the reason, as any stage error would, instead of failing the run.
    """

    def __init__(self, seg: Segment, ctx: RunContext) -> None:
        from ..tasks.generate import backend_config, build_generator

        self._broken: StageFailure | None = None
        for call in seg.calls:
            if call.name == "generate":
                call.stage()  # imports the stage's module (and what registers its backend)
                try:
                    build_generator(backend_config(call.options.backend, call.options))
                except Exception as exc:  # noqa: BLE001 - reported on every SKU it would serve
                    log.error("backend %r could not be built: %s", call.options.backend, exc)
                    self._broken = StageFailure(
                        call.name, f"backend {call.options.backend!r} could not be built: "
                        f"{type(exc).__name__}: {exc}", "install what the message names (weights "
                        "go in the local path or cache it gives), then re-run", "backend",
                        type(exc).__name__)
        self._fn, self._ctx = _row_fn(seg, ctx), ctx

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        if self._broken is None:
            return self._fn(row)
        job = _identified(pickle.loads(row["job"]), self._ctx)
        if job.state.ok and not job.skip:
            job = dataclasses.replace(job, state=job.state.failed(self._broken))
        return {"sku": row["sku"], "job": pickle.dumps(job)}


def _task_cap(res: Resources, ahead: int) -> dict[str, Any]:
    """``compute=`` for a CPU stage's tasks: as many in flight as the cluster runs at once,
    plus ``ahead`` waiting behind each (none: Ray Data's defaults)."""
    import ray.data

    if ahead <= 0:
        return {}
    fits = [_cluster("CPU") / res.cpus] if res.cpus else []
    if res.memory_mb:
        fits.append(_cluster("memory") / (res.memory_mb * 1024 * 1024))
    at_once = max(1, int(min(fits))) if fits else 1
    return {"compute": ray.data.TaskPoolStrategy(size=at_once * (1 + ahead))}


def _remote_args(res: Resources) -> dict[str, Any]:
    args: dict[str, Any] = {"num_cpus": res.cpus}
    if res.gpus:
        args["num_gpus"] = res.gpus
    if res.memory_mb:
        args["memory"] = int(res.memory_mb) * 1024 * 1024
    return args


# ---------------------------------------------------------------------------- the driver


def fuse_pays(fused: Sequence[Segment], cluster: Mapping[str, float] | None = None) -> bool:
    """Whether fused CPU stages lose nothing in packing on ``cluster`` (resource totals; None:
    ask Ray): every fused segment's declared memory fits as many times as its CPUs do, so the
    cluster runs as many tasks at once as with one task per stage. Then fusing only saves
    dispatch (one task per block instead of one per stage); where memory binds (large
    declared memory, small nodes), stages keep their own tasks and exact resources."""
    if cluster is None:
        import ray

        if not ray.is_initialized():
            return False  # nothing to judge by: keep each stage's own resources
        cluster = ray.cluster_resources()
    cpus = float(cluster.get("CPU", 0.0))
    memory = float(cluster.get("memory", 0.0))
    for seg in fused:
        if seg.actor or len(seg.calls) < 2 or not seg.resources.memory_mb:
            continue
        by_cpu = cpus // seg.resources.cpus if seg.resources.cpus else math.inf
        if memory // (seg.resources.memory_mb * 2**20) < by_cpu:
            return False
    return True


def concurrent_runs(recipe: Recipe, options: ExecutorOptions = ExecutorOptions(),
                    cluster: Mapping[str, float] | None = None, most: int = 2) -> int:
    """How many conversions (Ray Data executions: a shard's planning or its conversion) may run
    at once on ``cluster`` (resource totals; None: ask Ray), at most ``most``.

    Ray Data splits the cluster between executions that run at once in whole units per
    resource (``amount // executions``: 1 CPU between two is 0 each, and so is 1 GPU), and an
    execution whose share cannot hold one task of its largest operator never starts one: with
    one CPU, or one GPU for a GPU backend's pool, two shards at once wait on each other forever.
    So a second execution runs beside the first only where each one's share holds every
    operator and no unit is left over (3 CPUs between two would leave one idle).
    """
    if cluster is None:
        import ray

        cluster = ray.cluster_resources()
    gpus = float(cluster.get("GPU", 0.0))
    segs = segments(recipe, options, cluster_gpus=gpus, cluster=cluster)
    need = {"CPU": max([s.resources.cpus for s in segs] + [PLAN_CPUS]),
            "GPU": max([s.resources.gpus for s in segs] + [0.0]),
            "memory": max([s.resources.memory_mb for s in segs] + [0.0]) * 2**20}
    for k in range(max(1, most), 1, -1):
        if float(cluster.get("CPU", 0.0)) % k:
            continue
        if all(not want or float(cluster.get(name, 0.0)) // k >= want
               for name, want in need.items()):
            return k
    return 1


def skus_per_task(n: int, options: ExecutorOptions, fused: bool = False) -> int:
    """SKUs per task: the option, else as many as leave each CPU four tasks of the ``n``, at
    most 8 (32 where every CPU stage runs in one task: each task then carries a whole SKU)."""
    if options.skus_per_task:
        return options.skus_per_task
    cpus = max(1.0, _cluster("CPU"))
    return int(max(1, min(32 if fused else 8, n // int(4 * cpus))))


def task_blocks(jobs: Sequence[Job], recipe: Recipe,
                options: ExecutorOptions = ExecutorOptions()) -> list[list[Job]]:
    """``jobs`` in the blocks their tasks will run and record together: consecutive runs of
    ``skus_per_task``; where that size is chosen here, the shard's end in ever smaller blocks
    (``tail_sizes``: the last CPUs x size SKUs in blocks of a quarter of it, the last CPUs x
    that quarter in blocks of a quarter again, down to one SKU), so that its last tasks keep
    every CPU busy nearly to its end. The same jobs give the same blocks, so a shard that is
    run again can leave out the blocks already recorded and run the others with the same
    members (whose records then have the same names as any an earlier try wrote)."""
    segs = segments(recipe, options)
    fused = sum(1 for s in segs if not s.actor) <= 1
    per_task = skus_per_task(len(jobs), options, fused)
    sizes = [per_task] if options.skus_per_task else tail_sizes(per_task)
    cpus = int(max(1.0, _cluster("CPU")))
    # where each size's run of blocks starts: size k covers the shard's last CPUs x size k-1
    starts = [0] + [max(0, len(jobs) - cpus * size) for size in sizes[:-1]]
    starts = [max(starts[:k + 1]) for k in range(len(starts))] + [len(jobs)]
    return [list(jobs[i:min(i + size, end)])
            for size, begin, end in zip(sizes, starts, starts[1:])
            for i in range(begin, end, size)]


def tail_sizes(per_task: int) -> list[int]:
    """The block sizes of a shard from its bulk to its end: ``per_task``, then a quarter of
    the one before, down to one SKU (32, 8, 2, 1)."""
    sizes = [max(1, per_task)]
    while sizes[-1] > 1:
        sizes.append(max(1, sizes[-1] // 4))
    return sizes


def unrecorded(blocks: Sequence[Sequence[Job]]) -> list[list[Job]]:
    """``blocks`` less the SKUs whose attempt already has a committed record (read from the
    catalog's fragments of each run: for recovery, not per SKU); blocks left empty dropped."""
    done = _recorded(j for b in blocks for j in b)
    left = [[j for j in b if j.state.attempt_id not in done] for b in blocks]
    return [b for b in left if b]


def convert(jobs: Sequence[Job], recipe: Recipe, *, catalog_source: str = "",
            options: ExecutorOptions = ExecutorOptions(),
            on_done: Callable[[dict[str, Any]], None] | None = None,
            blocks: Sequence[Sequence[Job]] | None = None) -> Outcome:
    """Run ``jobs`` through ``recipe`` on the connected Ray cluster; one summary per job.

    ``blocks``: the jobs already grouped into tasks (``task_blocks``; ``jobs`` is then
    ignored); None: ``task_blocks(jobs)``. Each block is recorded in the catalog together.
    Every job ends with exactly one committed catalog record: written by its worker, or, for
    a task Ray gave up on, by this function ("the worker ... died").
    """
    import pyarrow as pa
    import ray.data

    outcome = Outcome()
    blocks = [list(b) for b in (task_blocks(jobs, recipe, options) if blocks is None
                                else blocks) if b]
    if not blocks:
        return outcome
    await_warm()
    _data_context(options.tasks_ahead)
    ctx = RunContext(recipe.describe(), _recipe_id(recipe), catalog_source, options,
                     recipe if any(not j.state.asset_id for b in blocks for j in b) else None)
    segs = segments(recipe, options)
    pending = {j.state.attempt_id: j for b in blocks for j in b}
    # one Arrow table per block: Ray Data keeps them as the tasks' blocks through every map
    ds = ray.data.from_arrow([pa.table({
        "sku": pa.array([j.state.sku for j in b], pa.string()),
        "job": pa.array([pickle.dumps(j) for j in b], pa.binary())}) for b in blocks])
    with warnings.catch_warnings():
        # Ray Data 2.60 deprecates the remote args that bound retries (max_retries,
        # max_task_retries) without a replacement; its default retries a crashing task forever
        warnings.filterwarnings("ignore", message=".*ray_remote_args.* is deprecated")
        for seg in segs:
            if seg.actor:
                pool = options.gpu_actors or (max(1, int(_cluster("GPU") // seg.resources.gpus))
                                              if seg.resources.gpus else 1)
                ds = ds.map(BackendActor, fn_constructor_args=(seg, ctx),
                            compute=ray.data.ActorPoolStrategy(size=pool), max_restarts=-1,
                            max_task_retries=options.worker_retries,
                            **_remote_args(seg.resources))
            else:
                ds = ds.map(_row_fn(seg, ctx), max_retries=options.worker_retries,
                            **_task_cap(seg.resources, options.tasks_ahead),
                            **_remote_args(seg.resources))
        # the block's records, in the last stage's task where Ray Data fuses them (same
        # resources), after a GPU backend's pool in a CPU task of its own
        last = segs[-1] if segs else None
        record_res = (last.resources if last is not None and not last.actor
                      else Resources(cpus=min(1.0, PLAN_CPUS)))
        ds = ds.map_batches(_record_fn(ctx), batch_size=None, batch_format="numpy",
                            zero_copy_batch=True, max_retries=options.worker_retries,
                            **_task_cap(record_res, options.tasks_ahead),
                            **_remote_args(record_res))
    for summary in _summaries(ds):
        pending.pop(summary["attempt_id"], None)
        if summary["status"] == "skipped":  # identity worked out in the task: done before
            outcome.skipped.append(summary["sku"])
        else:
            outcome.summaries.append(summary)
        if on_done:
            on_done(summary)
    if pending and any(len(b) > 1 for b in blocks):
        # Ray gave up on some tasks of several SKUs: one SKU (a crash in native code) can take
        # its task-mates down with it, so run the unrecorded ones again, one per task
        recorded = _recorded(pending.values())
        again = [[j] for j in pending.values() if j.state.attempt_id not in recorded]
        log.warning("%d SKUs lost with their tasks; running %d again one per task",
                    len(pending), len(again))
        retry = convert([], recipe, catalog_source=catalog_source, options=options,
                        on_done=on_done, blocks=again)
        outcome.summaries += retry.summaries
        outcome.skipped += retry.skipped
        outcome.lost += retry.lost
        for s in retry.summaries:
            pending.pop(s["attempt_id"], None)
        again_skipped = set(retry.skipped)
        for aid in [a for a, j in pending.items() if j.state.sku in again_skipped]:
            pending.pop(aid)
    if pending:
        recorded = _recorded(pending.values())
        for job in pending.values():  # Ray gave up on these SKUs' task
            summary = _lost(job, ctx, recorded.get(job.state.attempt_id))
            outcome.lost += 1
            outcome.summaries.append(summary)
            if on_done:
                on_done(summary)
    return outcome


def _summaries(ds: Any) -> Iterator[dict[str, Any]]:
    """The conversion's summaries, each block's as soon as its task has ended: without the
    look-ahead of ``iter_rows`` (its prefetch held a finished block back until the next one
    was out too, so the driver learnt of a task's end only with the next task's)."""
    for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=0):
        for s in batch.column("summary").to_pylist():
            yield json.loads(s)


def _recorded(jobs: Iterable[Job]) -> dict[str, dict[str, Any]]:
    """The committed asset rows among ``jobs``' attempts (by attempt id), whether recorded
    alone or in a block (a task can die after writing its block's record)."""
    by_run: dict[tuple[str, str], list[str]] = {}
    for j in jobs:
        by_run.setdefault((j.state.store_uri, j.state.run_id), []).append(j.state.attempt_id)
    out: dict[str, dict[str, Any]] = {}
    for (uri, run), ids in by_run.items():
        out.update(committed_attempts(open_storage(uri), run, ids))
    return out


def _lost(job: Job, ctx: RunContext, row: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The record of a SKU whose task Ray gave up on, unless it has one (``row``: its worker
    wrote it first, e.g. the watchdog of a hung stage before ending the worker)."""
    if row is not None:
        return summary_of(row, job.state)
    if ctx.recipe is not None:  # its identity was to be worked out in the task that died
        job = _identified(dataclasses.replace(job, done=()), ctx)
    state = job.state
    log.error("sku=%s: its task failed %d times; recorded as lost", state.sku,
              ctx.options.worker_retries + 1)
    failed = state.failed(StageFailure(
        "runner", f"the worker running this SKU died {ctx.options.worker_retries + 1} times "
        "(killed, out of memory, or a crash in a native library)", LOST_FIX, "worker",
        "internal"))
    return record_attempt(failed, _meta(job, ctx), ctx.options.policy("record"))


def run_catalog(specs: Sequence[SkuSpec], recipe: Recipe, *, out: str,
                run_id: str | None = None, force: bool = False,
                options: ExecutorOptions = ExecutorOptions(), catalog_source: str = "",
                extra: Mapping[str, Mapping[str, Any]] | None = None,
                done: Mapping[str, Collection[str]] | None = None,
                on_done: Callable[[dict[str, Any]], None] | None = None) -> Outcome:
    """Convert ``specs`` with ``recipe`` into ``out`` on the connected Ray cluster.

    SKUs already converted with the same identity are skipped unless ``force``. ``extra``
    maps a SKU to further columns of its attempt's catalog row (e.g. the attempt it
    supersedes). Each call should have its own ``run_id`` (the default: a new one), as a SKU
    has one attempt per run. Call inside ``ray_session()`` (or with Ray initialised).
    """
    run_id = run_id or new_run_id()
    p = plan(specs, recipe, out=out, run_id=run_id, force=force, done=done, extra=extra,
             in_tasks=True)
    outcome = convert(p.jobs, recipe, catalog_source=catalog_source, options=options,
                      on_done=on_done)
    outcome.skipped = p.skipped + outcome.skipped
    return outcome


def new_run_id() -> str:
    import uuid

    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


def shards(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    """``items`` in consecutive slices of at most ``size``."""
    if size < 1:
        raise ValueError(f"shard size must be >= 1, got {size}")
    for i in range(0, len(items), size):
        yield items[i:i + size]

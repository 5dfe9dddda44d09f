"""Running one stage of one asset: the rules every executor shares.

A stage failure never raises out of here: it becomes the asset's ``failure`` and the remaining
stages pass the state through, so one SKU's failure never touches another's. Around each stage
the runner applies

* the CPU budget: ``core.stage.stage_cpus()`` reports the stage's declared CPUs, so a stage
  that sizes a process pool uses what the scheduler granted it, not the whole node;
* a timeout (``StagePolicy.timeout_s``): the stage is interrupted and the asset fails with
  "timed out after N s"; a stage stuck in native code that ignores the interruption is ended
  by the executor's ``on_hang`` (inside a Ray worker: record the failure, end the worker);
* retries with exponential backoff for transient faults only (storage or network errors:
  ``is_transient``). A stage's input problem (``AssetError``) is never retried.

``run_asset`` runs a whole recipe in this process (tests, debugging, one-off SKUs); the Ray
executor (``flows/executor.py``) calls ``run_stage`` inside its workers.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import functools
import heapq
import logging
import os
import random
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..catalog.fragments import asset_row, stage_rows, write_attempt, write_attempts
from ..core.errors import AssetError
from ..core.stage import cpu_budget, failure_record
from ..core.storage import open_storage
from ..core.types import AssetState, StageFailure
from .recipe import Recipe, StageCall

log = logging.getLogger("assetfactory.runner")

INTERNAL_FIX = ("This looks like a bug or an input the factory does not handle yet; "
                "re-run with `assetfactory run --force` after reporting it with this SKU's files.")
TRANSIENT_FIX = ("check that the storage endpoint (S3 server, network share) is up and "
                 "reachable, then re-run: finished SKUs are skipped")

#: Default per-stage timeouts in seconds: generous for large assets on a busy CPU; a stage
#: that takes longer is almost certainly stuck (a native library looping on a bad mesh).
DEFAULT_TIMEOUTS: dict[str, float] = {
    "ingest": 600.0, "generate": 3600.0, "cleanup": 1800.0, "simplify": 1800.0, "uv": 1800.0,
    "bake": 1800.0, "texture": 1800.0, "export": 900.0, "metrics": 900.0,
}
FALLBACK_TIMEOUT_S = 1800.0


@dataclass(frozen=True)
class StagePolicy:
    """How long a stage may run and how transient faults are retried.

    timeout_s: the stage fails with "timed out after N s" past this (None: no limit).
    retries: further tries after a transient fault (storage or network); never after an
        input or processing error. The defaults ride out about two minutes of outage.
    backoff_s, max_backoff_s: the wait before retry k is ``backoff_s * 2**k`` (with +-25%
        jitter, so many workers hitting one recovering server do not retry in lockstep),
        capped at ``max_backoff_s``.
    hang_grace_s: after the timeout, how long an interrupted stage may take to unwind before
        the executor's ``on_hang`` ends its worker.
    """

    timeout_s: float | None = FALLBACK_TIMEOUT_S
    retries: int = 8
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    hang_grace_s: float = 10.0

    def __post_init__(self) -> None:
        if self.timeout_s is not None and not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0 or None, got {self.timeout_s}")
        if self.retries < 0 or self.backoff_s < 0 or self.max_backoff_s < 0:
            raise ValueError("retries, backoff_s and max_backoff_s must be >= 0")
        if self.hang_grace_s < 0:
            raise ValueError("hang_grace_s must be >= 0")

    def delay(self, attempt: int) -> float:
        base = min(self.max_backoff_s, self.backoff_s * (2 ** attempt))
        return base * random.uniform(0.75, 1.25)


def policy_for(stage: str, timeouts: Mapping[str, float | None] | None = None,
               base: StagePolicy = StagePolicy()) -> StagePolicy:
    """``base`` with the stage's timeout: ``timeouts[stage]``, else ``timeouts["*"]``, else the
    stage's default (``DEFAULT_TIMEOUTS``)."""
    timeouts = timeouts or {}
    if stage in timeouts:
        t = timeouts[stage]
    elif "*" in timeouts:
        t = timeouts["*"]
    else:
        t = DEFAULT_TIMEOUTS.get(stage, base.timeout_s)
    return dataclasses.replace(base, timeout_s=t)


# ---------------------------------------------------------------------------- transient faults

_TRANSIENT_BOTO = {
    "EndpointConnectionError", "ConnectionClosedError", "ReadTimeoutError", "ConnectTimeoutError",
    "ConnectionError", "ProxyConnectionError", "HTTPClientError", "ResponseStreamingError",
    "IncompleteReadError", "ProtocolError", "NewConnectionError", "MaxRetryError",
}
_TRANSIENT_S3_CODES = {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout",
                       "Throttling", "ThrottlingException", "RequestLimitExceeded"}


def is_transient(exc: BaseException | None) -> bool:
    """A fault worth retrying: the network or the storage service, not the asset.

    Follows ``__cause__``/``__context__``, so a stage that wraps a failed S3 read in an
    ``InputError`` is still retried while the server is down.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return True
        module = type(exc).__module__ or ""
        if module.startswith(("botocore", "urllib3", "boto3")):
            name = type(exc).__name__
            if name in _TRANSIENT_BOTO:
                return True
            response = getattr(exc, "response", None)
            if isinstance(response, dict):
                code = str(response.get("Error", {}).get("Code", ""))
                status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
                if status >= 500 or code in _TRANSIENT_S3_CODES:
                    return True
        exc = exc.__cause__ or exc.__context__
    return False


def with_retries(fn: Callable[[], Any], policy: StagePolicy, what: str) -> Any:
    """``fn()``, retried with backoff while it fails transiently (then the error is raised)."""
    for attempt in range(policy.retries + 1):
        try:
            return fn()
        except Exception as exc:
            if attempt >= policy.retries or not is_transient(exc):
                raise
            wait = policy.delay(attempt)
            log.warning("%s: transient fault (%s: %s); retry %d/%d in %.1f s", what,
                        type(exc).__name__, str(exc)[:200], attempt + 1, policy.retries, wait)
            time.sleep(wait)
    raise AssertionError("unreachable")


# ---------------------------------------------------------------------------- timeouts


class StageTimeout(BaseException):
    """Raised inside a stage that ran past its timeout.

    A ``BaseException`` so that a stage's own ``except Exception`` cannot swallow it.
    """


def _raise_timeout(signum: int, frame: Any) -> None:
    raise StageTimeout()


class _Watchdog:
    """One thread per process that calls a stage's ``on_hang`` when the stage is still running
    past its deadline and grace; starting a thread per stage cost more than a trivial stage.

    Created lazily, so a process forked from this one starts its own."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, threading.Event, Callable[[], None]]] = []
        self._seq = 0
        self._pid = 0

    def watch(self, when: float, finished: threading.Event,
              on_hang: Callable[[], None]) -> None:
        with self._cond:
            if self._pid != os.getpid():  # first use in this process (or a forked child)
                self._pid = os.getpid()
                self._heap = []
                threading.Thread(target=self._run, name="stage-watchdog", daemon=True).start()
            self._seq += 1
            heapq.heappush(self._heap, (when, self._seq, finished, on_hang))
            if self._heap[0][1] == self._seq:  # the earliest now: the thread waits less
                self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._heap and self._heap[0][2].is_set():
                    heapq.heappop(self._heap)  # finished in time: forget it
                if not self._heap:
                    self._cond.wait()
                    continue
                when, _, finished, on_hang = self._heap[0]
                left = when - time.monotonic()
                if left > 0:
                    self._cond.wait(left)
                    continue
                heapq.heappop(self._heap)
            if not finished.is_set():
                on_hang()


_WATCHDOG = _Watchdog()


@contextlib.contextmanager
def deadline(seconds: float | None, on_hang: Callable[[], None] | None = None,
             grace_s: float = 10.0) -> Iterator[None]:
    """Interrupt the body with ``StageTimeout`` after ``seconds``.

    In the main thread a real-time timer signal interrupts sleeps, waits and Python loops;
    elsewhere the exception is set asynchronously on the thread. Native code that never
    returns to Python cannot be interrupted: if the body is still running ``grace_s`` after
    the timeout, ``on_hang`` is called from a watchdog thread (the executor records the
    failure and ends the worker, which frees its CPUs for the next stage).
    """
    if not seconds:
        yield
        return
    finished = threading.Event()
    in_main = threading.current_thread() is threading.main_thread()
    timer: threading.Timer | None = None
    old_handler: Any = None
    if in_main:
        old_handler = signal.signal(signal.SIGALRM, _raise_timeout)
        signal.setitimer(signal.ITIMER_REAL, seconds)
    else:
        tid = threading.get_ident()

        def interrupt() -> None:
            if not finished.is_set():
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(tid),
                                                           ctypes.py_object(StageTimeout))

        timer = threading.Timer(seconds, interrupt)
        timer.daemon = True
        timer.start()
    if on_hang is not None:
        _WATCHDOG.watch(time.monotonic() + seconds + grace_s, finished, on_hang)
    try:
        yield
    finally:
        finished.set()
        if in_main:
            signal.setitimer(signal.ITIMER_REAL, 0)
            # None: the old handler was not set from Python; the default is what it was
            signal.signal(signal.SIGALRM, signal.SIG_DFL if old_handler is None else old_handler)
        elif timer is not None:
            timer.cancel()


def timeout_failure(stage: str, seconds: float, stopped_worker: bool = False) -> StageFailure:
    how = "; its worker was stopped" if stopped_worker else ""
    return StageFailure(
        stage, f"timed out after {seconds:g} s{how}",
        f"if the asset is just large, raise the limit (assetfactory run --timeout "
        f"{stage}=SECONDS); otherwise check this SKU's input (a mesh or photo that makes the "
        "stage loop)", "timeout", "timeout")


# ---------------------------------------------------------------------------- one stage


def run_stage(call: StageCall, state: AssetState, policy: StagePolicy | None = None,
              on_hang: Callable[[AssetState], None] | None = None,
              cpus: float | None = None) -> AssetState:
    """Run one stage; never raises for a problem with the asset.

    ``on_hang(failed_state)`` is called (from a watchdog thread) when the stage neither
    finishes nor unwinds after its timeout; it should end the process (see ``deadline``).
    ``cpus``: the CPUs the scheduler reserved for the task running the stage (the executor's
    segment resources, which an ``ExecutorOptions.resources`` override may raise); None: the
    stage's declared ``Resources.cpus``. ``stage_cpus()`` reports it inside the stage, so the
    stage's thread pools and ray tracer use what was reserved for it, never more.
    """
    if not state.ok:
        return state
    policy = policy or policy_for(call.name)
    st = call.stage()
    started = time.time()
    failure: StageFailure | None = None
    hang: Callable[[], None] | None = None
    if on_hang is not None and policy.timeout_s:
        seconds, report = policy.timeout_s, on_hang

        def hang() -> None:
            f = timeout_failure(call.name, seconds, stopped_worker=True)
            report(state.failed(f, failure_record(st, state, call.options, started,
                                                  f"{f.kind}: {f.message}")))

    for attempt in range(policy.retries + 1):
        try:
            granted = st.resources.cpus if cpus is None else cpus
            with cpu_budget(granted), deadline(policy.timeout_s, hang, policy.hang_grace_s):
                result = st(state, call.options)
            if attempt:  # the catalog shows which assets needed their storage retried
                result = dataclasses.replace(
                    result, metrics={**result.metrics, f"{call.name}_retries": attempt})
            return state.apply(result)
        except StageTimeout:
            failure = timeout_failure(call.name, policy.timeout_s or 0.0)
            log.warning("sku=%s stage=%s timed out after %s s", state.sku, call.name,
                        policy.timeout_s)
            break
        except Exception as exc:  # noqa: BLE001 - every error is this SKU's, not the run's
            if is_transient(exc):
                if attempt < policy.retries:
                    wait = policy.delay(attempt)
                    log.warning("sku=%s stage=%s: transient fault (%s: %s); retry %d/%d in "
                                "%.1f s", state.sku, call.name, type(exc).__name__,
                                str(exc)[:200], attempt + 1, policy.retries, wait)
                    time.sleep(wait)
                    continue
                failure = StageFailure(
                    call.name, f"storage or network unavailable after {attempt + 1} tries: "
                    f"{type(exc).__name__}: {str(exc)[:300]}", TRANSIENT_FIX, "transient",
                    "transient")
            elif isinstance(exc, AssetError):
                failure = StageFailure(call.name, exc.message, exc.fix, exc.code,
                                       type(exc).__name__)
                log.warning("sku=%s stage=%s failed: %s", state.sku, call.name, exc.message)
            elif isinstance(exc, MemoryError):
                failure = StageFailure(call.name, "ran out of memory", "lower the profile's "
                                       "budget or give the worker more memory", "oom",
                                       "MemoryError")
            else:
                log.error("sku=%s stage=%s crashed:\n%s", state.sku, call.name,
                          traceback.format_exc())
                failure = StageFailure(call.name, f"{type(exc).__name__}: {exc}", INTERNAL_FIX,
                                       "internal", "internal")
            break
    assert failure is not None
    return state.failed(failure, failure_record(st, state, call.options, started,
                                                f"{failure.kind}: {failure.message}"))


def run_asset(state: AssetState, recipe: Recipe,
              timeouts: Mapping[str, float | None] | None = None,
              policy: StagePolicy = StagePolicy()) -> AssetState:
    """Run a whole recipe in this process (tests, debugging, one-off SKUs)."""
    for call in recipe.calls:
        state = run_stage(call, state, policy_for(call.name, timeouts, policy))
    return state


# ---------------------------------------------------------------------------- the record


@dataclass(frozen=True)
class AttemptMeta:
    """What the catalog row of an attempt needs beside the asset's state."""

    started_at: float
    recipe: dict
    recipe_hash: str
    input_hashes: dict
    catalog_source: str
    #: further asset-row columns: ``supersedes`` (the attempt a reprocessed one re-does) and
    #: ``trigger`` (why: failures / where / rework)
    extra: Mapping[str, Any] = field(default_factory=dict)


def _attempt_row(state: AssetState, meta: AttemptMeta) -> dict[str, Any]:
    # the asset's own time: from its first stage's start to its last stage's end, not the time
    # a failed asset's pass-through tasks spent queued behind other SKUs' work
    started = min((r.started_at for r in state.records), default=meta.started_at)
    finished = max((r.started_at + r.duration_s for r in state.records), default=time.time())
    row = asset_row(state, started_at=started, finished_at=finished, recipe=meta.recipe,
                    recipe_hash=meta.recipe_hash, input_hashes=meta.input_hashes,
                    catalog_source=meta.catalog_source)
    row.update(meta.extra)
    return row


def record_attempt(state: AssetState, meta: AttemptMeta,
                   policy: StagePolicy = StagePolicy()) -> dict[str, Any]:
    """Write the attempt's catalog fragments; return a small summary for the driver.

    Fragments are keyed by the attempt id, so writing the same attempt twice (a retried task)
    replaces the file with an equal one instead of adding a row.
    """
    row = _attempt_row(state, meta)
    store = open_storage(state.store_uri)
    stages = stage_rows(state)
    with_retries(lambda: write_attempt(store, row, stages), policy,
                 f"sku={state.sku} catalog record")
    return summary_of(row, state)


def record_attempts(items: list[tuple[AssetState, AttemptMeta]],
                    policy: StagePolicy = StagePolicy()) -> list[dict[str, Any]]:
    """Write the catalog records of several attempts (one task's block) together: one stage
    file and one asset file per run and store, not two files per attempt
    (``catalog.fragments.write_attempts``); one summary per attempt, in order.

    The block's file names come from its attempt ids, so a retried task rewrites the same
    files instead of adding rows.
    """
    groups: dict[tuple[str, str], list[int]] = {}
    for i, (state, _) in enumerate(items):
        groups.setdefault((state.store_uri, state.run_id), []).append(i)
    rows = [_attempt_row(state, meta) for state, meta in items]
    for (uri, _run), idx in groups.items():
        store = open_storage(uri)
        assets = [rows[i] for i in idx]
        stages = [r for i in idx for r in stage_rows(items[i][0])]
        first = items[idx[0]][0].sku
        with_retries(functools.partial(write_attempts, store, assets, stages), policy,
                     f"catalog record of {len(idx)} SKUs (sku={first}, ...)")
    return [summary_of(row, state) for row, (state, _) in zip(rows, items)]


def summary_of(row: Mapping[str, Any], state: AssetState) -> dict[str, Any]:
    return {"sku": state.sku, "status": row["status"], "failed_stage": row["failed_stage"],
            "error": row["error"], "fix": row["fix"], "wall_s": row["wall_s"],
            "attempt_id": state.attempt_id,
            "stage_s": float(sum(r.duration_s for r in state.records)),
            "stages": len(state.records)}

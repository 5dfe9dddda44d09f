"""The stage contract: ``(AssetState, Options) -> StageResult``, provenance added here.

A stage module defines a frozen ``Options`` dataclass (validated in ``__post_init__``) and one
function decorated with ``@stage(...)``. The decorator, not the body, records provenance (name,
version, options hash, input and output hashes, duration, host, device, memory) and tags any
``AssetError`` with the stage's name. It never catches errors: the runner decides what a
failure means for the asset.

A stage also declares, as data, the catalog columns it reads (``reads=``): ``SkuSpec`` fields
such as ``images`` or ``material``, or any other column by name (kept in ``spec.metadata``).
An asset's identity hashes exactly the union of these declarations (``flows/identity.py``), and
the decorator hands the stage a view of the spec that raises ``UndeclaredColumn`` on any other
column, so a column that changes a stage's output cannot be left out of the identity by
oversight: the first run of the stage (its contract test) fails and names the missing column.
``sku``, ``row`` and ``catalog_root`` are always readable (the SKU is always in the identity;
the other two only say where inputs are, and the inputs' bytes are hashed).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import os
import resource
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .errors import AssetError, OptionsError
from .hashing import sha256_obj
from .types import AssetState, Resources, SkuSpec, StageRecord, StageResult

O = TypeVar("O")
T = TypeVar("T")


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def options_dict(options: Any) -> dict[str, Any]:
    if options is None:
        return {}
    if dataclasses.is_dataclass(options):
        return dataclasses.asdict(options)
    return dict(options)


#: Spec fields any stage may read without declaring them.
ALWAYS_READABLE = frozenset({"sku", "row", "catalog_root"})
#: Spec fields that are catalog columns (everything else a row has is in ``metadata``).
SPEC_COLUMNS = frozenset(f.name for f in dataclasses.fields(SkuSpec)) - ALWAYS_READABLE - {
    "metadata"}


class UndeclaredColumn(LookupError):
    """A stage read a catalog column it did not declare in ``@stage(..., reads=...)``."""


def _undeclared(stage_name: str, column: str) -> UndeclaredColumn:
    return UndeclaredColumn(
        f"stage {stage_name!r} reads the catalog column {column!r} without declaring it: add "
        f"{column!r} to its @stage(..., reads=...) so that the asset identity covers it")


class _DeclaredMetadata(Mapping):
    """``spec.metadata`` limited to the columns a stage declared."""

    def __init__(self, data: Mapping[str, Any], allowed: frozenset[str], stage_name: str):
        self._data, self._allowed, self._stage = data, allowed, stage_name

    def __getitem__(self, key: str) -> Any:
        if key not in self._allowed:
            raise _undeclared(self._stage, key)
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        raise _undeclared(self._stage, "<every column>")

    def __len__(self) -> int:
        return len(self._data)


class _DeclaredSpec(SkuSpec):
    """A ``SkuSpec`` whose undeclared columns raise ``UndeclaredColumn`` when read."""

    def __getattribute__(self, name: str) -> Any:
        if name in SPEC_COLUMNS and name not in object.__getattribute__(self, "_allowed"):
            raise _undeclared(object.__getattribute__(self, "_stage"), name)
        return object.__getattribute__(self, name)


def declared_spec(spec: SkuSpec, reads: frozenset[str], stage_name: str) -> SkuSpec:
    """``spec`` as the stage that declared ``reads`` may see it."""
    values = {f.name: getattr(spec, f.name) for f in dataclasses.fields(SkuSpec)}
    values["metadata"] = _DeclaredMetadata(values["metadata"] or {}, reads, stage_name)
    view = _DeclaredSpec(**values)
    object.__setattr__(view, "_allowed", reads)
    object.__setattr__(view, "_stage", stage_name)
    return view


@dataclass(frozen=True)
class Stage(Generic[O]):
    """A named, versioned stage with its options type, declared resources and catalog reads."""

    name: str
    version: str
    options_type: type
    resources: Resources
    fn: Callable[[AssetState, Any], StageResult]
    reads: frozenset[str] = frozenset()

    def default_options(self) -> Any:
        return self.options_type()

    def options(self, **overrides: Any) -> Any:
        try:
            return self.options_type(**overrides)
        except TypeError as exc:
            known = ", ".join(f.name for f in dataclasses.fields(self.options_type))
            raise OptionsError(f"{exc} (its options are: {known})", stage=self.name) from exc

    def __call__(self, state: AssetState, options: Any = None) -> StageResult:
        if options is None:
            options = self.default_options()
        if not isinstance(options, self.options_type):
            raise OptionsError(
                f"expected {self.options_type.__name__}, got {type(options).__name__}",
                stage=self.name)
        opts = options_dict(options)
        started = time.time()
        t0 = time.perf_counter()
        inputs = {k: r.sha256 for k, r in state.artifacts.items()}
        view = dataclasses.replace(state, spec=declared_spec(state.spec, self.reads, self.name))
        try:
            result = self.fn(view, options)
        except AssetError as exc:
            exc.stage = exc.stage or self.name
            exc.sku = exc.sku or state.sku
            raise
        if not isinstance(result, StageResult):
            raise TypeError(f"stage {self.name} returned {type(result).__name__}, not StageResult")
        record = StageRecord(
            stage=self.name,
            version=self.version,
            options_hash=sha256_obj(opts)[:16],
            options=opts,
            inputs=inputs,
            outputs={k: r.sha256 for k, r in result.artifacts.items()},
            started_at=started,
            duration_s=time.perf_counter() - t0,
            host=socket.gethostname(),
            # the device the stage actually used, when it reports one (a learned backend on
            # "auto" may have fallen back to the CPU), else the one its options asked for
            device=str(result.metrics.get(f"{self.name}_device") or opts.get("device", "cpu")),
            peak_rss_mb=peak_rss_mb(),
        )
        return dataclasses.replace(result, record=record)


def stage(name: str, version: str, options: type, resources: Resources = Resources(),
          reads: tuple[str, ...] = ()):
    """Declare a stage. The options type must be a frozen dataclass; ``reads`` names the
    catalog columns the stage's output depends on (see the module docstring)."""
    if not (dataclasses.is_dataclass(options) and options.__dataclass_params__.frozen):  # type: ignore[attr-defined]
        raise TypeError(f"stage {name}: options must be a frozen dataclass")
    if isinstance(reads, str) or not all(isinstance(c, str) and c for c in reads):
        raise TypeError(f"stage {name}: reads must be a tuple of column names")

    _name_options(options, name)

    def wrap(fn: Callable[[AssetState, Any], StageResult]) -> Stage:
        st = Stage(name=name, version=version, options_type=options, resources=resources, fn=fn,
                   reads=frozenset(reads))
        for attr in ("__module__", "__name__", "__qualname__", "__doc__"):
            object.__setattr__(st, attr, getattr(fn, attr, None))
        object.__setattr__(st, "__wrapped__", fn)
        return st

    return wrap


def _name_options(options: type, name: str) -> None:
    """Make every ``OptionsError`` raised while building ``options`` name the stage, so an
    options error reads ``<stage> options: ...`` wherever the options are built."""
    post = getattr(options, "__post_init__", None)
    if post is None or getattr(post, "_names_stage", False):
        return

    def __post_init__(self) -> None:
        try:
            post(self)
        except OptionsError as exc:
            exc.stage = exc.stage or name
            raise

    __post_init__._names_stage = True  # type: ignore[attr-defined]
    options.__post_init__ = __post_init__  # type: ignore[attr-defined]


def check(cond: bool, message: str) -> None:
    """Validate an option in ``__post_init__`` (the stage's name is added by ``@stage``)."""
    if not cond:
        raise OptionsError(message)


def failure_record(stage_obj: Stage, state: AssetState, options: Any, started: float,
                   error: str) -> StageRecord:
    opts = options_dict(options)
    return StageRecord(
        stage=stage_obj.name, version=stage_obj.version, options_hash=sha256_obj(opts)[:16],
        options=opts, inputs={k: r.sha256 for k, r in state.artifacts.items()}, outputs={},
        started_at=started, duration_s=time.time() - started, host=socket.gethostname(),
        device=str(opts.get("device", "cpu")), peak_rss_mb=peak_rss_mb(), status="failed",
        error=error[:2000],
    )


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


#: CPUs granted to the stage running in this context (set by the runner from the stage's
#: declared ``Resources.cpus``); None outside a runner, where a stage may use the whole machine.
_STAGE_CPUS: contextvars.ContextVar[float | None] = contextvars.ContextVar("stage_cpus",
                                                                          default=None)


def stage_cpus() -> int:
    """How many cores the running stage may keep busy (worker processes, thread pools).

    A scheduler packs stages by their declared CPUs, so a stage that forks one process per core
    of a 64-core node while declaring one CPU starves 63 other stages. Inside the runner this is
    the declared count (at least 1); elsewhere (a notebook, a test) every core of the process.
    """
    granted = _STAGE_CPUS.get()
    if granted is None:
        return cpu_count()
    return max(1, min(int(granted), cpu_count()))


@contextlib.contextmanager
def cpu_budget(cpus: float | None) -> Iterator[None]:
    """Run the body with ``stage_cpus()`` reporting ``cpus`` (None: no limit)."""
    token = _STAGE_CPUS.set(cpus)
    try:
        yield
    finally:
        _STAGE_CPUS.reset(token)


def beside(fn: Callable[[], T]) -> Future[T]:
    """``fn()`` on a second thread when the running stage was granted two CPUs or more, else
    here and now; either way a future of its result. For work that releases the GIL (zlib,
    numba ``nogil`` kernels, Embree) beside the stage's own, such as saving a dense mesh while
    its metrics are computed: a stage never runs more threads than it was granted CPUs."""
    if stage_cpus() >= 2:
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stage-beside")
        try:
            return pool.submit(contextvars.copy_context().run, fn)  # same CPU budget
        finally:
            pool.shutdown(wait=False)  # the thread ends with fn
    done: Future[T] = Future()
    try:
        done.set_result(fn())
    except BaseException as exc:  # noqa: BLE001 - raised again by .result(), like a thread's
        done.set_exception(exc)
    return done


"""The stage contract: ``(AssetState, Options) -> StageResult``, provenance added here.

A stage module defines a frozen ``Options`` dataclass (validated in ``__post_init__``) and one
function decorated with ``@stage(...)``. The decorator, not the body, records provenance (name,
version, options hash, input and output hashes, duration, host, device, memory) and tags any
``AssetError`` with the stage's name. It never catches errors: the runner decides what a
failure means for the asset.
"""

from __future__ import annotations

import dataclasses
import os
import resource
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .errors import AssetError, OptionsError
from .hashing import sha256_obj
from .types import AssetState, Resources, StageRecord, StageResult

O = TypeVar("O")


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def options_dict(options: Any) -> dict[str, Any]:
    if options is None:
        return {}
    if dataclasses.is_dataclass(options):
        return dataclasses.asdict(options)
    return dict(options)


@dataclass(frozen=True)
class Stage(Generic[O]):
    """A named, versioned stage with its options type and declared resources."""

    name: str
    version: str
    options_type: type
    resources: Resources
    fn: Callable[[AssetState, Any], StageResult]

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
        try:
            result = self.fn(state, options)
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


def stage(name: str, version: str, options: type, resources: Resources = Resources()):
    """Declare a stage. The options type must be a frozen dataclass."""
    if not (dataclasses.is_dataclass(options) and options.__dataclass_params__.frozen):  # type: ignore[attr-defined]
        raise TypeError(f"stage {name}: options must be a frozen dataclass")

    _name_options(options, name)

    def wrap(fn: Callable[[AssetState, Any], StageResult]) -> Stage:
        st = Stage(name=name, version=version, options_type=options, resources=resources, fn=fn)
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

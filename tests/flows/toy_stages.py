"""Tiny real stages for runner tests (importable by Ray workers through PYTHONPATH)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import ClassVar

from assetfactory.core.errors import InputError
from assetfactory.core.stage import check, stage
from assetfactory.core.types import AssetState, Resources, StageResult
from assetfactory.models import registry
from assetfactory.tasks.generate import GenerateOptions, backend_config, build_generator


@dataclass(frozen=True)
class CountOptions:
    n: int = 1

    def __post_init__(self):
        check(self.n >= 0, "n must be >= 0")


@stage("count", "1", CountOptions, Resources(cpus=0.5))
def count(state: AssetState, options: CountOptions) -> StageResult:
    return StageResult(metrics={"count": int(state.metrics.get("count", 0)) + options.n})


@stage("picky", "1", CountOptions, Resources(cpus=0.5))
def picky(state: AssetState, options: CountOptions) -> StageResult:
    if state.sku.startswith("bad"):
        raise InputError(f"{state.sku} is bad", "make it good")
    if state.sku.startswith("bug"):
        raise RuntimeError("unexpected")
    if state.sku.startswith("die"):
        os._exit(3)
    return StageResult(metrics={"picky": True})


@dataclass(frozen=True)
class NapOptions:
    """seconds: how long ``nap`` sleeps for SKUs starting with "slow"; pid_dir: where it
    writes the worker's PID while it sleeps (fault tests kill that worker)."""

    seconds: float = 0.0
    pid_dir: str = ""
    #: "wait*" SKUs sleep until this file exists (at most ``seconds``) and report whether it
    #: appeared (``released``)
    until: str = ""


@stage("nap", "1", NapOptions, Resources(cpus=1))
def nap(state: AssetState, options: NapOptions) -> StageResult:
    """Sleeps forever for "hang*" SKUs; for "stuck*" SKUs it blocks the timeout signal first,
    as native code that never returns to Python would; "slow*" SKUs sleep ``seconds``."""
    import signal
    import time
    from pathlib import Path

    if options.pid_dir:
        Path(options.pid_dir, f"{state.sku}.{os.getpid()}.pid").write_text(str(os.getpid()))
    if state.sku.startswith("hang"):
        while True:
            time.sleep(3600)
    if state.sku.startswith("stuck"):
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        try:
            time.sleep(3600)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGALRM})
    if state.sku.startswith("slow"):
        time.sleep(options.seconds)
    if state.sku.startswith("wait"):
        end = time.monotonic() + options.seconds
        while not Path(options.until).exists() and time.monotonic() < end:
            time.sleep(0.05)
        return StageResult(metrics={"napped": True, "released": Path(options.until).exists()})
    return StageResult(metrics={"napped": True})


@dataclass(frozen=True)
class FlakyOptions:
    """failures: how many times ``flaky`` fails before it succeeds, counted in ``count_dir``;
    error: "connection" (a transient fault) or "input" (the asset's own problem)."""

    failures: int = 2
    count_dir: str = ""
    error: str = "connection"


@stage("flaky", "1", FlakyOptions, Resources(cpus=1))
def flaky(state: AssetState, options: FlakyOptions) -> StageResult:
    from pathlib import Path

    tries = Path(options.count_dir, f"{state.sku}.tries")
    n = int(tries.read_text()) + 1 if tries.exists() else 1
    tries.write_text(str(n))
    if n <= options.failures:
        if options.error == "input":
            raise InputError("the photo is corrupt", "export it again")
        raise ConnectionRefusedError(111, "Connection refused")
    return StageResult(metrics={"tries": n})


@dataclass(frozen=True)
class CpuOptions:
    pass


@stage("cpus", "1", CpuOptions, Resources(cpus=2))
def cpus(state: AssetState, options: CpuOptions) -> StageResult:
    from assetfactory.core.stage import stage_cpus

    return StageResult(metrics={"stage_cpus": stage_cpus()})


# ---------------------------------------------------------------------------- a GPU backend

BUILDS_DIR = os.environ.get("TOY_BUILDS_DIR", "")


@dataclass(frozen=True)
class ToyGpuConfig:
    """A backend that declares half a GPU and notes each build (weights load) in a file."""

    name: ClassVar[str] = "toygpu"
    device: str = "cuda"
    resolution: int = 128

    def build(self):
        import uuid
        from pathlib import Path

        if BUILDS_DIR:
            Path(BUILDS_DIR, f"{os.getpid()}-{uuid.uuid4().hex}").write_text("built")
        return self

    def generate(self, request):
        return os.getpid()

    def weights_sha256(self):
        return None

    def resources(self) -> Resources:
        return Resources(cpus=0.5, gpus=0.5)


registry.register("toygpu", ToyGpuConfig)  # the test's workers import this module by name


@stage("generate", "1", GenerateOptions, Resources(cpus=1))
def toygen(state: AssetState, options: GenerateOptions) -> StageResult:
    gen = build_generator(backend_config(options.backend, options))
    return StageResult(metrics={"generate_pid": gen.generate(None),
                                "cuda_visible": os.environ.get("CUDA_VISIBLE_DEVICES", "")})

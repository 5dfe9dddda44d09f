"""Stages that do nothing, for measuring what the executor costs per stage execution
(benchmarks/scale.py dispatch). Ray workers import this module by name (PYTHONPATH)."""

from __future__ import annotations

from dataclasses import dataclass

from assetfactory.core.stage import stage
from assetfactory.core.types import AssetState, Resources, StageResult


@dataclass(frozen=True)
class NoOptions:
    step: int = 0


@stage("noop", "1", NoOptions, Resources(cpus=1))
def noop(state: AssetState, options: NoOptions) -> StageResult:
    return StageResult(metrics={f"noop{options.step}": options.step})

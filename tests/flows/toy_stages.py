"""Tiny real stages for runner tests (importable by Ray workers through PYTHONPATH)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from assetfactory.core.errors import InputError
from assetfactory.core.stage import check, stage
from assetfactory.core.types import AssetState, Resources, StageResult


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

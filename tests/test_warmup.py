"""The one warm-up compiles every numba kernel of the project (uv's included)."""

from __future__ import annotations

from typer.testing import CliRunner

from assetfactory.cli import app
from assetfactory.warmup import KERNEL_MODULES, kernels, uncompiled


def test_warmup_compiles_every_kernel():
    result = CliRunner().invoke(app, ["warmup"])
    assert result.exit_code == 0, result.output
    assert "compiled and cached" in result.output
    found = kernels()
    assert len(found) >= 25
    assert {name.rsplit(".", 1)[0] for name in found} == set(KERNEL_MODULES)
    assert "assetfactory.algorithms._packing_numba.pack" in found
    assert "assetfactory.geometry._raster_numba.coverage" in found
    assert not uncompiled()


def test_every_kernel_module_caches_on_disk():
    for name, k in kernels().items():
        assert type(k._cache).__name__ == "FunctionCache", f"{name} is not cache=True"

"""The command line's run options: backend fields, and a run that cannot start exits 2 with
the reason and no traceback."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from assetfactory.cli import _key_values, app


def test_backend_options_are_key_values():
    assert _key_values(["weights=/models/x", "steps=5", "fp16=true", "name=a=b"]) == {
        "weights": "/models/x", "steps": 5, "fp16": True, "name": "a=b"}
    with pytest.raises(typer.BadParameter, match="KEY=VALUE"):
        _key_values(["weights"])


@pytest.mark.slow
def test_a_run_that_cannot_start_exits_2_with_the_reason(tmp_path):
    """Through the real Prefect flow: the weights are checked before any work, and the reason
    is one message (Prefect's traceback of it is dropped)."""
    catalog = tmp_path / "catalog.csv"
    catalog.write_text("sku,images\nmug-1,front.png\n")
    absent = tmp_path / "[models]" / "seg"  # brackets must survive the console's markup
    res = CliRunner().invoke(app, ["run", str(catalog), "--out", str(tmp_path / "out"),
                                   "--profile", "web", "--mask-model", str(absent)])
    assert res.exit_code == 2, res.output
    text = " ".join(res.output.split())
    assert "cannot start the run" in text and "Traceback" not in res.output
    assert f"Copy the weights to {absent}" in text and "ASSETFACTORY_MASK_WEIGHTS" in text
    import ray

    assert not ray.is_initialized()  # the Ray started beside Prefect was stopped

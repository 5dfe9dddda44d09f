"""``assetfactory run`` refuses unusable input before any work: one line naming the problem and
the fix, exit code 2, no traceback, no retry."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from assetfactory.cli import app

runner = CliRunner()


def _run(*args: str):
    return runner.invoke(app, ["run", *args])


def test_unknown_backend_lists_the_choices_before_starting_anything(tmp_path):
    cat = tmp_path / "c.csv"
    cat.write_text("sku,mesh_uri\na,a.glb\n")
    res = _run(str(cat), "--backend", "hunyuan9", "--out", str(tmp_path / "out"))
    assert res.exit_code == 2
    assert "unknown generator backend 'hunyuan9'" in res.output
    assert "mesh" in res.output and "silhouette" in res.output
    assert "Traceback" not in res.output
    assert not (tmp_path / "out").exists()  # nothing started, nothing written


def test_unknown_profile_and_bad_timeout(tmp_path):
    cat = tmp_path / "c.csv"
    cat.write_text("sku,mesh_uri\na,a.glb\n")
    res = _run(str(cat), "--profile", "cinema", "--out", str(tmp_path / "out"))
    assert res.exit_code == 2 and "unknown profile 'cinema'" in res.output
    assert "ar, game, print, render, web" in res.output
    res = _run(str(cat), "--timeout", "uv=soon", "--out", str(tmp_path / "out"))
    assert res.exit_code == 2 and "--timeout 'uv=soon'" in res.output


@pytest.mark.slow
def test_a_catalog_that_cannot_be_read_stops_the_run_with_exit_code_2(tmp_path):
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect")}
    missing = tmp_path / "nope.csv"
    proc = subprocess.run([sys.executable, "-m", "assetfactory.cli", "run", str(missing),
                           "--out", str(tmp_path / "out")], env=env, capture_output=True,
                          text=True, timeout=900, check=False)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 2, text
    assert "Traceback" not in text and "retry" not in text.lower()
    lines = [ln for ln in text.splitlines() if "not found" in ln]
    assert len(lines) == 1 and str(missing) in lines[0] and "Fix:" in lines[0], text
    # the same through the flow in this process: no sku column, an empty file
    nosku = tmp_path / "nosku.csv"
    nosku.write_text("name,mesh_uri\na,a.glb\n")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    for path, words in ((nosku, "no 'sku' column"), (empty, "is empty")):
        res = _run(str(path), "--out", str(tmp_path / "out"))
        assert res.exit_code == 2, res.output
        assert words in res.output and "Fix:" in res.output and "Traceback" not in res.output

"""assetfactory.toml: input roots from a file, next to and merged with --input-root."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from assetfactory.core.config import effective_input_roots, load_settings
from assetfactory.core.errors import InputError


def test_no_file_means_no_extra_roots(tmp_path):
    assert load_settings(cwd=tmp_path).input_roots == ()


def test_roots_from_the_working_directory_file_relative_to_it(tmp_path, monkeypatch):
    (tmp_path / "assetfactory.toml").write_text(
        'input_roots = ["/mnt/photos", "shares/vendor", "s3://uploads/photos"]\n')
    s = load_settings(cwd=tmp_path)
    assert s.input_roots == ("/mnt/photos", str(tmp_path.resolve() / "shares/vendor"),
                             "s3://uploads/photos")
    monkeypatch.chdir(tmp_path)
    assert effective_input_roots(["/extra", "/mnt/photos"]) == [
        "/mnt/photos", str(tmp_path.resolve() / "shares/vendor"), "s3://uploads/photos", "/extra"]


@pytest.mark.parametrize("text,words", [
    ("input_roots = 'one'", "list"), ("input_root = ['/x']", "unknown setting"),
    ("input_roots = [", "cannot be read"), ("input_roots = ['']", "list")])
def test_a_bad_file_is_one_clear_error(tmp_path, text, words):
    cfg = tmp_path / "site.toml"
    cfg.write_text(text)
    with pytest.raises(InputError, match=words):
        load_settings(cfg)


def test_an_explicit_missing_file_is_an_error(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_settings(tmp_path / "nope.toml")


@pytest.mark.parametrize("command", [["run", "{catalog}"], ["sync", "{catalog}"],
                                     ["reprocess", "--failures", "some-run"]])
def test_the_cli_stops_on_a_missing_root_before_any_work(tmp_path, command):
    """Every command that reads catalog files takes the config file's roots and checks them."""
    from assetfactory.cli import app

    catalog = tmp_path / "cat.csv"
    catalog.write_text("sku,images\nX,a.png\n")
    cfg = tmp_path / "site.toml"
    cfg.write_text(f'input_roots = ["{tmp_path / "not-mounted"}"]\n')
    args = [a.format(catalog=catalog) for a in command]
    result = CliRunner().invoke(app, [*args, "--config", str(cfg),
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert "not-mounted" in result.output and "fix:" in result.output
    assert not Path(tmp_path / "out").exists()

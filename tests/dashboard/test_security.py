"""The token and the storage-root guard, without a browser."""

from __future__ import annotations

import os
import stat

import pytest

from assetfactory.dashboard.security import (
    TOKEN_ENV,
    UnsafePath,
    inside_root,
    key_for_uri,
    load_or_create_token,
    safe_key,
    token_matches,
)


def test_token_created_once_private_and_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    first, where = load_or_create_token()
    assert "(new)" in where and len(first) >= 24
    path = tmp_path / "assetfactory" / "dashboard-token"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again, where2 = load_or_create_token()
    assert again == first and "(new)" not in where2


def test_token_from_flag_then_env(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.setenv(TOKEN_ENV, "from-env")
    assert load_or_create_token("from-flag") == ("from-flag", "--token")
    assert load_or_create_token()[0] == "from-env"
    assert not (tmp_path / "assetfactory").exists()


@pytest.mark.parametrize("header,ok", [
    ("Bearer s3cret", True), ("bearer s3cret", True), ("Bearer s3cre", False),
    ("Bearer s3cret2", False), ("Basic s3cret", False), ("s3cret", False), ("", False),
    (None, False),
])
def test_token_matches(header, ok):
    assert token_matches("s3cret", header) is ok


def test_empty_expected_token_never_matches():
    assert not token_matches("", "Bearer ")


@pytest.mark.parametrize("key", [
    "../etc/passwd", "assets/../../etc/passwd", "assets/x/../../catalog/a.parquet",
    "/etc/passwd", "assets\\..\\x", "assets/./x.glb", "assets//x.glb", "assets/.hidden",
    "catalog/assets/run=1/a.parquet", "s3:/bucket/x", "", "assets/x\x00.glb",
])
def test_unsafe_keys_refused(key):
    with pytest.raises(UnsafePath):
        safe_key(key)


@pytest.mark.parametrize("key", ["assets/mug-01/mug-01.glb", "objects/ab/abcdef.png",
                                 "dashboard/renders/a1/view-front.png"])
def test_plain_keys_pass(key):
    assert safe_key(key) == key


def test_symlink_out_of_root_refused(tmp_path):
    root = tmp_path / "root"
    (root / "assets").mkdir(parents=True)
    secret = tmp_path / "secret.txt"
    secret.write_text("no")
    (root / "assets" / "link.png").symlink_to(secret)
    with pytest.raises(UnsafePath):
        inside_root(root, "assets/link.png")
    (root / "assets" / "ok.png").write_bytes(b"x")
    assert inside_root(root, "assets/ok.png") == (root / "assets" / "ok.png").resolve()


def test_key_for_uri(tmp_path):
    root = str(tmp_path)
    assert key_for_uri(root, f"{root}/assets/a/a.glb") == "assets/a/a.glb"
    assert key_for_uri(root, "/elsewhere/a.glb") is None
    assert key_for_uri(root, None) is None
    assert key_for_uri("s3://b/p", "s3://b/p/assets/a.glb") == "assets/a.glb"
    assert key_for_uri("s3://b/p", "s3://other/assets/a.glb") is None

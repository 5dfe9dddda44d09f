"""Local storage: keys stay inside the root, writes are atomic, a killed writer leaves nothing
visible, and written files are readable by others."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from assetfactory.core.storage import BadKey, LocalStorage, check_key, put_object
from tests.tools import assert_readers_see_whole_files


@pytest.mark.parametrize("key", ["", "/abs/x", "../x", "a/../../x", "a//b", "./a", "a/./b",
                                 "a\\b", "a/..", "a\x00b"])
def test_keys_that_leave_the_root_are_refused(tmp_path, key):
    store = LocalStorage(tmp_path / "root")
    with pytest.raises(BadKey):
        check_key(key)
    with pytest.raises(BadKey):
        store.put(key, b"x")
    assert not (tmp_path / "x").exists()


def test_a_symlinked_folder_cannot_lead_a_write_outside(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "assets").symlink_to(outside)
    with pytest.raises(BadKey, match="symlink"):
        LocalStorage(root).put("assets/a.glb", b"x")
    assert list(outside.iterdir()) == []


def test_written_files_are_readable_by_others_like_a_plain_open(tmp_path):
    store = LocalStorage(tmp_path)
    store.put("assets/a/a.glb", b"glb")
    (tmp_path / "plain").write_bytes(b"x")
    assert (tmp_path / "assets/a/a.glb").stat().st_mode & 0o777 == \
        (tmp_path / "plain").stat().st_mode & 0o777


def test_readers_only_ever_see_whole_files(tmp_path):
    assert_readers_see_whole_files(
        LocalStorage(tmp_path), lambda: (tmp_path / "assets/x/x.glb").read_bytes(),
        [1_500_000 + 500_000 * i for i in range(3)], reads=300)
    assert [p.name for p in (tmp_path / "assets/x").iterdir()] == ["x.glb"]


_WRITER = """
import sys
from assetfactory.core.storage import LocalStorage
store = LocalStorage(sys.argv[1])
payload = b"z" * (64 << 20)
while True:
    store.put("assets/big/big.bin", payload)
"""


def test_a_writer_killed_mid_write_leaves_no_partial_file(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path)])
    folder = tmp_path / "assets/big"
    try:
        deadline = time.time() + 60
        # kill it while a temp file is being filled and before the first rename
        while not (folder.exists() and any(p.name.startswith(".tmp-") for p in folder.iterdir())):
            assert time.time() < deadline and proc.poll() is None, "the writer never started"
            time.sleep(0.005)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    store = LocalStorage(tmp_path)
    final = folder / "big.bin"
    assert not final.exists() or final.stat().st_size == 64 << 20
    assert list(store.list("assets/")) == ([] if not final.exists() else ["assets/big/big.bin"])


def test_a_short_object_is_rewritten_not_trusted(tmp_path):
    store = LocalStorage(tmp_path)
    ref = put_object(store, b"complete bytes", ".npz")
    Path(ref.uri).write_bytes(b"comp")  # what a power cut without fsync could leave
    again = put_object(store, b"complete bytes", ".npz")
    assert Path(again.uri).read_bytes() == b"complete bytes"

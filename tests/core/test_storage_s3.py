"""Storage, fragments and catalog views against a real S3 server (SeaweedFS on loopback; the
``s3_endpoint`` fixture is in tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from assetfactory.core.storage import LocalStorage, S3Storage, open_storage, put_object, read_ref
from tests.tools import assert_readers_see_whole_files


def test_s3_put_get_list_and_content_addressing(s3_endpoint):
    store = open_storage("s3://factory/run1")
    assert isinstance(store, S3Storage)
    ref = put_object(store, b"hello mesh", ".npz")
    assert ref.uri.startswith("s3://factory/run1/objects/")
    assert read_ref(ref) == b"hello mesh"
    again = put_object(store, b"hello mesh", ".npz")
    assert again.uri == ref.uri and again.sha256 == ref.sha256
    store.put("assets/a/a.glb", b"glb")
    assert store.exists("assets/a/a.glb") and not store.exists("assets/b/b.glb")
    assert sorted(store.list("assets/")) == ["assets/a/a.glb"]


def test_catalog_fragments_and_views_on_s3(s3_endpoint, tmp_path):
    import sys

    from assetfactory.catalog.compact import compact
    from assetfactory.catalog.views import query

    sys.path.insert(0, str(Path(__file__).parent))
    from tests_catalog_helpers import write_attempts

    root = "s3://factory/catalog-test"
    write_attempts(open_storage(root), ["a", "b", "c"], failed={"b"})
    _, rows = query(root, "SELECT sku, status FROM assets ORDER BY sku")
    assert rows == [("a", "ok"), ("b", "failed"), ("c", "ok")]
    assert compact(root).rows == {"assets": 3, "stages": 3}
    _, rows2 = query(root, "SELECT sku, status FROM assets ORDER BY sku")
    assert rows2 == rows
    # the local layout is the same code path apart from the reader
    write_attempts(LocalStorage(tmp_path), ["a"], failed=set())
    assert query(str(tmp_path), "SELECT count(*) FROM assets")[1] == [(1,)]


def test_s3_readers_only_ever_see_whole_objects(s3_endpoint):
    reader = S3Storage("s3://factory/atomic")  # its own client, as another process would have
    assert_readers_see_whole_files(
        open_storage("s3://factory/atomic"), lambda: reader.get("assets/x/x.glb"),
        [1_000_000 + 400_000 * i for i in range(3)], reads=60)


def test_s3_keys_that_leave_the_prefix_are_refused(s3_endpoint):
    from assetfactory.core.storage import BadKey

    store = open_storage("s3://factory/keys")
    for key in ("../other/x", "/abs", "a//b", "a/./b"):
        with pytest.raises(BadKey):
            store.put(key, b"x")
    assert list(store.list("")) == []

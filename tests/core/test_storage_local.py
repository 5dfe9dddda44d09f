"""Local storage: content addresses, atomic writes, listing, reading back by reference."""

from __future__ import annotations

from assetfactory.core.storage import (
    ArtifactRef,
    LocalStorage,
    media_type_for,
    open_storage,
    put_object,
    read_ref,
)


def test_put_object_is_content_addressed_and_idempotent(tmp_path):
    store = LocalStorage(tmp_path)
    a = put_object(store, b"hello", ".png")
    b = put_object(store, b"hello", ".png")
    assert a == b and a.size == 5 and a.media_type == "image/png"
    assert a.uri.endswith(f"objects/{a.sha256[:2]}/{a.sha256}.png")
    assert read_ref(a) == b"hello" and read_ref(a.uri) == b"hello"


def test_named_put_get_list_and_no_temp_files(tmp_path):
    store = open_storage(str(tmp_path / "root"))
    ref = store.put("assets/x/x.glb", b"glb")
    (store.root / "assets" / "x" / ".tmp-partial.glb").write_bytes(b"half")  # a killed write
    assert isinstance(ref, ArtifactRef) and ref.media_type == "model/gltf-binary"
    assert store.get("assets/x/x.glb") == b"glb" and store.exists("assets/x/x.glb")
    assert list(store.list("assets")) == ["assets/x/x.glb"]
    assert list(store.list("nothing-here")) == []
    store.put("assets/x/x.glb", b"new")  # replaced atomically
    assert store.get(f"file://{ref.uri}") == b"new"
    assert not [p for p in (store.root / "assets" / "x").iterdir() if p.name.startswith(".tmp")
                and p.name != ".tmp-partial.glb"]


def test_media_types():
    assert media_type_for("a.usdz") == "model/vnd.usdz+zip"
    assert media_type_for("a.unknown") == "application/octet-stream"

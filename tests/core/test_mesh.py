"""The mesh type: attributes follow every topology change; bytes round-trip exactly."""

from __future__ import annotations

import numpy as np

from assetfactory.core.mesh import MeshData
from tests.builders import sphere


def _attributed() -> MeshData:
    mesh = sphere(1, label=3)
    n = mesh.n_vertices
    return mesh.replace(uv=np.linspace(0, 1, 2 * n).reshape(n, 2).astype(np.float32),
                        vertex_colors=np.arange(4 * n, dtype=np.uint8).reshape(n, 4) % 255,
                        vertex_normals=mesh.vertices.astype(np.float32))


def test_defaults_and_dtypes():
    mesh = MeshData([[0, 0, 0], [1, 0, 0], [0, 1, 0]], [0, 1, 2])
    assert mesh.vertices.dtype == np.float64 and mesh.faces.shape == (1, 3)
    assert mesh.faces.dtype == np.int64 and mesh.face_labels.tolist() == [0]
    assert (mesh.n_vertices, mesh.n_faces) == (3, 1)


def test_bytes_round_trip_keeps_every_attribute():
    mesh = _attributed()
    back = MeshData.from_bytes(mesh.to_bytes())
    for name in ("vertices", "faces", "face_labels", "uv", "vertex_colors", "vertex_normals"):
        np.testing.assert_array_equal(getattr(back, name), getattr(mesh, name))
        assert getattr(back, name).dtype == getattr(mesh, name).dtype


def test_subset_faces_remaps_every_attribute():
    mesh = _attributed()
    keep = np.arange(mesh.n_faces) % 3 == 0
    sub = mesh.subset_faces(keep)
    assert sub.n_faces == int(keep.sum()) and sub.faces.max() == sub.n_vertices - 1
    # every corner still points at the same position, UV, colour and normal
    for name in ("vertices", "uv", "vertex_colors", "vertex_normals"):
        np.testing.assert_array_equal(getattr(sub, name)[sub.faces],
                                      getattr(mesh, name)[mesh.faces[keep]])
    assert (sub.face_labels == 3).all()


def test_concatenate_offsets_indices_and_keeps_labels():
    a, b = sphere(1, label=0), sphere(1, centre=(3, 0, 0), label=1)
    both = MeshData.concatenate([a, b])
    assert both.n_faces == a.n_faces + b.n_faces
    np.testing.assert_array_equal(both.vertices[both.faces[a.n_faces:]], b.vertices[b.faces])
    assert set(both.face_labels.tolist()) == {0, 1}
    assert MeshData.concatenate([]).n_faces == 0


def test_transformed_mirror_keeps_faces_outward():
    mesh = sphere(2)
    mirror = np.diag([-1.0, 1, 1, 1])
    out = mesh.replace(vertex_normals=mesh.vertices.astype(np.float32)).transformed(mirror)
    v = out.vertices[out.faces]
    volume = np.einsum("ij,ij->i", v[:, 0], np.cross(v[:, 1], v[:, 2])).sum() / 6
    assert volume > 0  # winding flipped with the mirror
    np.testing.assert_allclose(out.vertex_normals, out.vertices, atol=1e-6)
    np.testing.assert_allclose(out.bounds(), mesh.bounds(), atol=1e-12)


def test_bytes_are_an_npz_with_compact_faces_and_old_files_still_load():
    import io

    mesh = _attributed()
    import zipfile

    data = mesh.to_bytes()
    with np.load(io.BytesIO(data)) as z:
        assert z["faces"].dtype == np.int32  # widened again on load (see the round trip)
    kinds = {i.filename: i.compress_type for i in zipfile.ZipFile(io.BytesIO(data)).infolist()}
    assert kinds["vertices.npy"] == zipfile.ZIP_STORED  # floats: deflate buys little
    assert kinds["faces.npy"] == zipfile.ZIP_DEFLATED
    buf = io.BytesIO()  # what earlier versions wrote
    np.savez_compressed(buf, vertices=mesh.vertices, faces=mesh.faces)
    back = MeshData.from_bytes(buf.getvalue())
    np.testing.assert_array_equal(back.faces, mesh.faces)

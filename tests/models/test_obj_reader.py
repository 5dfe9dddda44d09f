"""OBJ + MTL materials: maps with spaces and folders, cut-outs, emission, PBR extension."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from assetfactory.core.appearance import decode_image
from assetfactory.core.errors import InputError
from assetfactory.models.mesh import import_with_appearance
from assetfactory.models.obj_reader import parse_map, parse_mtl

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"

OBJ = """mtllib my materials.mtl
v 0 0 0
v 1 0 0
v 1 1 0
v 0 1 0
v 2 0 0
v 2 1 0
vt 0 0
vt 1 0
vt 1 1
vt 0 1
vn 0 0 1
usemtl wood oak
f 1/1/1 2/2/1 3/3/1
f 1/1/1 3/3/1 4/4/1
usemtl wicker
f 2/1/1 5/2/1 6/3/1
f 2/1/1 6/3/1 3/4/1
"""

MTL = """newmtl wood oak
Kd 1 1 1
Ns 100
map_Kd -o 0.5 0 -s 2 2 1 tex maps\\wood grain.png
Ke 0.1 0.2 0.3
Pm 0.5
Pr 0.25
newmtl wicker
Kd 0.8 0.6 0.4
Tr 1.0
map_d tex maps/holes.png
"""


def _png(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def _files(tmp_path: Path) -> Path:
    (tmp_path / "tex maps").mkdir()
    wood = np.zeros((4, 4, 3), np.uint8)
    wood[:2] = (200, 100, 50)
    (tmp_path / "tex maps" / "wood grain.png").write_bytes(_png(wood))
    holes = np.zeros((8, 8), np.uint8)
    holes[::2] = 255                                       # a binary cut-out pattern
    (tmp_path / "tex maps" / "holes.png").write_bytes(_png(holes))
    (tmp_path / "my materials.mtl").write_text(MTL)
    path = tmp_path / "chair.obj"
    path.write_text(OBJ)
    return path


def test_map_statement_keeps_spaces_and_options():
    name, opts = parse_map("-o 0.5 0 -s 2 2 1 -clamp on tex maps\\wood grain.png")
    assert name == "tex maps/wood grain.png"
    assert opts["-o"] == [0.5, 0.0] and opts["-s"] == [2.0, 2.0, 1.0] and opts["-clamp"] == ["on"]
    assert parse_mtl(MTL)["wicker"]["kd"] == [0.8, 0.6, 0.4]


def test_obj_materials_become_parts_with_their_look(tmp_path):
    mesh, info, app = import_with_appearance(str(_files(tmp_path)))
    assert info["source_materials"] == 2 and len(np.unique(mesh.face_labels)) == 2
    mats = {m.name: m for m in app.materials}
    wood, wicker = mats["wood oak"], mats["wicker"]
    assert wood.base_color is not None and wood.base_color.transform is not None
    assert wood.emissive_factor == pytest.approx((0.1, 0.2, 0.3))
    assert (wood.metallic_factor, wood.roughness_factor) == (0.5, 0.25)
    assert wood.alpha_mode == "OPAQUE"        # Tr 1 is "opaque" in many exporters
    # map_d: a binary cut-out becomes MASK, its luminance the base colour's alpha
    assert wicker.alpha_mode == "MASK" and wicker.base_color is not None
    alpha = decode_image(app.images[wicker.base_color.image].data)[..., 3]
    assert set(np.unique(alpha)) == {0, 255}
    # OBJ's V-up coordinates are stored as glTF's t-down
    s = app.surface
    assert s.texcoords[0][:, 1].min() >= 0 and np.isclose(s.texcoords[0][:, 1].max(), 1)


def test_missing_map_names_the_texture(tmp_path):
    path = _files(tmp_path)
    (tmp_path / "tex maps" / "holes.png").unlink()
    with pytest.raises(InputError, match="holes.png") as err:
        import_with_appearance(str(path))
    assert "folder" in err.value.fix


def test_shared_capsule_keeps_its_jpeg():
    path = SHARED / "models" / "trimesh_capsule" / "capsule.obj"
    if not path.exists():
        pytest.skip(f"shared test data not found at {path.resolve()}")
    _, _, app = import_with_appearance(str(path))
    m = app.materials[0]
    assert m.base_color is not None and app.images[m.base_color.image].mime == "image/jpeg"
    assert m.alpha_mode == "OPAQUE"

"""Golden output hashes: each stage, on a fixed committed input, must give the output recorded
for its version.

Why: an asset's identity names stage versions, not stage code (``flows/identity.py``), so a
re-run skips an asset made by older code unless the stage's version changed with its output.
This module runs every stage of the ``ar`` recipe (tiny sizes) on the inputs committed under
``golden/`` and compares a canonical hash of each output artifact with ``golden/golden.json``,
which records them per stage *and version*. An output that changed while the version did not
is the bug this catches; the message says to bump the version and regenerate:

    make golden                      # = .venv/bin/python tests/tasks/golden_stages.py

which recomputes every stage's outputs from the committed inputs (fast; commit the changed
``golden.json``). ``--inputs`` also rebuilds the committed inputs (the demo mug's photos and
every stage's input artifacts, by running the chain): needed only when an artifact's format
changes, since each stage keeps being tested on its own fixed input otherwise.

Canonical forms, so that a hash changes when the output does and not when a library encodes the
same output differently: meshes (``.npz``) as their arrays, floats rounded to 1e-5; images as
decoded pixels (the PNG encoder's bytes vary with zlib); JSON with floats rounded to 1e-6; GLB as
its JSON (buffer layout dropped) with each accessor's values and each image's pixels; USDZ as
every prim's attributes read through OpenUSD plus its images' pixels (usd-core's binary layout
varies by version). The poster is rendered (Mesa llvmpipe here, a GPU elsewhere): it is hashed
as 8x8-block means in 32 levels. The ``metrics`` stage writes no file: its metrics are hashed,
floats to 3 significant digits (several come from renders).
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import struct
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from assetfactory.core.hashing import sha256_bytes, stable_json
from assetfactory.core.storage import ArtifactRef, media_type_for
from assetfactory.core.types import AssetState, ImageSpec, SkuSpec
from assetfactory.flows.recipe import Recipe, build_recipe

GOLDEN = Path(__file__).resolve().parent / "golden"
GOLDEN_FILE = GOLDEN / "golden.json"
REGENERATE = "make golden   (or: .venv/bin/python tests/tasks/golden_stages.py)"
SKU = "Golden Mug 01"
VIEWS = (("front", 0.0, 15.0), ("right", 90.0, 15.0), ("back", 180.0, 15.0),
         ("left", 270.0, 15.0))
PHOTO_PX = 192
#: Small enough to run in seconds, large enough that every stage does real work.
OVERRIDES: dict[str, dict[str, Any]] = {
    "ingest": {"size": 128},
    "generate": {"resolution": 48},
    "simplify": {"target_tris": 1200},
    "uv": {"resolution": 256},
    "bake": {"size": 128, "error_samples": 2000},
    "texture": {"size": 128},
    "export": {"texture_size": 128, "poster_size": 64},
}


def golden_recipe() -> Recipe:
    return build_recipe("ar", "silhouette", OVERRIDES)


def golden_spec() -> SkuSpec:
    return SkuSpec(sku=SKU, title="Golden mug", category="kitchen", material="ceramic",
                   images=tuple(ImageSpec(f"photos/{label}.png", label, az, el)
                                for label, az, el in VIEWS),
                   width_mm=120.0, height_mm=100.0, depth_mm=85.0,
                   metadata={"fov_deg": "30", "camera_distance": "2.5"},
                   catalog_root=str(GOLDEN))


# --------------------------------------------------------------------------- canonical forms


def _round(a: np.ndarray, decimals: int) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype.kind == "f":
        return np.round(a.astype(np.float64), decimals) + 0.0  # + 0.0 folds -0.0 into 0.0
    return a


def _array_digest(a: np.ndarray, decimals: int = 5) -> str:
    a = np.ascontiguousarray(_round(a, decimals))
    return sha256_bytes(f"{a.dtype.str}{a.shape}".encode() + a.tobytes())


def _json_floats(obj: Any, decimals: int) -> Any:
    if isinstance(obj, float):
        return round(obj, decimals) + 0.0
    if isinstance(obj, dict):
        return {k: _json_floats(v, decimals) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_json_floats(v, decimals) for v in obj]
    return obj


def _pixels(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im)


def _mesh_form(data: bytes) -> dict:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return {k: _array_digest(z[k]) for k in sorted(z.files)}


def _poster_form(data: bytes) -> str:
    px = _pixels(data).astype(np.float64)
    h, w = px.shape[:2]
    blocks = px[: h - h % 8, : w - w % 8].reshape(h // 8, 8, w // 8, 8, -1).mean(axis=(1, 3))
    return _array_digest(np.floor(blocks / 8.0).astype(np.int16))


def _glb_form(data: bytes) -> dict:
    json_len = struct.unpack_from("<I", data, 12)[0]
    doc = json.loads(data[20:20 + json_len])
    blob = b""
    if len(data) > 20 + json_len:
        bin_len = struct.unpack_from("<I", data, 20 + json_len)[0]
        blob = data[28 + json_len:28 + json_len + bin_len]
    views = doc.pop("bufferViews", [])
    doc.pop("buffers", None)
    comp = {5120: np.int8, 5121: np.uint8, 5122: np.int16, 5123: np.uint16, 5125: np.uint32,
            5126: np.float32}
    width = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}
    for acc in doc.get("accessors", []):
        view = views[acc.pop("bufferView")]
        start = view.get("byteOffset", 0) + acc.pop("byteOffset", 0)
        n = acc["count"] * width[acc["type"]]
        dtype = np.dtype(comp[acc["componentType"]])
        stride = view.get("byteStride")
        if stride and stride != dtype.itemsize * width[acc["type"]]:
            rows = [np.frombuffer(blob, dtype, width[acc["type"]], start + i * stride)
                    for i in range(acc["count"])]
            values = np.concatenate(rows) if rows else np.zeros(0, dtype)
        else:
            values = np.frombuffer(blob, dtype, n, start)
        acc["values"] = _array_digest(values)
    for image in doc.get("images", []):
        view = views[image.pop("bufferView")]
        start = view.get("byteOffset", 0)
        image["pixels"] = _array_digest(_pixels(blob[start:start + view["byteLength"]]))
    return _json_floats(doc, 5)


def _usdz_form(data: bytes) -> dict:
    from pxr import Sdf, Usd

    out: dict[str, Any] = {}
    with zipfile.ZipFile(io.BytesIO(data)) as z, tempfile.TemporaryDirectory() as tmp:
        for name in sorted(z.namelist()):
            if name.lower().endswith((".png", ".jpg", ".jpeg")):
                out[name] = _array_digest(_pixels(z.read(name)))
            elif name.lower().endswith((".usdc", ".usda", ".usd")):
                path = Path(tmp) / Path(name).name
                path.write_bytes(z.read(name))
                stage = Usd.Stage.Open(str(path))
                prims = {}
                for prim in stage.Traverse():
                    attrs = {}
                    for attr in prim.GetAttributes():
                        value = attr.Get()
                        if value is None:
                            continue
                        if isinstance(value, Sdf.AssetPath):  # the authored path, not where
                            attrs[attr.GetName()] = value.path  # this machine resolved it
                            continue
                        try:
                            attrs[attr.GetName()] = _array_digest(np.asarray(value))
                        except (TypeError, ValueError):
                            attrs[attr.GetName()] = str(value)
                    rels = {r.GetName(): [str(t) for t in r.GetTargets()]
                            for r in prim.GetRelationships()}
                    prims[str(prim.GetPath())] = {"type": str(prim.GetTypeName()),
                                                  "attrs": attrs, "rels": rels}
                root = stage.GetRootLayer()
                out[name] = {"prims": prims, "defaultPrim": root.defaultPrim,
                             "upAxis": str(stage.GetMetadata("upAxis")),
                             "metersPerUnit": stage.GetMetadata("metersPerUnit")}
                del stage
            else:
                out[name] = sha256_bytes(z.read(name))
    return out


def canonical(key: str, data: bytes, uri: str) -> str:
    """The canonical hash of one output artifact (see the module docstring)."""
    ext = Path(uri).suffix.lower()
    if key == "poster":
        form: Any = _poster_form(data)
    elif ext == ".npz":
        form = _mesh_form(data)
    elif ext in (".png", ".jpg", ".jpeg"):
        form = _array_digest(_pixels(data))
    elif ext == ".json":
        form = _json_floats(json.loads(data), 6)
    elif ext == ".glb":
        form = _glb_form(data)
    elif ext == ".usdz":
        form = _usdz_form(data)
    else:
        form = sha256_bytes(data)
    return sha256_bytes(stable_json(form).encode())[:16]


def _metrics_form(metrics: dict) -> str:
    def sig(v):
        if isinstance(v, float) and not isinstance(v, bool):
            return float(f"{v:.3g}") + 0.0
        return v

    return sha256_bytes(stable_json({k: sig(v) for k, v in metrics.items()}).encode())[:16]


# --------------------------------------------------------------------------- running stages


def _committed_ref(name: str) -> ArtifactRef:
    path = GOLDEN / "objects" / name
    data = path.read_bytes()
    return ArtifactRef(str(path), sha256_bytes(data), len(data), media_type_for(name))


def run_stage(name: str, inputs: dict[str, str], store: Path, recipe: Recipe | None = None):
    """Run stage ``name`` of the golden recipe on committed inputs (key -> object file name)."""
    recipe = recipe or golden_recipe()
    call = next(c for c in recipe.calls if c.name == name)
    state = AssetState(sku=SKU, spec=golden_spec(), store_uri=str(store), run_id="golden",
                       attempt_id="golden", asset_id="golden",
                       artifacts={k: _committed_ref(v) for k, v in inputs.items()})
    return call.stage()(state, call.options)


def outputs_of(result) -> dict[str, str]:
    out = {k: canonical(k, Path(ref.uri).read_bytes(), ref.uri)
           for k, ref in sorted(result.artifacts.items())}
    if not out:
        out["metrics"] = _metrics_form(dict(result.metrics))
    return out


def load_golden() -> dict:
    return json.loads(GOLDEN_FILE.read_text())


def check_stage(name: str, golden: dict | None = None, recipe: Recipe | None = None
                ) -> list[str]:
    """Problems with stage ``name`` against the golden file (empty when it matches)."""
    golden = golden or load_golden()
    recipe = recipe or golden_recipe()
    stage = next(c for c in recipe.calls if c.name == name).stage()
    entry = golden["stages"].get(name)
    if entry is None:
        return [f"stage {name!r} has no golden entry: regenerate with {REGENERATE}"]
    if entry["version"] != stage.version:
        return [(f"stage {name!r} is version {stage.version} but golden.json records version "
                 f"{entry['version']}: regenerate the golden file with {REGENERATE} and commit "
                 "it")]
    with tempfile.TemporaryDirectory(prefix="golden-") as tmp:
        got = outputs_of(run_stage(name, entry["inputs"], Path(tmp), recipe))
    want = entry["outputs"]
    changed = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
    if not changed:
        return []
    return [(f"stage {name!r} version {stage.version}: output(s) {', '.join(changed)} changed "
             f"on the fixed golden input while the version stayed {stage.version}. If the change "
             f"is meant, bump the version in @stage(...) of tasks/{name}.py (so re-runs re-make "
             f"assets made by the old code), then regenerate with {REGENERATE} and commit "
             "tests/tasks/golden/golden.json. If it is not meant, the stage is not "
             "deterministic or something changed its output by accident.")]


# --------------------------------------------------------------------------- regeneration


def _write_photos() -> None:
    from assetfactory.core.artifacts import encode_png
    from assetfactory.demo.products import build_product
    from assetfactory.demo.shoot import shoot

    product = build_product(0)  # the demo's mug: a body and a handle, textured
    for label, az, el in VIEWS:
        img = shoot(product.mesh, product.texture, label, az, el, size=PHOTO_PX)
        path = GOLDEN / "photos" / f"{label}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encode_png(img))


def _commit_object(ref: ArtifactRef) -> str:
    data = Path(ref.uri).read_bytes()
    name = f"{sha256_bytes(data)[:24]}{Path(ref.uri).suffix}"
    (GOLDEN / "objects").mkdir(parents=True, exist_ok=True)
    target = GOLDEN / "objects" / name
    if not target.exists():
        target.write_bytes(data)
    return name


def rebuild_inputs() -> dict[str, dict[str, str]]:
    """Photos, then the chain: each stage's input artifacts, committed under ``objects/``."""
    _write_photos()
    shutil.rmtree(GOLDEN / "objects", ignore_errors=True)
    recipe = golden_recipe()
    inputs: dict[str, dict[str, str]] = {}
    current: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="golden-") as tmp:
        for call in recipe.calls:
            inputs[call.name] = dict(current)
            result = run_stage(call.name, current, Path(tmp), recipe)
            for key, ref in result.artifacts.items():
                current[key] = _commit_object(ref)
    return inputs


def regenerate(with_inputs: bool = False) -> dict:
    recipe = golden_recipe()
    if with_inputs or not GOLDEN_FILE.exists():
        inputs = rebuild_inputs()
    else:
        inputs = {n: e["inputs"] for n, e in load_golden()["stages"].items()}
    stages = {}
    with tempfile.TemporaryDirectory(prefix="golden-") as tmp:
        for call in recipe.calls:
            result = run_stage(call.name, inputs[call.name], Path(tmp) / call.name, recipe)
            stages[call.name] = {"version": call.stage().version, "inputs": inputs[call.name],
                                 "outputs": outputs_of(result)}
    golden = {"about": "golden output hashes per stage version; see tests/tasks/golden_stages.py",
              "regenerate": REGENERATE, "sku": SKU, "overrides": OVERRIDES, "stages": stages}
    GOLDEN_FILE.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")
    return golden


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", action="store_true",
                        help="also rebuild the committed inputs (photos and stage inputs)")
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 on a change")
    args = parser.parse_args(argv)
    if args.check:
        golden = load_golden()
        problems = [p for c in golden_recipe().calls for p in check_stage(c.name, golden)]
        print("\n".join(problems) or "every stage matches golden.json")
        return 1 if problems else 0
    before = load_golden() if GOLDEN_FILE.exists() else {"stages": {}}
    after = regenerate(args.inputs)
    for name, entry in after["stages"].items():
        old = before["stages"].get(name, {})
        if old.get("outputs") != entry["outputs"] or old.get("version") != entry["version"]:
            note = "" if old.get("version") != entry["version"] or not old else \
                "  <- output changed, version did not: bump it"
            print(f"{name} {old.get('version', '-')} -> {entry['version']}{note}")
    print(f"wrote {GOLDEN_FILE}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())


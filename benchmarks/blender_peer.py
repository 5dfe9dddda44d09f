"""Blender (Cycles, CPU) as the bake peer of benchmarks/uv_bake.py.

Bakes a tangent-space normal map (selected-to-active, dense -> low) and, separately, ambient
occlusion on the low mesh with the same UVs as our bake, in a headless Blender (Debian package
``blender``; the benchmark skips this peer when no ``blender`` is on PATH). Times are those of
``bpy.ops.object.bake`` alone, measured inside Blender (import and start-up excluded), so they
compare with our stage's own clock minus its file I/O.

The low mesh is written as OBJ with welded positions and per-corner UVs (seams share
positions, so Blender's smooth normals run across them, as ours do); the dense mesh as OBJ.
Both use the same axes, so no conversion matters. Blender 3.4's normal bake uses its own
MikkTSpace frame; the error of its map is measured with the same decoder as ours (our
MikkTSpace-style frame), which adds the small difference between the two frames to its figure.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import textwrap
from pathlib import Path

import numpy as np

from assetfactory.core.mesh import MeshData

SCRIPT = textwrap.dedent('''
    import bpy, json, sys, time
    a = json.loads(sys.argv[sys.argv.index("--") + 1])
    bpy.ops.wm.read_factory_settings(use_empty=True)

    def load(path):
        bpy.ops.wm.obj_import(filepath=path, forward_axis="NEGATIVE_Z", up_axis="Y")
        obj = bpy.context.selected_objects[0]
        obj.data.polygons.foreach_set("use_smooth", [True] * len(obj.data.polygons))
        obj.data.update()
        return obj

    dense, low = load(a["dense"]), load(a["low"])
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.use_denoising = False
    scene.render.threads_mode = "AUTO"
    bake = scene.render.bake
    bake.margin = a["margin"]
    bake.normal_space = "TANGENT"
    bake.cage_extrusion = a["extrusion"]
    bake.max_ray_distance = a["max_ray"]
    out = {}
    for kind, samples, selected in (("NORMAL", 1, True), ("AO", a["ao_samples"], False)):
        img = bpy.data.images.new(kind.lower(), a["size"], a["size"], float_buffer=False)
        if kind == "NORMAL":
            img.colorspace_settings.name = "Non-Color"
        mat = bpy.data.materials.new(kind.lower())
        mat.use_nodes = True
        node = mat.node_tree.nodes.new("ShaderNodeTexImage")
        node.image = img
        mat.node_tree.nodes.active = node
        low.data.materials.clear()
        low.data.materials.append(mat)
        scene.cycles.samples = samples
        bpy.ops.object.select_all(action="DESELECT")
        if selected:
            dense.select_set(True)
        low.select_set(True)
        bpy.context.view_layer.objects.active = low
        bake.use_selected_to_active = selected
        dense.hide_render = not selected  # AO: the low mesh alone occludes, as in ours
        t = time.perf_counter()
        bpy.ops.object.bake(type=kind, use_selected_to_active=selected)
        out[kind.lower() + "_seconds"] = time.perf_counter() - t
        img.filepath_raw = a[kind.lower() + "_png"]
        img.file_format = "PNG"
        img.save()
    print("RESULT " + json.dumps(out))
''')


def available() -> str | None:
    return shutil.which("blender")


def write_obj(path: Path, mesh: MeshData, with_uv: bool) -> None:
    """OBJ with welded positions; with ``with_uv`` each corner keeps its own UV (vt)."""
    pos, inv = np.unique(mesh.vertices, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    with open(path, "w") as fh:
        fh.write("o mesh\n")
        np.savetxt(fh, pos, fmt="v %.7f %.7f %.7f")
        if with_uv:
            np.savetxt(fh, np.asarray(mesh.uv, np.float64), fmt="vt %.7f %.7f")
            f = mesh.faces
            corners = np.stack([inv[f] + 1, f + 1], axis=2).reshape(len(f), 6)
            fh.write("s 1\n")
            np.savetxt(fh, corners, fmt="f %d/%d %d/%d %d/%d")
        else:
            fh.write("s 1\n")
            np.savetxt(fh, inv[mesh.faces] + 1, fmt="f %d %d %d")


def bake(low: MeshData, dense: MeshData, size: int, ao_samples: int = 16, margin: int = 4,
         timeout_s: float = 1800) -> dict:
    """Blender's normal + AO bake of ``low`` (with UVs) from ``dense``: seconds of each bake
    and the two maps as arrays (normal: (S, S, 3) uint8; AO: (S, S) float in [0, 1])."""
    from PIL import Image

    diag = float(np.linalg.norm(np.ptp(low.vertices, axis=0))) or 1.0
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        write_obj(d / "low.obj", low, True)
        write_obj(d / "dense.obj", dense, False)
        args = {"low": str(d / "low.obj"), "dense": str(d / "dense.obj"), "size": size,
                "margin": margin, "extrusion": 0.02 * diag, "max_ray": 0.05 * diag,
                "ao_samples": ao_samples, "normal_png": str(d / "normal.png"),
                "ao_png": str(d / "ao.png")}
        proc = subprocess.run([available() or "blender", "-b", "--factory-startup", "-noaudio",
                               "--python-expr", SCRIPT, "--", json.dumps(args)],
                              capture_output=True, text=True, timeout=timeout_s, check=False)
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            raise RuntimeError(f"blender failed (exit {proc.returncode}): "
                               f"{(proc.stderr or proc.stdout)[-800:]}")
        out = json.loads(line[len("RESULT "):])
        with Image.open(d / "normal.png") as im:
            out["normal"] = np.asarray(im.convert("RGB"))
        with Image.open(d / "ao.png") as im:
            out["ao"] = np.asarray(im.convert("L"), np.float32) / 255.0
    return out

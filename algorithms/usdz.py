"""usdz: the finished asset as a USDZ package for AR Quick Look (the ``ar`` profile).

Why usd-core and these choices: AR Quick Look reads only USDZ with UsdPreviewSurface materials,
so the package holds one binary layer (``.usdc``) and its PNG/JPEG textures, written by
``UsdUtils.CreateNewARKitUsdzPackage`` (which flattens the layer and aligns the files as ARKit
requires). The stage follows the asset frame unchanged: ``metersPerUnit = 1``, ``upAxis = Y``,
front +Z, origin at the bottom centre; ``defaultPrim`` is the asset's root Xform. USD's ``st``
has t up, as the project's UVs (V up), so UVs are written as they are (glTF is the one that
flips). One ``UsdPreviewSurface`` per material of the ``materials`` table, bound per part with
``GeomSubset``s of the ``materialBind`` family; the ORM texture feeds occlusion (r), roughness
(g) and metallic (b) in raw colour space, the normal map goes through scale 2 / bias -1.

This module writes the file only; ``core/validate.py::validate_usdz`` checks it.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.mesh import MeshData

#: Texture roles and the file name each gets inside the package.
ROLES = ("base_color", "normal", "orm")


@dataclass(frozen=True)
class UsdMaterial:
    """One material: the faces it covers and its constant factors (used without textures)."""

    name: str
    faces: np.ndarray
    metallic: float = 0.0
    roughness: float = 0.6
    base_color: tuple[float, float, float] = (0.8, 0.8, 0.8)   # linear, when no texture


@dataclass(frozen=True)
class UsdTextures:
    """Encoded images (PNG or JPEG bytes) by role; a role that is absent is not used."""

    images: dict[str, tuple[bytes, str]] = field(default_factory=dict)  # role -> (data, ext)


def usd_name(name: str) -> str:
    """A valid USD prim name (``[A-Za-z_][A-Za-z0-9_]*``) from an asset or material name."""
    out = re.sub(r"[^A-Za-z0-9_]", "_", name)
    return out if re.match(r"[A-Za-z_]", out) else f"_{out}"


def build_usdz(mesh: MeshData, name: str, materials: list[UsdMaterial],
               textures: UsdTextures) -> bytes:
    """The USDZ package bytes for ``mesh`` (asset frame, metres) and its materials."""
    from pxr import Sdf, UsdUtils

    with tempfile.TemporaryDirectory(prefix="assetfactory-usdz-") as tmp:
        root = Path(tmp)
        tex_paths = {}
        for role, (data, ext) in textures.images.items():
            rel = f"./textures/{role}.{ext}"
            (root / "textures").mkdir(exist_ok=True)
            (root / rel).write_bytes(data)
            tex_paths[role] = rel
        layer = root / f"{usd_name(name)}.usdc"
        _write_stage(layer, mesh, name, materials, tex_paths)
        out = root / f"{usd_name(name)}.usdz"
        if not UsdUtils.CreateNewARKitUsdzPackage(Sdf.AssetPath(str(layer)), str(out)):
            raise RuntimeError("UsdUtils.CreateNewARKitUsdzPackage failed")
        return out.read_bytes()


def _write_stage(path: Path, mesh: MeshData, name: str, materials: list[UsdMaterial],
                 tex_paths: dict[str, str]) -> None:
    from pxr import Usd, UsdGeom, UsdShade

    stage = Usd.Stage.CreateNew(str(path))
    UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.y)
    UsdGeom.SetStageMetersPerUnit(stage, 1.0)
    root_path = f"/{usd_name(name)}"
    root = UsdGeom.Xform.Define(stage, root_path)
    stage.SetDefaultPrim(root.GetPrim())
    Usd.ModelAPI(root.GetPrim()).SetKind("component")
    geom = _define_mesh(stage, f"{root_path}/geom", mesh)
    UsdGeom.Scope.Define(stage, f"{root_path}/materials")
    binding = UsdShade.MaterialBindingAPI.Apply(geom.GetPrim())
    shaded = [(m, _define_material(stage, f"{root_path}/materials/{usd_name(m.name)}", m,
                                   tex_paths)) for m in materials]
    if len(shaded) == 1:
        binding.Bind(shaded[0][1])
    else:
        for m, mat in shaded:
            subset = binding.CreateMaterialBindSubset(
                usd_name(m.name), np.asarray(m.faces, np.int32).tolist(), UsdGeom.Tokens.face)
            UsdShade.MaterialBindingAPI.Apply(subset.GetPrim()).Bind(mat)
    stage.GetRootLayer().Save()


def _define_mesh(stage, path: str, mesh: MeshData):
    from pxr import Gf, UsdGeom, Vt

    m = UsdGeom.Mesh.Define(stage, path)
    v = np.asarray(mesh.vertices, np.float32)
    m.CreatePointsAttr(Vt.Vec3fArray.FromNumpy(v))
    m.CreateFaceVertexCountsAttr(Vt.IntArray.FromNumpy(np.full(mesh.n_faces, 3, np.int32)))
    m.CreateFaceVertexIndicesAttr(Vt.IntArray.FromNumpy(mesh.faces.reshape(-1).astype(np.int32)))
    m.CreateSubdivisionSchemeAttr(UsdGeom.Tokens.none)
    m.CreateOrientationAttr(UsdGeom.Tokens.rightHanded)
    m.CreateDoubleSidedAttr(False)
    lo, hi = v.min(0), v.max(0)
    m.CreateExtentAttr(Vt.Vec3fArray([Gf.Vec3f(*map(float, lo)), Gf.Vec3f(*map(float, hi))]))
    if mesh.vertex_normals is not None:
        m.CreateNormalsAttr(Vt.Vec3fArray.FromNumpy(np.asarray(mesh.vertex_normals, np.float32)))
        m.SetNormalsInterpolation(UsdGeom.Tokens.vertex)
    if mesh.uv is not None:
        st = UsdGeom.PrimvarsAPI(m).CreatePrimvar("st", _sdf().TexCoord2fArray,
                                                  UsdGeom.Tokens.vertex)
        st.Set(Vt.Vec2fArray.FromNumpy(np.asarray(mesh.uv, np.float32)))
    return m


def _sdf():
    from pxr import Sdf

    return Sdf.ValueTypeNames


def _define_material(stage, path: str, m: UsdMaterial, tex: dict[str, str]):
    from pxr import Gf, UsdShade

    t = _sdf()
    mat = UsdShade.Material.Define(stage, path)
    surf = UsdShade.Shader.Define(stage, f"{path}/surface")
    surf.CreateIdAttr("UsdPreviewSurface")
    surf.CreateInput("useSpecularWorkflow", t.Int).Set(0)
    mat.CreateSurfaceOutput().ConnectToSource(surf.ConnectableAPI(), "surface")
    reader = None
    if tex:
        reader = UsdShade.Shader.Define(stage, f"{path}/st_reader")
        reader.CreateIdAttr("UsdPrimvarReader_float2")
        reader.CreateInput("varname", t.String).Set("st")
        reader.CreateOutput("result", t.Float2)

    def texture(role: str, colour_space: str):
        sh = UsdShade.Shader.Define(stage, f"{path}/{role}_texture")
        sh.CreateIdAttr("UsdUVTexture")
        sh.CreateInput("file", t.Asset).Set(tex[role])
        sh.CreateInput("sourceColorSpace", t.Token).Set(colour_space)
        sh.CreateInput("wrapS", t.Token).Set("repeat")
        sh.CreateInput("wrapT", t.Token).Set("repeat")
        sh.CreateInput("st", t.Float2).ConnectToSource(reader.ConnectableAPI(), "result")
        return sh

    if "base_color" in tex:
        sh = texture("base_color", "sRGB")
        sh.CreateOutput("rgb", t.Float3)
        surf.CreateInput("diffuseColor", t.Color3f).ConnectToSource(sh.ConnectableAPI(), "rgb")
    else:
        surf.CreateInput("diffuseColor", t.Color3f).Set(Gf.Vec3f(*m.base_color))
    if "orm" in tex:
        sh = texture("orm", "raw")
        for channel, inp in (("r", "occlusion"), ("g", "roughness"), ("b", "metallic")):
            sh.CreateOutput(channel, t.Float)
            surf.CreateInput(inp, t.Float).ConnectToSource(sh.ConnectableAPI(), channel)
    else:
        surf.CreateInput("roughness", t.Float).Set(float(m.roughness))
        surf.CreateInput("metallic", t.Float).Set(float(m.metallic))
    if "normal" in tex:
        sh = texture("normal", "raw")
        sh.CreateInput("scale", t.Float4).Set(Gf.Vec4f(2.0, 2.0, 2.0, 1.0))
        sh.CreateInput("bias", t.Float4).Set(Gf.Vec4f(-1.0, -1.0, -1.0, 0.0))
        sh.CreateOutput("rgb", t.Float3)
        surf.CreateInput("normal", t.Normal3f).ConnectToSource(sh.ConnectableAPI(), "rgb")
    return mat

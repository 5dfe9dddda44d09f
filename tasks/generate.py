"""generate: the SKU's views (or its provided mesh) -> a dense mesh and the cameras used.

The stage is a thin adapter: it picks a backend from the registry (``mesh`` when the row gives
a ``mesh_uri``, else ``options.backend``), builds it once per process (a learned backend loads
its weights once, however many SKUs follow), hands it the views and writes what it returns.
Everything a backend reports in ``info`` becomes a ``generate_*`` metric.
"""

from __future__ import annotations

import functools
import logging
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.appearance import save_appearance
from ..core.artifacts import load_json, save_cameras, save_json, save_mesh
from ..core.errors import InputError, OptionsError, ProcessingError
from ..core.stage import check, stage
from ..core.types import AssetState, Resources, StageResult
from ..core.views import load_views
from ..models.base import DenseMesh, GenerateRequest, config_fields, make_config
from ..models.registry import find

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GenerateOptions:
    """Which backend makes the dense mesh.

    backend: registry name used when the row has no mesh_uri ("silhouette" needs no weights).
    resolution: the backend's grid resolution, for backends that have one.
    seed: for stochastic backends; the same seed gives the same mesh (on the same device).
    device: "auto" (each backend's own default: the GPU for learned backends when there is
        one, else the CPU, flagged), or "cpu", "cuda", "cuda:N" for backends that take one.
    backend_options: further config fields of the chosen backend, by name.
    """

    backend: str = "silhouette"
    resolution: int = 128
    seed: int = 0
    device: str = "auto"
    backend_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check(bool(self.backend), "backend must be a non-empty name")
        check(8 <= self.resolution <= 1024, f"resolution {self.resolution} not in "
              "8..1024")
        check(self.seed >= 0, "seed must be >= 0")
        check(isinstance(self.backend_options, Mapping), "backend_options must be a "
              "mapping of config field -> value")


def backend_config(name: str, options: GenerateOptions) -> Any:
    """The chosen backend's config from the stage options (fields it lacks are skipped)."""
    cls = find(name)
    known = config_fields(cls)
    values = {k: v for k, v in (("resolution", options.resolution), ("device", options.device))
              if k in known and not (k == "device" and v == "auto")}
    values.update(options.backend_options if name == options.backend else {})
    try:
        return make_config(cls, **values)
    except OptionsError as exc:
        exc.stage = exc.stage or "generate"
        raise


def build_generator(config: Any):
    """One built generator per config per process: weights load once."""
    try:
        hash(config)
    except TypeError:  # a config holding a list or dict cannot key the cache; build afresh
        return config.build()
    return _cached_build(config)


@functools.lru_cache(maxsize=8)
def _cached_build(config: Any):
    log.info("generate: building backend %s", config)
    return config.build()


def resolve_mesh_uri(mesh_uri: str, catalog_root: str) -> str:
    """Absolute path or URI of the row's mesh (relative paths are relative to the catalog)."""
    if "://" in mesh_uri or Path(mesh_uri).is_absolute() or not catalog_root:
        return mesh_uri
    if "://" in catalog_root:
        return posixpath.join(catalog_root.rstrip("/"), mesh_uri)
    root = Path(catalog_root).resolve()
    full = (root / mesh_uri).resolve()
    if not full.is_relative_to(root):  # specs built in code skip the catalog's own checks
        raise InputError(f"mesh {mesh_uri} leads outside the catalog folder {root}",
                         "copy the mesh into the catalog's folder or give an absolute path")
    return str(full)


@stage("generate", "7", GenerateOptions, Resources(cpus=1),
       reads=("mesh_uri", "width_mm", "height_mm", "depth_mm"))
def generate(state: AssetState, options: GenerateOptions) -> StageResult:
    spec = state.spec
    mesh_uri = resolve_mesh_uri(spec.mesh_uri, spec.catalog_root) if spec.mesh_uri else None
    views = load_views(state)
    if not views and not mesh_uri:
        raise InputError("no photos and no mesh: nothing to build the model from",
                         "give the row product photos (images) or a mesh_uri")
    name = "mesh" if mesh_uri else options.backend
    config = backend_config(name, options)
    generator = build_generator(config)
    dense: DenseMesh = generator.generate(
        GenerateRequest(sku=state.sku, views=views, mesh_uri=mesh_uri, seed=options.seed,
                        dims_m=tuple(state.spec.dims_m),
                        camera_hints=load_json(state, "camera_hints")
                        if "camera_hints" in state.artifacts else None))
    mesh = dense.mesh
    if mesh.n_faces == 0:
        raise ProcessingError(f"backend {name!r} returned an empty mesh",
                              "try another backend or better photos")
    metrics: dict[str, Any] = {f"generate_{k}": v for k, v in dense.info.items()
                               if isinstance(v, (int, float, str, bool)) or v is None}
    metrics.update(generate_backend=name, generate_tris=mesh.n_faces,
                   generate_verts=mesh.n_vertices,
                   generate_method=str(dense.info.get("method", name)),
                   # the device it ran on (provenance records it), after any CPU fallback
                   generate_device=str(dense.info.get("device") or getattr(config, "device",
                                                                           "cpu")))
    digest = config.weights_sha256()
    if digest:
        metrics["generate_weights_sha256"] = digest
    log.info("%s generate: backend %s (%s) -> %d tris, %d verts", state.sku, name,
             metrics["generate_method"], mesh.n_faces, mesh.n_vertices)
    artifacts = {"dense_mesh": save_mesh(state, mesh),
                 "cameras": save_cameras(state, list(dense.cameras))}
    if dense.report:
        artifacts["generate_report"] = save_json(state, dense.report)
    if dense.appearance is not None:  # a vendor mesh's look, for the material transfer
        artifacts.update(save_appearance(state, dense.appearance))
    return StageResult(artifacts=artifacts, metrics=metrics)

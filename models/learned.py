"""What every learned (torch) backend shares: optional imports, device and dtype, seeds, the
weights' manifest, the mesh frame, and the resources a backend declares.

Why one module: Shap-E, Hunyuan3D and the learned masks must behave the same way where a user
can see it — the same error when the ``[learned]`` extra is missing, the same CPU fallback
flag, the same provenance fields — and none of them may import torch before ``build()``.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..core.errors import MissingWeightsError, OptionsError
from ..core.mesh import MeshData
from ..core.stage import check
from ..core.types import Resources
from .weights import manifest_digest, resolve_weights, weights_manifest

log = logging.getLogger(__name__)

EXTRA = "learned"
DTYPES = ("auto", "float32", "float16", "bfloat16")
AXES = ("+x", "-x", "+y", "-y", "+z", "-z")


class MissingDependencyError(ImportError):
    """A learned backend's library is not installed; the message names the extra to install."""


class WrongWeightsError(MissingWeightsError):
    """Weights are present but are not the model the backend expects (or not the pinned copy)."""


def require(module: str, backend: str) -> Any:
    """Import ``module`` or fail with the command that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"backend {backend!r} needs the Python package {module.split('.')[0]!r}, which is not "
            f"installed ({exc}). Install the learned extra: pip install 'assetfactory[{EXTRA}]' "
            "(install torch first, see the README's 'Using a learned model').") from exc


# --- device, dtype, determinism -------------------------------------------------------------

@dataclass(frozen=True)
class DeviceChoice:
    """The device a backend runs on, and whether that is a fallback from the one asked for."""

    device: str
    requested: str
    cpu_fallback: bool
    reason: str = ""


def check_device(device: str, backend: str) -> None:
    """Validate a device option (in ``__post_init__``) without importing torch."""
    ok = device in ("auto", "cpu", "cuda") or (device.startswith("cuda:")
                                                and device[5:].isdigit())
    if not ok:
        raise OptionsError(f"{backend}: device {device!r} must be 'auto', 'cpu', 'cuda' or "
                           "'cuda:N'")


def choose_device(requested: str, allow_cpu_fallback: bool, backend: str) -> DeviceChoice:
    """``auto`` and ``cuda[:N]`` run on that GPU when torch sees one; else on the CPU, flagged.

    ``auto`` and ``cuda`` both prefer the GPU: a learned backend on the CPU is a degraded run
    (minutes per asset instead of seconds), so it is recorded as a fallback either way. With
    ``allow_cpu_fallback=False`` a missing GPU is an error before any work starts.
    """
    import torch

    if requested == "cpu":
        return DeviceChoice("cpu", requested, False)
    if torch.cuda.is_available():
        device = "cuda" if requested == "auto" else requested
        index = int(device.split(":")[1]) if ":" in device else 0
        if index < torch.cuda.device_count():
            return DeviceChoice(device, requested, False)
        reason = f"{device} asked for but torch sees {torch.cuda.device_count()} GPU(s)"
    else:
        reason = "torch sees no CUDA GPU"
    if not allow_cpu_fallback:
        raise OptionsError(
            f"{backend}: device {requested!r} but {reason}. Run on a machine with a GPU (and a "
            "CUDA build of torch), set device='cpu', or allow_cpu_fallback=True.")
    log.warning("%s: %s; running on the CPU (flagged as a fallback in provenance and metrics)",
                backend, reason)
    return DeviceChoice("cpu", requested, True, reason)


def torch_dtype(name: str, device: str):
    """``auto``: float16 on a GPU (the models' published precision), float32 on the CPU."""
    import torch

    if name == "auto":
        return torch.float16 if device.startswith("cuda") else torch.float32
    return {"float32": torch.float32, "float16": torch.float16,
            "bfloat16": torch.bfloat16}[name]


def make_deterministic(device: str) -> None:
    """Same seed, same device, same output: no autotuned kernels, deterministic algorithms.

    cuBLAS needs ``CUBLAS_WORKSPACE_CONFIG`` set before its first call for deterministic
    matrix products; it is set here when the process has not chosen one.
    """
    import torch

    if device.startswith("cuda"):
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True, warn_only=True)


def quiet_progress_bars() -> None:
    """diffusers and transformers draw loading bars on stderr; workers' logs need none."""
    for module in ("diffusers.utils.logging", "transformers.utils.logging"):
        try:
            importlib.import_module(module).disable_progress_bar()
        except (ImportError, AttributeError):
            pass


def generator_for(seed: int, device: str):
    """A torch random generator on ``device`` seeded with ``seed`` (one per SKU)."""
    import torch

    return torch.Generator(device=device).manual_seed(int(seed))


# --- weights ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Weights:
    """A resolved weights folder and the sha256 of every file the backend loads from it."""

    root: Path
    manifest: dict[str, str]
    digest: str

    def path(self, rel: str) -> Path:
        return self.root / rel


def load_weights(path_or_repo_id: str, env_var: str | None, revision: str | None,
                 files: Callable[[Path], list[str]], expected_sha256: str | None, backend: str,
                 root_files: tuple[str, ...] = ()) -> Weights:
    """Resolve the folder, check the files the backend needs, hash them, check the pin.

    ``files(root)`` lists the files the model loads (relative to the resolved folder) and raises
    ``MissingWeightsError`` naming what is absent. ``expected_sha256``, when given, must equal
    the manifest's digest: a copied folder that differs (a corrupt download, another
    checkpoint) is caught before any work starts.
    """
    root = resolve_weights(path_or_repo_id, env_var, revision=revision, required=root_files)
    if not root.is_dir():
        raise MissingWeightsError(
            f"{backend}: weights {path_or_repo_id!r} resolve to the file {root}; give the folder "
            "that holds the model's files")
    needed = files(root)
    missing = [f for f in needed if not (root / f).is_file()]
    if missing:
        raise MissingWeightsError(
            f"{backend}: the weights folder {root} is incomplete: missing {missing}. It needs "
            f"{sorted(needed)}; copy the complete model there (weights are never downloaded at "
            "run time).")
    manifest = weights_manifest(root, needed)
    digest = manifest_digest(manifest)
    if expected_sha256 and expected_sha256 != digest:
        raise WrongWeightsError(
            f"{backend}: the weights in {root} have sha256 {digest}, not the pinned "
            f"{expected_sha256}. Put the pinned copy there, or update expected_sha256 if the "
            "new weights are intended (every asset made with them gets a new identity).")
    return Weights(root, manifest, digest)


def missing_file(root: Path, backend: str, what: str, candidates: list[str]) -> MissingWeightsError:
    """The error for a weights folder that lacks one of several acceptable files."""
    present = sorted(p.name for p in (root / Path(candidates[0]).parent).glob("*")) if (
        root / Path(candidates[0]).parent).is_dir() else []
    return MissingWeightsError(
        f"{backend}: the weights folder {root} has no {what}: expected one of {candidates}"
        f"{'; found ' + str(present) if present else ''}. Copy the complete model there (weights "
        "are never downloaded at run time).")


# --- the options every learned generator shares ---------------------------------------------

@dataclass(frozen=True)
class LearnedConfig:
    """Options every learned generator has, checked once; a backend adds its own fields, the
    libraries it needs (``LIBRARIES``), ``_check()`` for its own options and
    ``load_weights()``. Field meanings are in each backend's docstring."""

    LIBRARIES: ClassVar[tuple[str, ...]] = ("torch", "diffusers", "transformers")
    name: ClassVar[str] = "learned"
    weights: str = ""
    revision: str | None = None
    variant: str | None = None
    expected_sha256: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    allow_cpu_fallback: bool = True
    steps: int = 50
    guidance_scale: float = 5.0
    max_batch: int = 1
    up_axis: str = "+y"
    front_axis: str = "+z"
    num_gpus: float = 1.0
    num_cpus: float = 1.0
    memory_mb: int = 0

    def __post_init__(self) -> None:
        n = self.name
        check_device(self.device, n)
        check(self.dtype in DTYPES, f"{n}: dtype must be one of {DTYPES}")
        check(1 <= self.steps <= 1000, f"{n}: steps {self.steps} not in 1..1000")
        check(0.0 <= self.guidance_scale <= 100.0, f"{n}: guidance_scale not in 0..100")
        check(1 <= self.max_batch <= 64, f"{n}: max_batch not in 1..64")
        check(0 <= self.num_gpus <= 8 and self.num_cpus > 0 and self.memory_mb >= 0,
                 f"{n}: num_gpus in 0..8, num_cpus > 0, memory_mb >= 0")
        check_axes(self.up_axis, self.front_axis, n)
        self._check()

    def _check(self) -> None:
        """The backend's own options."""

    def load_weights(self) -> Weights:
        raise NotImplementedError

    def resources(self) -> Resources:
        return resources(self.num_cpus, self.num_gpus, self.memory_mb, self.device)

    def weights_sha256(self) -> str | None:
        return self.load_weights().digest

    def preflight(self) -> str:
        """Everything checkable without loading: libraries present, weights complete, pin."""
        for module in self.LIBRARIES:
            if importlib.util.find_spec(module) is None:
                require(module, self.name)
        return self.load_weights().digest


class BatchedGenerator:
    """``generate`` and ``generate_batch`` for a built model whose ``_batch`` samples up to
    ``config.max_batch`` SKUs per call (each SKU keeps its own seed)."""

    config: LearnedConfig

    def generate(self, request: Any) -> Any:
        return self.generate_batch([request])[0]

    def generate_batch(self, requests: list) -> list:
        out: list = []
        step = self.config.max_batch
        for i in range(0, len(requests), step):
            out += self._batch(requests[i:i + step])
        return out

    def _batch(self, requests: list) -> list:
        raise NotImplementedError


# --- the mesh a model returns, in the project's frame ---------------------------------------

_AXIS_VECTORS = {"+x": (1, 0, 0), "-x": (-1, 0, 0), "+y": (0, 1, 0), "-y": (0, -1, 0),
                 "+z": (0, 0, 1), "-z": (0, 0, -1)}


def check_axes(up: str, front: str, backend: str) -> None:
    if up not in AXES or front not in AXES:
        raise OptionsError(f"{backend}: up_axis and front_axis must be among {AXES}")
    if up[1] == front[1]:
        raise OptionsError(f"{backend}: up_axis {up} and front_axis {front} must differ")


def to_project_frame(up: str, front: str) -> np.ndarray:
    """Rotation taking a model's (up, front) axes to the project's (+Y up, front +Z)."""
    u = np.array(_AXIS_VECTORS[up], float)
    f = np.array(_AXIS_VECTORS[front], float)
    src = np.stack([np.cross(u, f), u, f])  # rows: the source's right, up, front
    return src  # maps source coordinates p to (p.right, p.up, p.front)


def yaw(azimuth_deg: float) -> np.ndarray:
    """Rotation about +Y taking +Z to the direction of a camera at ``azimuth_deg``."""
    a = math.radians(azimuth_deg)
    return np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])


def place_generated(vertices: np.ndarray, faces: np.ndarray, rotation: np.ndarray,
                    colors: np.ndarray | None = None) -> MeshData:
    """A model's raw mesh -> the project's frame: rotated, bbox centre at 0, largest extent 1.

    The generators normalise their own output to a unit box; the real size comes from the
    catalog's dimensions in cleanup, as for every backend.
    """
    v = np.asarray(vertices, np.float64) @ rotation.T
    f = np.asarray(faces, np.int64).reshape(-1, 3)
    lo, hi = v.min(axis=0), v.max(axis=0)
    extent = float((hi - lo).max())
    if not np.isfinite(v).all() or extent <= 0:
        raise ValueError("the model returned a mesh with non-finite or zero-size vertices")
    v = (v - (lo + hi) / 2.0) / extent
    return MeshData(v, f, vertex_colors=colors)


def colors_from_channels(channels: dict | None, n: int) -> np.ndarray | None:
    """Per-vertex R, G, B in 0..1 (torch tensors or arrays) -> (n, 4) uint8 RGBA."""
    if not channels or not all(k in channels for k in "RGB"):
        return None
    rgb = np.stack([np.asarray(_numpy(channels[k]), np.float64)[:n] for k in "RGB"], axis=1)
    rgba = np.concatenate([np.clip(rgb, 0, 1) * 255 + 0.5, np.full((n, 1), 255.0)], axis=1)
    return rgba.astype(np.uint8)


def _numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        return x.detach().float().cpu().numpy()
    return np.asarray(x)


# --- what goes into provenance and the scheduler --------------------------------------------

def resources(num_cpus: float, num_gpus: float, memory_mb: int, device: str) -> Resources:
    """A backend's per-actor needs; a CPU-only config asks for no GPU."""
    return Resources(cpus=num_cpus, gpus=0.0 if device == "cpu" else num_gpus,
                     memory_mb=memory_mb)


def runtime_info(choice: DeviceChoice, dtype: Any, weights: Weights, libraries: tuple[str, ...]
                 ) -> dict[str, Any]:
    """Flat facts about this build for ``DenseMesh.info`` (-> ``generate_*`` metrics)."""
    from importlib import metadata

    info: dict[str, Any] = {
        "device": choice.device, "device_requested": choice.requested,
        "cpu_fallback": choice.cpu_fallback, "dtype": str(dtype).replace("torch.", ""),
        "weights_sha256": weights.digest, "weights_files": len(weights.manifest),
        # every file's sha256, for audits: which checkpoint made this asset
        "weights_manifest": json.dumps(weights.manifest, sort_keys=True),
    }
    if choice.cpu_fallback:
        info["cpu_fallback_reason"] = choice.reason
    for lib in libraries:
        try:
            info[f"{lib}_version"] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            info[f"{lib}_version"] = None
    return info


# --- which photo conditions a single-image model ------------------------------------------

def conditioning_view(request: Any, backend: str) -> Any:
    """The view a single-image model sees: ``front`` if there is one, else the first photo
    whose direction is known, else the first. Its mask must not be empty."""
    from ..core.errors import InputError

    views = list(request.views)
    if not views:
        raise InputError(f"the {backend} backend needs a product photo and the row has none",
                         "add product photos to the catalog row, or give a mesh_uri")
    front = [v for v in views if v.label == "front"]
    posed = [v for v in views if getattr(v, "pose_known", True)]
    view = (front or posed or views)[0]
    if not np.asarray(view.mask).any():
        raise InputError(f"the mask of view {view.label!r} is empty: no object found",
                         "use a photo where the product stands out from the background")
    return view


def rgba_image(view: Any):
    """The view's crop as a PIL RGBA image, the object mask as alpha."""
    from PIL import Image

    rgb = np.asarray(view.rgb, np.uint8)[..., :3]
    alpha = (np.asarray(view.mask) > 0).astype(np.uint8) * 255
    return Image.fromarray(np.dstack([rgb, alpha]), "RGBA")


def rgb_on_white(view: Any):
    """The view's crop as a PIL RGB image with the background made white."""
    from PIL import Image

    rgb = np.asarray(view.rgb, np.uint8)[..., :3].copy()
    rgb[~(np.asarray(view.mask) > 0)] = 255
    return Image.fromarray(rgb, "RGB")

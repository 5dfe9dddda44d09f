"""The one protocol every generator backend speaks.

A backend is a frozen ``Config`` dataclass (what goes into provenance) whose ``build()`` returns
a ``Generator`` that loads its weights once and then serves many ``generate`` calls. Heavy
libraries (torch, diffusers) are imported inside ``build()``, never at module import, so the
registry can list every backend on a machine that has none of them installed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

from ..core.appearance import SourceAppearance
from ..core.camera import Camera
from ..core.mesh import MeshData
from ..core.types import Resources

Scalar = int | float | str | bool | None


@dataclass(frozen=True)
class GenerateRequest:
    """What a backend gets: the SKU's views (cropped photos, masks, cameras) or a mesh to import.

    ``views`` holds ``core.views.View`` objects (``label``, ``camera``, ``rgb`` (H,W,3) uint8,
    ``mask`` (H,W) bool); any object with those attributes works.
    """

    sku: str
    views: list = field(default_factory=list)
    mesh_uri: str | None = None
    seed: int = 0
    #: Real size hint (width X, height Y, depth Z in metres; None where unknown) from the catalog.
    dims_m: tuple = (None, None, None)
    #: What the catalog said about the shoot (ingest's ``camera_hints``: field of view, distance,
    #: which elevations were given); None: the views' cameras are known exactly.
    camera_hints: dict | None = None


@dataclass(frozen=True)
class DenseMesh:
    """A backend's answer: a dense mesh in the frame of ``cameras`` plus flat info for metrics.

    appearance: the source's materials and the surface they map onto (``core.appearance``),
    in the mesh's frame, when the backend imported a mesh that carries a look.
    report: an optional JSON-able record kept as the ``generate_report`` artifact (e.g. how the
    cameras were estimated).
    """

    mesh: MeshData
    cameras: list[Camera] = field(default_factory=list)
    info: dict[str, Scalar] = field(default_factory=dict)
    report: dict | None = None
    appearance: SourceAppearance | None = None


@runtime_checkable
class Generator(Protocol):
    def generate(self, request: GenerateRequest) -> DenseMesh: ...


class BackendConfig(Protocol):
    """Each backend's frozen dataclass config.

    Optional, found with ``getattr``: ``resources() -> Resources`` (what one loaded model needs
    from the scheduler: GPUs, CPUs, memory; default one CPU) and ``preflight()`` (checks that
    need no model load: libraries present, weights complete, pinned digest; returns the weights
    digest). A built generator may also offer ``generate_batch(requests) -> list[DenseMesh]``.
    """

    name: ClassVar[str]
    device: str

    def build(self) -> Generator: ...

    def weights_sha256(self) -> str | None: ...


def backend_resources(config: Any) -> Resources:
    """The scheduler resources one built generator of ``config`` needs."""
    fn = getattr(config, "resources", None)
    return fn() if callable(fn) else Resources(cpus=1.0)


def preflight(config: Any) -> str | None:
    """Fail now, before any SKU is touched, if the backend cannot run; return its weights'
    digest (None for weight-free backends)."""
    fn = getattr(config, "preflight", None)
    if callable(fn):
        digest = fn()
        return digest if isinstance(digest, str) else config.weights_sha256()
    return config.weights_sha256()


def config_fields(config_cls: type) -> set[str]:
    """Names a config accepts; used to map stage options onto any backend's config."""
    if not dataclasses.is_dataclass(config_cls):
        return set()
    return {f.name for f in dataclasses.fields(config_cls) if f.init}


def make_config(config_cls: type, **values: Any) -> Any:
    """Build a config from the values it knows; unknown keys are an error naming the valid ones."""
    known = config_fields(config_cls)
    unknown = sorted(set(values) - known)
    if unknown:
        from ..core.errors import OptionsError

        raise OptionsError(
            f"backend {getattr(config_cls, 'name', config_cls.__name__)!r} has no option(s) "
            f"{unknown}; it accepts {sorted(known)}")
    return config_cls(**values)

"""The shared types every part speaks: a SKU's spec, an asset's state, a stage's result."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import MissingArtifact
from .storage import ArtifactRef

Scalar = int | float | str | bool | None

#: Canonical view labels and their azimuths (degrees, 0 = front, 90 = camera on +X / right).
VIEW_AZIMUTHS: dict[str, float] = {
    "front": 0.0, "front_right": 45.0, "right": 90.0, "back_right": 135.0, "back": 180.0,
    "back_left": 225.0, "left": 270.0, "front_left": 315.0,
}
#: Labels for views straight above/below (elevation +-90).
VIEW_ELEVATIONS: dict[str, float] = {"top": 90.0, "bottom": -90.0}


#: Which stage writes each artifact (key, or key prefix ending in "/").
ARTIFACT_MAKERS: dict[str, str] = {
    "image/": "ingest", "mask/": "ingest", "cameras": "ingest or generate",
    "dense_mesh": "generate", "clean_mesh": "cleanup", "placement": "cleanup",
    "mesh": "simplify, then uv", "collision": "simplify", "texture/normal": "bake",
    "texture/ao": "bake", "texture/orm": "bake or texture", "texture/base_color": "texture",
    "materials": "texture", "glb": "export", "usdz": "export", "poster": "export",
}


def artifact_maker(key: str) -> str:
    """The stage that writes artifact ``key`` (for error messages)."""
    if key in ARTIFACT_MAKERS:
        return ARTIFACT_MAKERS[key]
    for prefix, stage in ARTIFACT_MAKERS.items():
        if prefix.endswith("/") and key.startswith(prefix):
            return stage
    return "an earlier stage"


@dataclass(frozen=True)
class ImageSpec:
    """One product photo: where it is and, if known, from where it was taken."""

    uri: str
    view: str = ""
    azimuth_deg: float | None = None
    elevation_deg: float | None = None


@dataclass(frozen=True)
class SkuSpec:
    """One validated catalog row."""

    sku: str
    title: str = ""
    category: str = ""
    images: tuple[ImageSpec, ...] = ()
    width_mm: float | None = None
    height_mm: float | None = None
    depth_mm: float | None = None
    mesh_uri: str | None = None
    material: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    row: int = -1
    catalog_root: str = ""

    @property
    def dims_m(self) -> tuple[float | None, float | None, float | None]:
        """(width along X, height along Y, depth along Z) in metres, None where unknown."""
        return tuple(None if v is None else v / 1000.0
                     for v in (self.width_mm, self.height_mm, self.depth_mm))  # type: ignore[return-value]


@dataclass(frozen=True)
class Resources:
    """What a stage needs to run; only ``flows/`` turns this into scheduler options."""

    cpus: float = 1.0
    gpus: float = 0.0
    memory_mb: int = 0


@dataclass(frozen=True)
class StageRecord:
    """Provenance of one stage run, attached by the ``@stage`` decorator."""

    stage: str
    version: str
    options_hash: str
    options: Mapping[str, Any]
    inputs: Mapping[str, str]
    outputs: Mapping[str, str]
    started_at: float
    duration_s: float
    host: str
    device: str
    peak_rss_mb: float
    status: str = "ok"
    error: str = ""


@dataclass(frozen=True)
class StageResult:
    """What a stage returns: new artifact references and a flat dict of metrics."""

    artifacts: Mapping[str, ArtifactRef] = field(default_factory=dict)
    metrics: Mapping[str, Scalar] = field(default_factory=dict)
    record: StageRecord | None = None


@dataclass(frozen=True)
class StageFailure:
    """Why an asset stopped: which stage, what happened, and what the user can do."""

    stage: str
    message: str
    fix: str = ""
    code: str = "error"
    kind: str = "AssetError"


@dataclass(frozen=True)
class AssetState:
    """Everything known about one asset attempt between stages.

    Holds references, never heavy data: it is what travels through the orchestrator.
    Stages read it and never mutate it; ``apply`` makes the next state.
    """

    sku: str
    spec: SkuSpec
    store_uri: str
    run_id: str = ""
    attempt_id: str = ""
    asset_id: str = ""
    profile: str = "ar"
    backend: str = "silhouette"
    artifacts: Mapping[str, ArtifactRef] = field(default_factory=dict)
    metrics: Mapping[str, Scalar] = field(default_factory=dict)
    records: tuple[StageRecord, ...] = ()
    failure: StageFailure | None = None

    def ref(self, key: str) -> ArtifactRef:
        try:
            return self.artifacts[key]
        except KeyError:
            maker = artifact_maker(key)
            raise MissingArtifact(
                f"the artifact {key!r} is missing (this asset has: "
                f"{', '.join(sorted(self.artifacts)) or 'none'})",
                f"run the stage that writes it ({maker}) before this one, and check that it "
                "succeeded for this SKU", sku=self.sku) from None

    def keys(self, prefix: str) -> list[str]:
        return sorted(k for k in self.artifacts if k.startswith(prefix))

    def apply(self, result: StageResult) -> AssetState:
        return dataclasses.replace(
            self,
            artifacts={**self.artifacts, **result.artifacts},
            metrics={**self.metrics, **result.metrics},
            records=self.records + ((result.record,) if result.record else ()),
        )

    def failed(self, failure: StageFailure, record: StageRecord | None = None) -> AssetState:
        return dataclasses.replace(
            self, failure=failure, records=self.records + ((record,) if record else ()))

    @property
    def ok(self) -> bool:
        return self.failure is None

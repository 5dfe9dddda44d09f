"""An asset's identity: a hash of everything that can change what the factory makes of a SKU.

A re-run skips a SKU whose identity matches a successful attempt, so the identity must cover
every input of every stage, and nothing else (or a nightly run would redo unchanged work):

* the SKU string itself (outputs are named after it and written under its folder);
* the catalog columns the recipe's stages read, as the stages declare them
  (``@stage(..., reads=...)``; ``identity_columns``), with the bytes of the photos and of the
  mesh in place of their paths (a moved photo is the same photo; an edited one is not);
* the recipe: profile, backend, each stage's version and options (``Recipe.describe``);
* the generator backend: its config, its ``version`` when it declares one, and the SHA-256 of
  its weights (``weights_sha256``), so new weights re-make the assets they made.

A stage's version must change whenever its output on a fixed input changes; the golden-hash
test (``tests/tasks/test_golden.py``) enforces that, which is what lets the identity name
versions instead of hashing the code.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from ..core.hashing import sha256_bytes, sha256_obj, stable_json
from ..core.stage import SPEC_COLUMNS
from ..core.storage import read_ref
from ..core.types import SkuSpec
from .recipe import Recipe


def identity_columns(recipe: Recipe) -> tuple[str, ...]:
    """The catalog columns the recipe's stages read (declared by the stages), sorted."""
    return tuple(sorted(set().union(*(c.stage().reads for c in recipe.calls))))


def _resolve(uri: str, root: str) -> str:
    if uri.startswith(("s3://", "file://")) or os.path.isabs(uri):
        return uri
    if root.startswith("s3://"):
        return f"{root.rstrip('/')}/{uri}"
    return str(Path(root, uri))


def _bytes_hash(uri: str, root: str) -> str:
    try:
        return sha256_bytes(read_ref(_resolve(uri, root)))
    except Exception as exc:  # noqa: BLE001 - recorded; the stage reports the real error
        return f"unreadable:{type(exc).__name__}"


def column_value(spec: SkuSpec, column: str) -> Any:
    """A JSON-able value of one catalog column of ``spec``, as a stage that reads it sees it.

    Photos and meshes are represented by where they point from (views and angles) here; their
    bytes are hashed separately by ``input_hashes``.
    """
    if column == "images":
        return [[im.view, im.azimuth_deg, im.elevation_deg] for im in spec.images]
    if column == "mesh_uri":
        return bool(spec.mesh_uri)
    if column in SPEC_COLUMNS:
        return getattr(spec, column)
    return (spec.metadata or {}).get(column)


def input_hashes(spec: SkuSpec, columns: tuple[str, ...]) -> dict[str, str]:
    """What the identity hashes for one SKU, readable in the catalog's ``input_hashes``.

    ``image:<i>:<view>`` and ``mesh``: SHA-256 of the bytes (``unreadable:<Error>`` when they
    cannot be read; ingest reports why). ``column:<name>``: the column's value as JSON text.
    """
    out: dict[str, str] = {"sku": spec.sku}
    if "images" in columns:
        for i, im in enumerate(spec.images):
            out[f"image:{i}:{im.view}"] = _bytes_hash(im.uri, spec.catalog_root)
    if "mesh_uri" in columns and spec.mesh_uri:
        out["mesh"] = _bytes_hash(spec.mesh_uri, spec.catalog_root)
    for column in columns:
        out[f"column:{column}"] = _column_text(column_value(spec, column))
    return out


def _column_text(value: Any) -> str:
    """Short values as JSON (readable in the catalog), long ones by their hash."""
    text = stable_json(value)
    return text if len(text) <= 200 else "sha256:" + sha256_bytes(text.encode())


def backend_identity(recipe: Recipe) -> dict[str, Any]:
    """The generate stage's backend: name, config, declared version and weights hash.

    Hashing the weights reads them: call it once per run (``recipe_identity``), not per SKU.
    """
    call = next((c for c in recipe.calls if c.name == "generate"), None)
    if call is None:
        return {}
    from ..tasks.generate import backend_config

    options = call.options
    config = backend_config(options.backend, options)
    cls = type(config)
    fields = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else repr(config)
    return {"name": options.backend, "class": f"{cls.__module__}:{cls.__qualname__}",
            "version": str(getattr(cls, "version", "")), "config": fields,
            "weights_sha256": _weights_digest(recipe, config)}


def _weights_digest(recipe: Recipe, config: Any) -> str:
    """The backend's weights digest: the one preflight recorded on the recipe (hashed once per
    run), else the backend's own ``weights_sha256``."""
    recorded = dict(recipe.weights).get("generate")
    if recorded:
        return recorded
    return config.weights_sha256() or ""


def recipe_identity(recipe: Recipe) -> str:
    """The recipe's share of the identity: stages, versions, options and the backend."""
    return sha256_obj({"recipe": recipe.describe(), "backend": backend_identity(recipe)})


def asset_identity(spec: SkuSpec, recipe: Recipe, recipe_id: str | None = None
                   ) -> tuple[str, dict[str, str]]:
    """``(asset_id, input_hashes)`` of ``spec`` converted by ``recipe``.

    ``recipe_id`` is ``recipe_identity(recipe)``, passed in when planning many SKUs so the
    backend's weights are hashed once per run, not once per SKU.
    """
    hashes = input_hashes(spec, identity_columns(recipe))
    rid = recipe_id if recipe_id is not None else recipe_identity(recipe)
    return sha256_obj({"inputs": hashes, "recipe": rid})[:32], hashes

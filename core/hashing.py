"""Content hashes used for artifact addresses, provenance and asset identity."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float):
        return round(obj, 12)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return obj


def stable_json(obj: Any) -> str:
    """JSON with sorted keys: equal values always give equal text (and hash)."""
    return json.dumps(_jsonable(obj), sort_keys=True, separators=(",", ":"), default=str)


def sha256_obj(obj: Any) -> str:
    return sha256_bytes(stable_json(obj).encode())

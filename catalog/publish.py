"""Deliver approved current assets to a folder or S3 prefix, with a bulk-import manifest.

``publish(root, destination)``:

* picks every SKU whose current attempt succeeded and whose latest decision on that attempt is
  ``approve`` (plus, with ``include_unreviewed``, current attempts nobody decided on yet);
  rejected assets and open reworks are never delivered;
* copies each one's GLB, USDZ and poster to ``<destination>/<sku>/``, checking every file's
  sha256 against the one the attempt recorded (a file overwritten by a later attempt is refused,
  not delivered under the wrong approval);
* withdraws what an earlier publish delivered there and is no longer approved (its files are
  deleted; files the factory did not write are never touched);
* writes ``manifest.csv`` and ``manifest.json`` (sku, title, file names and URLs, dimensions,
  triangle count, sizes, sha256) listing exactly what the destination holds;
* records one ``published`` row per SKU it delivered or withdrew.

It is idempotent: publishing again with nothing changed copies nothing, rewrites no manifest
and records no row.
"""

from __future__ import annotations

import csv
import io
import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from ..core.hashing import sha256_bytes
from ..core.storage import open_storage, read_ref
from .fragments import PUBLISHED_SCHEMA, parquet_bytes, rows_table
from .triage import actor
from .views import Catalog, open_catalog

MANIFEST_FIELDS = (
    "sku", "title", "glb", "glb_url", "usdz", "usdz_url", "poster", "poster_url",
    "width_mm", "height_mm", "depth_mm", "triangles", "glb_bytes", "usdz_bytes",
    "poster_bytes", "glb_sha256", "usdz_sha256", "poster_sha256", "attempt_id", "reviewed",
    "approved_by", "approved_at",
)
ROLES = ("glb", "usdz", "poster")


class PublishError(RuntimeError):
    """The destination cannot be used (e.g. it is inside the catalog's own asset folder)."""


@dataclass
class PublishResult:
    """What a publish did."""

    publish_id: str
    destination: str
    published: list[str] = field(default_factory=list)     # SKUs copied this time
    unchanged: list[str] = field(default_factory=list)     # already delivered, same bytes
    withdrawn: list[str] = field(default_factory=list)     # no longer approved: removed
    refused: list[dict[str, str]] = field(default_factory=list)   # {sku, reason, fix}
    manifest_written: bool = False
    manifest: list[dict[str, Any]] = field(default_factory=list)


def _dest_root(destination: str) -> str:
    d = str(destination)
    if d.startswith("s3://"):
        return d.rstrip("/")
    from pathlib import Path

    return str(Path(d).expanduser().resolve())


def _url(dest: str, key: str, base_url: str | None) -> str:
    if base_url:
        return base_url.rstrip("/") + "/" + key
    return f"{dest}/{key}"


def _sources(row: dict[str, Any]) -> dict[str, tuple[str, str | None]]:
    """role -> (uri, recorded sha256 or None) of the attempt's deliverable files."""
    out: dict[str, tuple[str, str | None]] = {}
    if row.get("glb_uri"):
        out["glb"] = (row["glb_uri"], row.get("glb_sha256"))
    if row.get("usdz_uri"):
        out["usdz"] = (row["usdz_uri"], row.get("usdz_sha256"))
    if row.get("poster_uri"):
        out["poster"] = (row["poster_uri"], row.get("poster_sha256"))
    return out


def select_publishable(cat: Catalog, include_unreviewed: bool = False) -> list[dict[str, Any]]:
    """Current, successful attempts approved on that very attempt (and undecided ones when
    asked), one per SKU, by SKU."""
    states = "('approve', 'unreviewed')" if include_unreviewed else "('approve')"
    return cat.rows(f"""
        SELECT * FROM queue
        WHERE status = 'ok' AND glb_uri IS NOT NULL AND review_status IN {states}
        ORDER BY sku""")


def publish(root: str | Catalog, destination: str, *, include_unreviewed: bool = False,
            base_url: str | None = None, publisher: str | None = None,
            dry_run: bool = False) -> PublishResult:
    """Make ``destination`` hold exactly the publishable assets and their manifest."""
    dest = _dest_root(destination)
    cat, mine = open_catalog(root)
    try:
        if not dest.startswith("s3://") and not cat.root.startswith("s3://"):
            inner = PurePosixPath(dest)
            croot = PurePosixPath(cat.root)
            if inner == croot or croot in inner.parents and \
                    inner.relative_to(croot).parts[:1] in (("assets",), ("catalog",),
                                                           ("objects",)):
                raise PublishError(f"the destination {dest} is inside the factory's own "
                                   "outputs; deliver to a separate folder or prefix")
        store = open_storage(dest)
        result = PublishResult(f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-"
                               f"{uuid.uuid4().hex[:8]}", dest)
        wanted = select_publishable(cat, include_unreviewed)
        held = {r["sku"]: r for r in cat.rows(
            "SELECT * FROM delivered WHERE destination = ?", [dest])}
        now = int(time.time() * 1000)
        who = publisher or actor()
        rows: list[dict[str, Any]] = []
        manifest: list[dict[str, Any]] = []
        for a in wanted:
            sku = a["sku"]
            folder = PurePosixPath(a["glb_uri"]).parent.name or "asset"
            files, problem = [], None
            for role, (uri, recorded) in _sources(a).items():
                key = f"{folder}/{PurePosixPath(uri).name}"
                files.append({"role": role, "name": key, "source": uri, "sha256": recorded,
                              "uri": _url(dest, key, None)})
            prev = held.get(sku)
            prev_files = {f["role"]: f for f in json.loads(prev["files"])} if prev else {}
            # the same attempt already delivered here, every file still in place
            same = prev is not None and prev["attempt_id"] == a["attempt_id"] and all(
                f["role"] in prev_files and f["name"] == prev_files[f["role"]]["name"]
                and f["sha256"] in (None, prev_files[f["role"]]["sha256"])
                for f in files) and set(prev_files) == {f["role"] for f in files} and all(
                store.exists(f["name"]) for f in files)
            if not same:
                payloads = {}
                for f in files:
                    try:
                        data = read_ref(f["source"])
                    except Exception as exc:  # noqa: BLE001 - the SKU is refused, not the run
                        problem = (f"its {f['role']} {f['source']} cannot be read "
                                   f"({type(exc).__name__}: {exc})")
                        break
                    digest = sha256_bytes(data)
                    if f["sha256"] and digest != f["sha256"]:
                        problem = (f"its {f['role']} at {f['source']} no longer matches the "
                                   "approved attempt (a later attempt overwrote it)")
                        break
                    f["sha256"], f["bytes"] = digest, len(data)
                    payloads[f["role"]] = data
                if problem:
                    result.refused.append({
                        "sku": sku, "reason": problem,
                        "fix": "re-run the SKU (assetfactory reprocess --where \"sku = '...'\") "
                               "and review the new attempt"})
                    if prev is not None:   # keep what was delivered before
                        manifest.append(_manifest_row(json.loads(prev["manifest_row"]))
                                        if prev.get("manifest_row") else {})
                    continue
                if not dry_run:
                    for f in files:
                        store.put(f["name"], payloads[f["role"]])
                    for role, old in prev_files.items():   # a role the new attempt lacks
                        if role not in {f["role"] for f in files}:
                            _delete(store, old["name"])
                result.published.append(sku)
            else:
                for f in files:
                    f["sha256"] = prev_files[f["role"]]["sha256"]
                    f["bytes"] = prev_files[f["role"]].get("bytes")
                result.unchanged.append(sku)
            for f in files:
                f["url"] = _url(dest, f["name"], base_url)
                f.pop("source", None)
            entry = _entry(a, files)
            manifest.append(entry)
            if not same:
                rows.append(_row(result, dest, a, "published", files, now, who, entry))
        keep = {a["sku"] for a in wanted}
        for sku, prev in sorted(held.items()):
            if sku in keep:
                continue
            if not dry_run:
                for f in json.loads(prev["files"]):
                    _delete(store, f["name"])
            result.withdrawn.append(sku)
            rows.append({"item_id": f"{result.publish_id}:{sku}", "publish_id": result.publish_id,
                         "destination": dest, "sku": sku, "attempt_id": prev["attempt_id"],
                         "run_id": prev["run_id"], "review_id": None, "action": "withdrawn",
                         "files": prev["files"], "glb_sha256": prev["glb_sha256"],
                         "published_at": now, "publisher": who})
        manifest = [m for m in manifest if m]
        manifest.sort(key=lambda m: m["sku"])
        result.manifest = manifest
        if not dry_run:
            result.manifest_written = _write_manifests(store, manifest)
            if rows:
                open_storage(cat.root).put(
                    f"catalog/published/{result.publish_id}.parquet",
                    parquet_bytes(rows_table(rows, PUBLISHED_SCHEMA)))
        return result
    finally:
        if mine:
            cat.close()


def _entry(a: dict[str, Any], files: list[dict[str, Any]]) -> dict[str, Any]:
    by = {f["role"]: f for f in files}

    def mm(v: Any) -> float | None:
        return None if v is None else round(float(v) * 1000.0, 1)

    e: dict[str, Any] = {
        "sku": a["sku"], "title": a.get("title") or "",
        "width_mm": mm(a.get("metrics_bbox_x_m")), "height_mm": mm(a.get("metrics_bbox_y_m")),
        "depth_mm": mm(a.get("metrics_bbox_z_m")),
        "triangles": a.get("metrics_tris"), "attempt_id": a["attempt_id"],
        "reviewed": a.get("review_status") == "approve",
        "approved_by": a.get("reviewer") if a.get("review_status") == "approve" else None,
        "approved_at": str(a["decided_at"]) if a.get("review_status") == "approve" else None,
    }
    for role in ROLES:
        f = by.get(role)
        e[role] = f["name"] if f else None
        e[f"{role}_url"] = f["url"] if f else None
        e[f"{role}_bytes"] = f.get("bytes") if f else None
        e[f"{role}_sha256"] = f["sha256"] if f else None
    return {k: e.get(k) for k in MANIFEST_FIELDS}


def _manifest_row(d: dict[str, Any]) -> dict[str, Any]:
    return {k: d.get(k) for k in MANIFEST_FIELDS}


def _row(result: PublishResult, dest: str, a: dict[str, Any], action: str,
         files: list[dict[str, Any]], now: int, who: str, entry: dict) -> dict[str, Any]:
    return {"item_id": f"{result.publish_id}:{a['sku']}", "publish_id": result.publish_id,
            "destination": dest, "sku": a["sku"], "attempt_id": a["attempt_id"],
            "run_id": a["run_id"], "review_id": a.get("review_id"), "action": action,
            "files": json.dumps(files, sort_keys=True),
            "glb_sha256": next((f["sha256"] for f in files if f["role"] == "glb"), None),
            "published_at": now, "publisher": who, "manifest_row": json.dumps(entry)}


def _write_manifests(store, manifest: Sequence[dict[str, Any]]) -> bool:
    """Write manifest.csv / manifest.json when their content changed; True if written."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(MANIFEST_FIELDS), lineterminator="\n")
    w.writeheader()
    for m in manifest:
        w.writerow({k: "" if v is None else v for k, v in m.items()})
    files = {"manifest.csv": buf.getvalue().encode(),
             "manifest.json": (json.dumps({"count": len(manifest), "items": list(manifest)},
                                          indent=2, default=str) + "\n").encode()}
    wrote = False
    for name, data in files.items():
        try:
            old = store.get(name) if store.exists(name) else None
        except Exception:  # noqa: BLE001 - unreadable: rewrite it
            old = None
        if old != data:
            store.put(name, data)
            wrote = True
    return wrote


def _delete(store, key: str) -> None:
    from .compact import _delete_many

    _delete_many(store, [key])

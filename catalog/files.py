"""Which Parquet files make up the catalog right now, and local paths DuckDB can read them at.

The catalog is a set of immutable files per kind of row (``assets``, ``stages``, ``verdicts``,
``reviews``, ``published``, ``rulesets``, and the scheduled flows' ``flow_runs`` and
``ingested``):

* fragments, written by workers: ``catalog/<kind>/[run=<run_id>/]<id>.parquet``;
* compacted files, written by ``compact``: ``catalog/compacted/<kind>/<partition>/c-<id>.parquet``,
  each with a sidecar ``c-<id>.sources.json`` (written *before* the data file) that names the
  files it merged;
* the compacted files of the first layout, ``catalog/compacted/<kind>-<id>.parquet`` (no sidecar);
* derived tables, rebuildable from the rows above and never a source of rows: each run's latest
  attempt per SKU (``catalog/derived/latest/run=<run_id>/<digest>.parquet``, see ``latest``),
  named by a digest of the files it was computed from, so a reader uses it only while the run's
  files are exactly those.

A reader takes a snapshot: it lists the fragments first and the compacted files second, so a
fragment deleted by a compaction between the two listings is always inside a compacted file the
second listing sees. From the snapshot it drops every compacted file that a newer compacted file
covers (its sidecar names it) and every compacted file whose sources are a subset of another's
(two compactions of the same files). Rows present both in a fragment and in a compacted file (a
compaction that has not deleted its sources yet, or a fragment rewritten after it was compacted)
are resolved row by row in the views: the fragment's row wins. So each row is seen exactly once
whatever moment a reader looks.

On S3 the files are downloaded (in parallel, through boto3) into a local cache keyed by the
object's ETag; DuckDB then reads local Parquet with its statistics and filter pushdown. Files are
immutable, so a cached copy never goes stale; copies no longer listed are pruned.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..core.storage import LocalStorage, S3Storage, open_storage

#: Kinds of rows, their key column (unique per row; stage rows are keyed by their attempt) and
#: whether their fragments sit in ``run=<run_id>`` partitions.
KINDS: dict[str, tuple[str, bool]] = {
    "assets": ("attempt_id", True),
    "stages": ("attempt_id", True),
    "verdicts": ("verdict_id", True),
    "reviews": ("review_id", False),
    "published": ("item_id", False),
    "rulesets": ("rules_hash", False),
    "flow_runs": ("flow_run_id", False),   # keyed by run: a fragment's row is that run's newest
    "ingested": ("ingest_id", False),
}

#: The partition name of kinds that are not partitioned by run.
ALL = "all"

_RUN_PART = re.compile(r"(?:^|/)run=([^/]+)/")


@dataclass(frozen=True)
class CatalogFile:
    """One Parquet file of the catalog."""

    key: str                 # storage key under the catalog root
    kind: str
    partition: str | None    # run id, ALL, or None (first-layout compacted files: any run)
    compacted: bool
    size: int = 0
    etag: str = ""


#: Where the derived per-run tables live (not a kind: no view reads rows from them directly).
DERIVED_PREFIX = "catalog/derived/"
LATEST_PREFIX = DERIVED_PREFIX + "latest/"
#: The kinds a run's latest-attempt table is computed from (a new file of either makes it stale).
LATEST_KINDS = ("assets", "verdicts")


def latest_key(run: str, sources: Iterable[str]) -> str:
    """The key of run ``run``'s latest-attempt table computed from the files ``sources``: a
    digest of their keys (catalog files are immutable and never reuse a key), so the name says
    exactly which files it covers."""
    digest = hashlib.sha256("\n".join(sorted(sources)).encode()).hexdigest()[:24]
    return f"{LATEST_PREFIX}run={run}/{digest}.parquet"


@dataclass
class Snapshot:
    """The live files of each kind at one moment, and the derived tables listed with them."""

    root: str
    files: dict[str, list[CatalogFile]]
    taken_at: float
    derived: dict[str, CatalogFile] = field(default_factory=dict)

    def of(self, kind: str, runs: Iterable[str] | None = None) -> list[CatalogFile]:
        """The live files of ``kind``; with ``runs``, only those that can hold those runs."""
        out = self.files.get(kind, [])
        if runs is None:
            return out
        wanted = set(runs)
        return [f for f in out if f.partition is None or f.partition == ALL
                or f.partition in wanted]

    def latest_sources(self, run: str) -> list[CatalogFile] | None:
        """The files run ``run``'s latest-attempt table is computed from (its attempts and
        verdicts), or None while any of them is a fragment (the run is still being written, or
        not compacted since): a table is only made, and only used, for compacted files."""
        files = [f for kind in LATEST_KINDS for f in self.of(kind, [run])]
        if not any(f.kind == "assets" for f in files) or not all(f.compacted for f in files):
            return None
        return files

    def fresh_latest(self, run: str) -> CatalogFile | None:
        """Run ``run``'s latest-attempt table if one was computed from exactly the run's files
        in this snapshot; None if the run has any newer file (or none was made yet)."""
        files = self.latest_sources(run)
        if files is None:
            return None
        return self.derived.get(latest_key(run, [f.key for f in files]))


def partition_of(key: str, kind: str) -> str | None:
    m = _RUN_PART.search(key)
    if m:
        return m.group(1)
    return ALL if not KINDS[kind][1] else None


def is_remote(root: str) -> bool:
    return str(root).startswith("s3://")


def _list(store, prefix: str) -> list[tuple[str, int, str]]:
    """(key, size, etag) of every object under ``prefix``."""
    if isinstance(store, S3Storage):
        full = store._key(prefix)
        strip = len(store.prefix) + 1 if store.prefix else 0
        out = []
        for page in store.client.get_paginator("list_objects_v2").paginate(
                Bucket=store.bucket, Prefix=full):
            for obj in page.get("Contents", []):
                out.append((obj["Key"][strip:], int(obj["Size"]), obj["ETag"].strip('"')))
        return out
    base = Path(store.root) / prefix
    if not base.exists():
        return []
    out = []
    for dirpath, _dirs, names in os.walk(base):
        for name in names:
            if name.startswith(".tmp-"):
                continue
            p = Path(dirpath) / name
            try:
                st = p.stat()
            except FileNotFoundError:  # deleted by a compaction while we walked
                continue
            out.append((str(p.relative_to(store.root)), st.st_size, f"{st.st_mtime_ns}"))
    out.sort()
    return out


def compacted_prefix(kind: str, partition: str) -> str:
    return f"catalog/compacted/{kind}/{'run=' + partition if partition != ALL else ALL}/"


def _kind_of_compacted(key: str) -> str | None:
    rest = key[len("catalog/compacted/"):]
    head = rest.split("/", 1)[0]
    if head in KINDS and "/" in rest:
        return head
    m = re.match(r"([a-z_]+)-[^/]*\.parquet$", rest)     # first layout
    return m.group(1) if m and m.group(1) in KINDS else None


def read_sidecar(store, key: str) -> list[str]:
    try:
        return list(json.loads(store.get(key))["sources"])
    except FileNotFoundError:
        return []
    except Exception as exc:
        if "NoSuchKey" in type(exc).__name__ or "NoSuchKey" in str(exc) or "404" in str(exc):
            return []
        raise


def snapshot(root: str, kinds: Iterable[str] = tuple(KINDS)) -> Snapshot:
    """List the live files of each kind (see the module docstring for why this order)."""
    store = open_storage(str(root))
    kinds = list(kinds)
    fragments = {k: [(key, size, etag) for key, size, etag in _list(store, f"catalog/{k}/")
                     if key.endswith(".parquet")] for k in kinds}
    listed = _list(store, "catalog/compacted/")
    sidecar_keys = {key for key, _, _ in listed if key.endswith(".sources.json")}
    compacted: dict[str, list[tuple[str, int, str]]] = {k: [] for k in kinds}
    for key, size, etag in listed:
        if key.endswith(".parquet"):
            kind = _kind_of_compacted(key)
            if kind in compacted:
                compacted[kind].append((key, size, etag))
    files: dict[str, list[CatalogFile]] = {}
    for kind in kinds:
        sources: dict[str, set[str]] = {}
        for key, _, _ in compacted[kind]:
            side = key[:-len(".parquet")] + ".sources.json"
            sources[key] = set(read_sidecar(store, side)) if side in sidecar_keys else set()
        live = live_compacted(sources)
        out = [CatalogFile(k, kind, partition_of(k, kind), False, s, e)
               for k, s, e in fragments[kind]]
        out += [CatalogFile(k, kind, partition_of(k, kind) if "/run=" in k or f"/{ALL}/" in k
                            else None, True, s, e)
                for k, s, e in compacted[kind] if k in live]
        files[kind] = out
    derived: dict[str, CatalogFile] = {}
    if any(k in LATEST_KINDS for k in kinds):
        # listed last: a table is only used if its digest matches the files listed above
        for key, size, etag in _list(store, LATEST_PREFIX):
            if key.endswith(".parquet"):
                derived[key] = CatalogFile(key, "latest", partition_of(key, "assets"), True,
                                           size, etag)
    return Snapshot(str(root), files, time.time(), derived)


def live_compacted(sources: dict[str, set[str]]) -> set[str]:
    """Compacted files not covered by another: not named as a source by any other, and (for
    two compactions of the same inputs) not holding a subset of another's sources."""
    covered = set().union(*sources.values()) if sources else set()
    alive = [k for k in sorted(sources) if k not in covered]
    keep = set(alive)
    for a in alive:
        for b in alive:
            if a != b and a in keep and b in keep and sources[a] and sources[a] <= sources[b] \
                    and (sources[a] != sources[b] or a > b):
                keep.discard(a)
    return keep


# ---------------------------------------------------------------- local paths for DuckDB

def cache_dir() -> Path:
    """Where S3 catalog files are cached: ``$ASSETFACTORY_CACHE_DIR`` or ~/.cache/assetfactory."""
    base = os.environ.get("ASSETFACTORY_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "assetfactory")
    return Path(base) / "catalog"


def _cache_root(root: str) -> Path:
    return cache_dir() / hashlib.sha256(root.rstrip("/").encode()).hexdigest()[:16]


def _cached_name(f: CatalogFile) -> str:
    return hashlib.sha256(f"{f.key}\0{f.etag}\0{f.size}".encode()).hexdigest()[:32] + ".parquet"


def local_paths(root: str, files: list[CatalogFile], threads: int = 16) -> list[str]:
    """Paths DuckDB can read for ``files``: the files themselves locally, cached copies on S3."""
    store = open_storage(str(root))
    if isinstance(store, LocalStorage):
        return [str(store.root / f.key) for f in files]
    croot = _cache_root(root)
    croot.mkdir(parents=True, exist_ok=True)
    paths = [croot / _cached_name(f) for f in files]
    missing = [(f, p) for f, p in zip(files, paths) if not p.exists()]

    def fetch(item: tuple[CatalogFile, Path]) -> None:
        f, p = item
        data = store.get(f.key)
        fd, tmp = tempfile.mkstemp(dir=croot, prefix=".tmp-")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, p)

    if missing:
        with ThreadPoolExecutor(max_workers=max(1, min(threads, len(missing)))) as pool:
            list(pool.map(fetch, missing))
    return [str(p) for p in paths]


def prune_cache(root: str, snap: Snapshot) -> int:
    """Delete cached copies of files the snapshot no longer lists; returns how many."""
    if not is_remote(root):
        return 0
    croot = _cache_root(root)
    if not croot.exists():
        return 0
    keep = {_cached_name(f) for files in snap.files.values() for f in files}
    keep |= {_cached_name(f) for f in snap.derived.values()}
    n = 0
    for p in croot.iterdir():
        if p.suffix == ".parquet" and p.name not in keep and \
                time.time() - p.stat().st_mtime > 60:
            p.unlink(missing_ok=True)
            n += 1
    return n

"""Merge many small fragments into a few large, sorted Parquet files, losing and duplicating
nothing, while readers and writers carry on.

Per kind of row and per partition (one per run for attempts, stages and verdicts; one for
reviews, publications and rulesets), a compaction:

1. takes a lock for the partition (an exclusive create locally, a conditional PUT on S3), so
   two compactions never merge the same files;
2. reads the partition's fragments and its smaller compacted files through DuckDB, sorted by
   SKU (then key), and writes one file with 64k-row groups and column statistics, so a query
   for one SKU or one run reads a few row groups;
3. checks that the new file holds exactly the rows of its inputs (count and an
   order-independent content hash) before anything is deleted;
4. writes ``c-<id>.sources.json`` (the files it merged), then the data file ``c-<id>.parquet``;
5. deletes the merged files.

Then, for each run whose attempts and verdicts are now all compacted, it writes the run's
latest attempt per SKU as a small sorted table (derived data for run diffs; see ``latest``).

A crash after any step leaves the catalog readable with every row exactly once: readers ignore
a sidecar without its data file, drop compacted files that a newer one names as sources, and
prefer a fragment's row over a compacted copy of it (see ``files``). The next compaction removes
what a crash left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self, TypeVar

import duckdb

from ..core.storage import LocalStorage, open_storage
from .files import (
    ALL,
    KINDS,
    LATEST_KINDS,
    CatalogFile,
    _list,
    compacted_prefix,
    live_compacted,
    local_paths,
    read_sidecar,
    snapshot,
)

#: Sort order inside a compacted file: SKU first so one SKU's rows sit in one row group.
SORT_KEYS: dict[str, tuple[str, ...]] = {
    "assets": ("sku", "attempt_id"),
    "stages": ("sku", "attempt_id", "seq"),
    "verdicts": ("sku", "computed_at", "verdict_id"),
    "reviews": ("sku", "decided_at", "review_id"),
    "published": ("sku", "published_at", "item_id"),
    "rulesets": ("rules_hash",),
    "flow_runs": ("flow_run_id", "seq"),
    "ingested": ("uri", "ingested_at", "ingest_id"),
}
ROW_GROUP_ROWS = 65_536
#: Compacted files larger than this are left alone; new rows go to a new file beside them.
MERGE_UP_TO_BYTES = 256 * 1024 * 1024
#: Fragments read by one query of a compaction; more are first merged in groups of this many.
#: DuckDB holds a reader per file of a query that reads files by name (schemas may differ), about
#: 0.4 MB for an asset fragment of ~180 columns, outside its memory limit: reading a 10,000-SKU
#: run's 380 block fragments at once took 150 MB for that alone.
GROUP_FILES = 32
#: The most a row group of a compacted file holds in memory while it is written (DuckDB's
#: writer keeps the group's rows until it is full); 65,536 asset rows are ~600 MB.
ROW_GROUP_BYTES = "64MB"
#: The compaction a run does when it finishes, in the run's driver: one file per chunk of at
#: most this many bytes of the run's fragments (~1,300 SKUs' asset rows of the cheap recipe),
#: so that its memory does not grow with the run. DuckDB's sort does not stay within a memory
#: limit for rows this wide (180 columns, ~9 kB): under 183 MB it ran out of memory sorting
#: 30,000 of them, so the bound is the rows a sort is given, not the limit.
RUN_CHUNK_BYTES = 4 * 1024 * 1024
DEFAULT_MEMORY_LIMIT = "2GB"
STALE_LOCK_S = 3600.0
T = TypeVar("T")


class CompactionBusy(RuntimeError):
    """Another compaction holds the partition's lock."""


@dataclass
class PartitionResult:
    kind: str
    partition: str | None
    files_in: int
    rows: int
    output: str | None                # the (last) file written
    seconds: float
    busy: bool = False
    outputs: list[str] = field(default_factory=list)  # every file written (one per chunk)


@dataclass
class CompactReport:
    """What a compaction did, per kind and partition."""

    partitions: list[PartitionResult] = field(default_factory=list)
    latest: list[str] = field(default_factory=list)   # latest-attempt tables written

    @property
    def rows(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for p in self.partitions:
            out[p.kind] = out.get(p.kind, 0) + p.rows
        return out

    @property
    def files_in(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for p in self.partitions:
            out[p.kind] = out.get(p.kind, 0) + p.files_in
        return out


def compact(root: str, kinds: tuple[str, ...] = tuple(KINDS), *,
            runs: Sequence[str] | None = None,
            on_written: Callable[[str], None] | None = None,
            memory_limit: str = DEFAULT_MEMORY_LIMIT, latest: bool = True,
            chunk_bytes: int | None = None) -> CompactReport:
    """Compact every partition of each kind that has something to merge (with ``runs``, only
    those runs' partitions: what a run does when it finishes).

    ``on_written(key)`` is called after the new data file is in place and before its inputs
    are deleted (the moment a crash would be most awkward; tests look at the catalog there).
    ``latest=False`` leaves the runs' latest-attempt tables for a compaction that follows
    (a run compacts its attempts, triages them, then compacts the verdicts: one build, not two).
    ``memory_limit``: DuckDB's, per job; beyond it the sort spills to a temporary folder (a
    job that cannot run within it is run again with more, up to the default).
    ``chunk_bytes``: a partition holding fragments only (a run's, when it ends) is merged into
    one file per chunk of at most this many bytes of fragments, so that no sort holds more
    rows than a chunk's, however large the run (None: one file per partition).
    """
    root = str(root) if str(root).startswith("s3://") else os.path.abspath(str(root))
    store = open_storage(root)
    report = CompactReport()
    for kind in kinds:
        snap = snapshot(root, [kind])
        parts = sorted({f.partition for f in snap.of(kind)}, key=lambda p: (p is None, p or ""))
        if runs is not None:
            parts = [p for p in parts if p in set(runs)]
        for part in parts:
            try:
                with _lock(store, kind, part):
                    res = _compact_partition(root, store, kind, part, on_written, memory_limit,
                                             chunk_bytes)
            except CompactionBusy:
                res = PartitionResult(kind, part, 0, 0, None, 0.0, busy=True)
            if res is not None:
                report.partitions.append(res)
    if latest and set(kinds) & set(LATEST_KINDS):
        # each compacted run's latest attempt per SKU, for run diffs (derived: see latest)
        from .latest import build_latest

        report.latest = build_latest(root, runs, memory_limit=memory_limit)
    return report


def _mb(limit: str) -> float:
    """A DuckDB memory limit ("128MB", "2GB") in MB."""
    num = limit.strip().upper().rstrip("IB").rstrip("B")
    for unit, f in (("K", 1 / 1024), ("M", 1.0), ("G", 1024.0), ("T", 1024.0 ** 2)):
        if num.endswith(unit):
            return float(num[:-1]) * f
    return float(num) / 2 ** 20


def _with_more_memory(limit: str, job: Callable[[str], T]) -> T:
    """``job(limit)``; where DuckDB runs out of memory under a small limit (a sort spills to
    disk, but each thread needs some blocks of its own, more for wide rows), again under 4x
    the limit, up to the default 2 GB: a run's compaction may be slower, never refused."""
    while True:
        try:
            return job(limit)
        except duckdb.OutOfMemoryException:
            if _mb(limit) >= _mb(DEFAULT_MEMORY_LIMIT):
                raise
            limit = f"{min(4 * _mb(limit), _mb(DEFAULT_MEMORY_LIMIT)):.0f}MB"


def _partition_dir(kind: str, part: str | None) -> str:
    return compacted_prefix(kind, part) if part is not None else f"catalog/compacted/{kind}/mixed/"


def _compact_partition(root: str, store, kind: str, part: str | None,
                       on_written: Callable[[str], None] | None,
                       memory_limit: str, chunk_bytes: int | None = None
                       ) -> PartitionResult | None:
    t0 = time.perf_counter()
    snap = snapshot(root, [kind])                     # fresh, now that we hold the lock
    mine = [f for f in snap.of(kind) if f.partition == part]
    frags = [f for f in mine if not f.compacted]
    comps = [f for f in mine if f.compacted]
    small = [f for f in comps if f.size <= MERGE_UP_TO_BYTES]
    _collect_garbage(store, kind, part)
    if not frags and len(small) < 2:
        return None
    if chunk_bytes and not comps:
        # a partition of fragments only (a run's, when it ends): one file per chunk of them, so
        # no sort holds more than a chunk's rows (fragments hold distinct keys: nothing for
        # one chunk to resolve against another)
        batches = [(c, []) for c in _chunks(frags, chunk_bytes)]
    else:
        batches = [(frags, small)]
    rows, outputs = 0, []
    for fr, sm in batches:
        n, data_key = _merge(root, store, kind, part, fr, sm, on_written, memory_limit)
        rows += n
        outputs.append(data_key)
    return PartitionResult(kind, part, len(frags) + len(small), rows, outputs[-1],
                           time.perf_counter() - t0, outputs=outputs)


def _chunks(frags: list[CatalogFile], chunk_bytes: int) -> list[list[CatalogFile]]:
    """``frags`` in consecutive chunks of at most ``chunk_bytes`` (a larger file alone)."""
    out: list[list[CatalogFile]] = [[]]
    size = 0
    for f in frags:
        if out[-1] and size + f.size > chunk_bytes:
            out.append([])
            size = 0
        out[-1].append(f)
        size += f.size
    return out


def _merge(root: str, store, kind: str, part: str | None, frags: list[CatalogFile],
           small: list[CatalogFile], on_written: Callable[[str], None] | None,
           memory_limit: str) -> tuple[int, str]:
    """Merge ``frags`` and the compacted files ``small`` into one new compacted file, then
    delete them; returns its rows and key."""
    inputs = frags + small
    key = KINDS[kind][0]
    sources = sorted({f.key for f in inputs} | _inherited_sources(store, kind, small))
    out_dir = _partition_dir(kind, part)
    name = f"c-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:10]}"
    data_key, side_key = out_dir + name + ".parquet", out_dir + name + ".sources.json"

    def job(limit: str) -> int:
        with duckdb_job(limit, "assetfactory-compact-", keep_order=False) as (con, tmpdir):
            # more fragments than GROUP_FILES are first copied, a group at a time, into files
            # in the job's folder, each checked: DuckDB keeps a reader per file of a query
            # that reads files by name, outside its memory limit (~0.4 MB per asset fragment)
            fpaths = local_paths(root, frags) if frags else []
            level = 0
            while len(fpaths) > GROUP_FILES:      # ~32x fewer files a level
                fpaths = [_merge_group(con, fpaths[i:i + GROUP_FILES],
                                       Path(tmpdir) / f"l{level}-{i // GROUP_FILES:06d}.parquet",
                                       kind, part)
                          for i in range(0, len(fpaths), GROUP_FILES)]
                level += 1
            src = _source_sql(fpaths, local_paths(root, small) if small else [], key)
            order = ", ".join(f'"{c}"' for c in SORT_KEYS[kind] if c)
            tmp_out = staging_file(store, data_key, tmpdir)
            rows = _copy_checked(con, f"SELECT * FROM {src} ORDER BY {order}", src, tmp_out,
                                 f"(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE "
                                 f"{ROW_GROUP_ROWS}, ROW_GROUP_SIZE_BYTES '{ROW_GROUP_BYTES}')",
                                 kind, part)
            store.put(side_key, json.dumps({"sources": sources, "rows": rows,
                                            "written_at": time.time(),
                                            "host": socket.gethostname()}).encode())
            publish(store, tmp_out, data_key)
        return rows

    rows = _with_more_memory(memory_limit, job)
    if on_written:
        on_written(data_key)
    _delete_many(store, [f.key for f in frags])
    for f in small:                                   # data first: a sidecar alone is inert
        _delete_many(store, [f.key])
        _delete_many(store, [f.key[:-len(".parquet")] + ".sources.json"])
    return rows, data_key


def _source_sql(fp: list[str], cp: list[str], key: str) -> str:
    """The rows of the fragments ``fp`` and the compacted files ``cp``, each once: a row in both
    is taken from the fragment."""
    from .views import read_sql

    if not cp:
        return f"(SELECT * FROM {read_sql(fp)})"
    if not fp:
        return f"(SELECT * FROM {read_sql(cp)})"
    k = f'"{key}"'
    return (f"(SELECT * FROM {read_sql(cp)} WHERE {k} NOT IN (SELECT {k} FROM {read_sql(fp)} "
            f"WHERE {k} IS NOT NULL) UNION ALL BY NAME SELECT * FROM {read_sql(fp)})")


def _merge_group(con: duckdb.DuckDBPyConnection, paths: list[str], out: Path, kind: str,
                 part: str | None) -> str:
    """The rows of ``paths`` in one file ``out`` (unsorted: the final merge sorts), checked."""
    from .views import read_sql

    src = f"(SELECT * FROM {read_sql(paths)})"
    _copy_checked(con, f"SELECT * FROM {src}", src, out, "(FORMAT parquet, COMPRESSION snappy)",
                  kind, part)
    return str(out)


def _copy_checked(con: duckdb.DuckDBPyConnection, select: str, src: str, out: Path,
                  options: str, kind: str, part: str | None) -> int:
    """``COPY (select) TO out``, then check that ``out`` holds exactly the rows of ``src``
    (count and an order-independent content hash), else delete it and raise: nothing of the
    inputs is deleted by a compaction whose output was not checked. Returns the rows."""
    con.execute(f"COPY ({select}) TO '{_esc(str(out))}' {options}")
    want = con.execute(f"SELECT count(*), sum(hash(t)::HUGEINT) FROM {src} t").fetchone()
    got = con.execute(f"SELECT count(*), sum(hash(t)::HUGEINT) FROM "
                      f"read_parquet('{_esc(str(out))}', hive_partitioning = false) t").fetchone()
    if tuple(want) != tuple(got):
        out.unlink(missing_ok=True)
        raise RuntimeError(
            f"compaction of {kind} partition {part}: the merged file holds {got[0]} rows "
            f"(hash {got[1]}) but its inputs hold {want[0]} (hash {want[1]}); nothing was "
            "deleted. Report this with the catalog's files attached.")
    return int(want[0])


def _inherited_sources(store, kind: str, comps: list[CatalogFile]) -> set[str]:
    """Sources of the compacted files being merged that still exist (a crash left them): the
    new file must name them too, or they would come back once their compacted file is gone."""
    out: set[str] = set()
    existing = None
    for f in comps:
        names = read_sidecar(store, f.key[:-len(".parquet")] + ".sources.json")
        if not names:
            continue
        if existing is None:
            existing = {k for p in (f"catalog/{kind}/", "catalog/compacted/")
                        for k, _, _ in _list(store, p)}
        out |= {n for n in names if n in existing}
    return out


def _collect_garbage(store, kind: str, part: str | None) -> None:
    """Remove compacted files that a newer compacted file covers (a crash left them), and
    sidecars whose data file never appeared, once they are an hour old."""
    prefix = _partition_dir(kind, part)
    listed = _list(store, prefix)
    keys = {k for k, _, _ in listed}
    datas = [k for k in keys if k.endswith(".parquet")]
    sources = {k: set(read_sidecar(store, k[:-len(".parquet")] + ".sources.json")) for k in datas}
    live = live_compacted(sources)
    for k in datas:
        if k not in live:
            _delete_many(store, [k])
            _delete_many(store, [k[:-len(".parquet")] + ".sources.json"])
    if isinstance(store, LocalStorage):
        now = time.time()
        for k in keys:
            p = store.root / k
            orphan = k.endswith(".sources.json") and \
                k[:-len(".sources.json")] + ".parquet" not in keys
            if orphan and p.exists() and now - p.stat().st_mtime > 3600:
                p.unlink(missing_ok=True)
        sweep_staging(store, prefix, now)


def sweep_staging(store, prefix: str, now: float | None = None) -> None:
    """Delete staged files (``.tmp-*``) under ``prefix`` that a crashed writer left, once they
    are an hour old (a live writer publishes its file within seconds). Local storage only: on
    S3 a staged file lives in the writer's temporary folder, never under the catalog."""
    if not isinstance(store, LocalStorage):
        return
    base = store.root / prefix
    if not base.exists():
        return
    now = time.time() if now is None else now
    for p in base.glob(".tmp-*"):
        try:
            if now - p.stat().st_mtime > 3600:
                p.unlink(missing_ok=True)
        except FileNotFoundError:
            continue


def _delete_many(store, keys: list[str]) -> None:
    if not keys:
        return
    if isinstance(store, LocalStorage):
        for k in keys:
            (store.root / k).unlink(missing_ok=True)
        return
    for i in range(0, len(keys), 1000):
        chunk = keys[i:i + 1000]
        store.client.delete_objects(Bucket=store.bucket, Delete={
            "Objects": [{"Key": store._key(k)} for k in chunk], "Quiet": True})


class _lock:
    """An exclusive lock on one partition's compaction, stale after ``STALE_LOCK_S``."""

    def __init__(self, store, kind: str, part: str | None) -> None:
        self.store = store
        self.key = _partition_dir(kind, part) + "_lock"
        self.body = json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                                "at": time.time(), "token": uuid.uuid4().hex}).encode()

    def __enter__(self) -> Self:
        for _ in range(2):
            if self._try():
                return self
            if not self._break_if_stale():
                raise CompactionBusy(self.key)
        raise CompactionBusy(self.key)

    def __exit__(self, *exc: object) -> None:
        _delete_many(self.store, [self.key])

    def _try(self) -> bool:
        if isinstance(self.store, LocalStorage):
            path = self.store.root / self.key
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as fh:
                fh.write(self.body)
            return True
        from botocore.exceptions import ClientError

        try:
            self.store.client.put_object(Bucket=self.store.bucket, Key=self.store._key(self.key),
                                         Body=self.body, IfNoneMatch="*")
            return True
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("PreconditionFailed", "ConditionalRequestConflict"):
                return False
            raise

    def _break_if_stale(self) -> bool:
        try:
            held = json.loads(self.store.get(self.key))
        except Exception:  # noqa: BLE001 - gone or unreadable: try again
            return True
        if time.time() - float(held.get("at", 0)) > STALE_LOCK_S:
            _delete_many(self.store, [self.key])
            return True
        return False


def _esc(s: str) -> str:
    return s.replace("'", "''")


@contextlib.contextmanager
def duckdb_job(memory_limit: str, prefix: str,
               keep_order: bool = True) -> Iterator[tuple[duckdb.DuckDBPyConnection, str]]:
    """A DuckDB connection for one job that writes a catalog file, and a temporary folder it
    spills to (and a file bound for S3 is staged in); both gone afterwards."""
    con = duckdb.connect()
    con.execute(f"SET memory_limit = '{memory_limit}'")
    if not keep_order:
        con.execute("SET preserve_insertion_order = false")
    con.execute("SET enable_progress_bar = false")
    tmpdir = tempfile.mkdtemp(prefix=prefix)
    con.execute(f"SET temp_directory = '{tmpdir}'")
    try:
        yield con, tmpdir
    finally:
        con.close()
        _rmtree(tmpdir)


def staging_file(store, key: str, tmpdir: str) -> Path:
    """Where the file for ``key`` is written before ``publish``: beside its place locally
    (``.tmp-<name>``, on the same file system, so the rename is atomic), in ``tmpdir`` for
    S3."""
    name = key.rsplit("/", 1)[1]
    if isinstance(store, LocalStorage):
        target = store.root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        return target.parent / f".tmp-{name}"
    return Path(tmpdir) / name


def publish(store, tmp_out: Path, key: str) -> None:
    """Make a staged file visible under ``key`` whole: a rename locally, one PUT on S3."""
    if isinstance(store, LocalStorage):
        os.replace(tmp_out, store.root / key)
    else:
        store.put(key, tmp_out.read_bytes())
        tmp_out.unlink(missing_ok=True)


def _rmtree(path: str) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


__all__ = ["ALL", "CompactReport", "CompactionBusy", "PartitionResult", "compact"]

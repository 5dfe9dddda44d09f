"""UV unwrapping with xatlas, whole or in partitions unwrapped in parallel processes.

Why partitions: xatlas's chart segmentation grows faster than linearly with the face count
(here 10k faces ~1 s, 23k ~7 s, 100k ~95 s on one core), and it crashed (SIGSEGV) on an
80k-face icosphere. So above ``chunk_faces`` the mesh is cut into partitions (one per part
label, and a big part by recursive coordinate bisection of its face centroids), each unwrapped
by its own xatlas call in a process pool (each at one texel per metre, so charts keep their
relative scale), and all charts are packed into ONE atlas by ``chart_packing.pack_charts``.
Every xatlas call runs in a child process, so a crash there becomes a ``ProcessingError``
instead of killing the worker.

``options`` below is any object with the fields of ``tasks.uv.UVOptions`` (resolution,
padding, max_chart_area, mode, chunk_faces, workers).
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Protocol

import numpy as np

from ..core.errors import ProcessingError
from ..core.mesh import MeshData
from ..core.stage import stage_cpus
from ..geometry.normals import face_areas as _face_areas_3d
from .chart_packing import PackSettings, Unwrap, pack_charts, without_overlaps
from .uv_quality import uv_areas as _uv_areas

log = logging.getLogger(__name__)


class UnwrapSettings(PackSettings, Protocol):
    """What unwrapping reads of ``tasks.uv.UVOptions`` (see there)."""

    max_chart_area: float
    mode: str
    chunk_faces: int
    partition_texels: int
    workers: int

_MAX_REPACKS = 6


# The xatlas calls run inside child processes (see ``_run``); they take and return plain arrays.


def _surface_area(mesh: MeshData) -> float:
    return float(_face_areas_3d(mesh.vertices, mesh.faces).sum())


def _pack_options(resolution: int, padding: int, texels_per_unit: float):
    import xatlas

    pack = xatlas.PackOptions()
    pack.resolution = resolution
    pack.padding = padding
    pack.bilinear = True
    pack.texels_per_unit = float(texels_per_unit)
    return pack


_TASKS = "/proc/self/task"


def _threads() -> frozenset[str]:
    """This process's thread ids (Linux), to tell xatlas's threads from the others."""
    try:
        return frozenset(os.listdir(_TASKS))
    except OSError:
        return frozenset()


def _settle(before: frozenset[str], timeout_s: float = 5.0) -> None:
    """Wait until the threads started since ``before`` (xatlas's workers) sleep, before an
    xatlas atlas is destroyed.

    Each ``xatlas.Atlas`` starts a task scheduler with worker threads; destroying it sets a
    shutdown flag, wakes each worker once (without the worker's lock) and joins it. A worker
    that has not yet reached its first wait (on a small mesh the calling thread does all the
    work, and a busy machine may not have run the new thread at all) misses that wake-up, then
    waits forever, and the join with it: the child hangs at 0 % CPU with its result computed
    (seen as ``TaskScheduler::~TaskScheduler`` in ``std::thread::join``, the worker with no
    CPU time, ~1 in 2,500 SKUs). A thread that sleeps here is in that wait, so the wake-up
    reaches it. Linux only (``/proc``); elsewhere a no-op.
    """
    me = str(threading.get_native_id())
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        runnable = False
        for tid in _threads() - before:
            if tid == me:
                continue
            try:
                with open(f"{_TASKS}/{tid}/stat", "rb") as fh:
                    state = fh.read().rsplit(b")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if state == b"R":
                runnable = True
                break
        if not runnable:
            return
        time.sleep(0.001)


def _generate(add, options: UnwrapSettings, max_chart_area: float):
    """One atlas at the requested resolution; re-packed at a lower density if it overflows.
    Every atlas dropped here is dropped after ``_settle`` (see there)."""
    import xatlas

    before = _threads()

    def attempt(tpu: float):
        atlas = xatlas.Atlas()
        try:
            add(atlas)
            chart = xatlas.ChartOptions()
            if max_chart_area > 0:
                chart.max_chart_area = float(max_chart_area)
            atlas.generate(chart, _pack_options(options.resolution, options.padding, tpu))
        except BaseException:
            _settle(before)
            raise
        return atlas

    atlas = attempt(0.0)
    size = max(atlas.width, atlas.height)
    if size > options.resolution or atlas.atlas_count > 1:
        tpu = atlas.texels_per_unit * options.resolution / size * 0.99
        for _ in range(_MAX_REPACKS):
            candidate = attempt(tpu)  # drops the last candidate, settled below
            _settle(before)
            if candidate.atlas_count == 1:
                atlas = candidate
                break
            tpu *= 0.9
    if atlas.atlas_count != 1:
        _settle(before)
        raise ProcessingError(
            "xatlas could not pack the charts into one atlas",
            "raise uv resolution or lower padding for this SKU")
    return atlas, before


def _square(generated) -> Unwrap:
    atlas, before = generated
    vmapping, faces, uv = atlas[0]
    w, h = atlas.width, atlas.height
    side = float(max(w, h))
    faces = np.asarray(faces, np.int64).reshape(-1, 3)
    uv = np.asarray(uv, np.float64) * np.array([w, h]) / side
    result = Unwrap(np.asarray(vmapping, np.int64), faces,
                    np.clip(uv, 0.0, 1.0).astype(np.float32), int(atlas.chart_count),
                    float(atlas.utilization) * w * h / side**2)
    _settle(before)  # the caller drops the atlas next
    return result


def unwrap(mesh: MeshData, options: UnwrapSettings) -> Unwrap:
    """Charts, parametrisation and packing in one xatlas call, in this process (serial mode;
    it may crash the process on some large meshes, so the stage calls it through ``_run``)."""
    normals = (None if mesh.vertex_normals is None
               else np.ascontiguousarray(mesh.vertex_normals, np.float32))

    def add(atlas):
        atlas.add_mesh(np.ascontiguousarray(mesh.vertices, np.float32),
                       np.ascontiguousarray(mesh.faces, np.uint32), normals)

    return _square(_generate(add, options, options.max_chart_area * _surface_area(mesh)))


def unwrap_chunk(vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray | None,
                 max_chart_area: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Charts of one partition, with UVs scaled to its 3D size (texel density 1 per metre).

    Returns (vmapping, faces, uv) like xatlas; the later global pack keeps charts' relative
    scale, so every partition must come back at the same density.
    """
    import xatlas

    before = _threads()
    atlas = xatlas.Atlas()
    try:
        atlas.add_mesh(np.ascontiguousarray(vertices, np.float32),
                       np.ascontiguousarray(faces, np.uint32),
                       None if normals is None else np.ascontiguousarray(normals, np.float32))
        chart = xatlas.ChartOptions()
        if max_chart_area > 0:
            chart.max_chart_area = float(max_chart_area)
        # resolution 0: one atlas of any size (a fixed one would spill charts into more
        # atlases whose UVs lie over each other)
        atlas.generate(chart, _pack_options(0, 1, 0.0))
        vmapping, out_faces, uv = (np.array(a) for a in atlas[0])
        width, height = atlas.width, atlas.height
    finally:
        _settle(before)  # before the atlas is dropped (see _settle)
        del atlas
    out_faces = np.asarray(out_faces, np.int64).reshape(-1, 3)
    uv = np.asarray(uv, np.float64) * np.array([width, height])
    area_uv = np.abs(_uv_areas(uv, out_faces)).sum()
    area_3d = _face_areas_3d(np.asarray(vertices, np.float64), np.asarray(faces)).sum()
    scale = math.sqrt(area_3d / area_uv) if area_uv > 0 else 1.0
    return np.asarray(vmapping, np.int64), out_faces, uv * scale


_POOL: ProcessPoolExecutor | None = None


def _exit_with_parent(parent: int) -> None:
    """Pool initializer: end this child when the process that made the pool is gone.

    A pool's children wait on its queue forever once their parent is killed (a Ray worker
    SIGKILLed, out of memory, or ended with its driver): watched here, they leave with it.
    A watching thread, not ``PR_SET_PDEATHSIG``, which fires when the parent's *thread* that
    forked ends, and stages may run in threads that end.
    """
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()



_POOL_WORKERS = 0


def _pool(workers: int) -> ProcessPoolExecutor:
    """One pool per process, kept between calls, with at least ``workers`` children: it grows
    and never shrinks, so a worker that unwraps small meshes (one child) between big ones (one
    per granted CPU) forks its children once (~0.2 s per child under a big parent), not at
    every switch; ``_run`` keeps to the workers it is asked for.

    Forked on Linux: a spawned (or forkserver) child re-imports the caller's ``__main__``
    script, which breaks any script that lacks an ``if __name__ == "__main__"`` guard, and
    costs ~0.3 s of imports per worker. The children only run numpy and xatlas, which hold
    no locks of the parent's threads (e.g. a Ray worker's). Elsewhere (macOS) spawn is safer.
    """
    global _POOL, _POOL_WORKERS
    if _POOL is None or _POOL_WORKERS < workers:
        if _POOL is not None:
            _POOL.shutdown(wait=False, cancel_futures=True)
        method = "fork" if sys.platform.startswith("linux") else "spawn"
        _POOL = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method),
                                    initializer=_exit_with_parent, initargs=(os.getpid(),))
        _POOL_WORKERS = workers
    return _POOL


def _children(pool: ProcessPoolExecutor) -> list:
    """The pool's live child processes (the executor keeps them in ``_processes``)."""
    return list((getattr(pool, "_processes", None) or {}).values())


def _drop_pool(kill: bool = False) -> None:
    """Forget the pool; ``kill``: end its children first (a hung child ignores a shutdown)."""
    global _POOL
    if _POOL is not None:
        if kill:
            for proc in _children(_POOL):
                proc.kill()
        _POOL.shutdown(wait=False, cancel_futures=True)
    _POOL = None


# A call is taken as hung, not slow, when the pool's children have used no CPU for
# ``IDLE_S`` while it runs: xatlas is CPU-bound, so a child that works always advances its CPU
# time, even at a few percent of a core on a loaded machine. A child forked from a Ray worker
# can inherit a lock another of the worker's threads held at the fork and then wait on it
# forever at 0 % CPU (seen twice in ~7,600 SKUs of 10,000-SKU runs): caught here within
# ``IDLE_S``, not at the stage's timeout (30 min). ``STALL_BASE_S`` + ``STALL_PER_FACE_S`` per
# face is the ceiling for a call that keeps working without end (xatlas on 100k faces takes
# ~95 s on one core; a partition holds ``chunk_faces``, 8k, or fewer).
IDLE_S = 20.0
POLL_S = 2.0
STALL_BASE_S = 300.0
STALL_PER_FACE_S = 2e-3


class _Stalled(Exception):
    pass


_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _children_cpu(pool: ProcessPoolExecutor) -> float:
    """CPU seconds used so far by the pool's live children (user + system), summed."""
    total = 0.0
    for proc in _children(pool):
        try:
            with open(f"/proc/{proc.pid}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / _TICKS
        except (OSError, ValueError, IndexError):
            continue
    return total


def _waits(pool: ProcessPoolExecutor) -> str:
    """Where each child's threads sleep in the kernel (``/proc/<pid>/task/*/wchan``): a lock
    (``futex_wait_queue``) or a read, to tell an inherited lock from a crash, in the log."""
    out = []
    for proc in _children(pool):
        try:
            tasks = sorted(os.listdir(f"/proc/{proc.pid}/task"))
            chans = []
            for tid in tasks:
                with open(f"/proc/{proc.pid}/task/{tid}/wchan") as fh:
                    chans.append(fh.read().strip() or "running")
            out.append(f"{proc.pid}: {', '.join(chans)}")
        except OSError:
            continue
    return "; ".join(out) or "unknown"


def _run_once(pool: ProcessPoolExecutor, calls: list[tuple], faces: list[int], workers: int
              ) -> list:
    results: list = [None] * len(calls)
    todo, running = list(enumerate(calls)), {}
    deadline: dict = {}
    watch_idle = sys.platform.startswith("linux")  # the children's CPU time, from /proc
    last_cpu, since = -1.0, time.monotonic()
    while todo or running:  # at most ``workers`` at once, whatever the pool's size
        while todo and len(running) < workers:
            i, (fn, *args) = todo.pop(0)
            f = pool.submit(fn, *args)
            running[f] = i
            deadline[f] = time.monotonic() + STALL_BASE_S + STALL_PER_FACE_S * faces[i]
        first = min(deadline[f] for f in running)
        done, _ = wait(running, timeout=max(0.0, min(POLL_S, first - time.monotonic())),
                       return_when=FIRST_COMPLETED)
        now = time.monotonic()
        if done:
            since = now
            for f in done:
                results[running.pop(f)] = f.result()
            continue
        if now >= first:
            raise _Stalled
        if watch_idle:
            cpu = _children_cpu(pool)
            if cpu > last_cpu:
                last_cpu, since = cpu, now
            elif now - since >= IDLE_S:
                raise _Stalled
    return results


def _run(calls: list[tuple], workers: int, what: str, faces: list[int] | None = None) -> list:
    """Run ``(fn, *args)`` calls in the pool; a crashed child becomes a ``ProcessingError``.

    A call whose children use no CPU for ``IDLE_S``, or that outlives its ceiling
    (``STALL_BASE_S`` + ``STALL_PER_FACE_S`` per face of ``faces[i]``), kills the pool's
    children; the calls (pure functions of their arrays) run
    once more in a freshly forked pool, and a second stall is a ``ProcessingError``."""
    workers = max(1, workers)
    faces = list(faces) if faces is not None else [0] * len(calls)
    for attempt in (1, 2):
        pool = _pool(max(workers, stage_cpus()))  # a child per granted CPU, used or not
        try:
            return _run_once(pool, calls, faces, workers)
        except _Stalled:
            log.warning("xatlas stalled on %s (try %d); its children's threads wait in: %s",
                        what, attempt, _waits(pool))
            _drop_pool(kill=True)
            if attempt == 2:
                raise ProcessingError(
                    f"xatlas stopped working on {what} (no CPU used for {IDLE_S:.0f} s, or "
                    f"past {STALL_BASE_S:.0f} s + {STALL_PER_FACE_S * 1e3:g} ms per face), "
                    "twice",
                    "re-run this SKU; if it stalls again, set uv mode='parallel' with a "
                    "smaller chunk_faces") from None
        except BrokenProcessPool as exc:
            _drop_pool()
            raise ProcessingError(
                f"xatlas crashed while unwrapping {what}",
                "set uv mode='parallel' with a smaller chunk_faces (smaller xatlas inputs), or "
                "re-run cleanup/simplify on this SKU") from exc
    raise AssertionError("unreachable")


def bisect(points: np.ndarray, max_size: int) -> list[np.ndarray]:
    """Recursive coordinate bisection: index sets of at most ``max_size`` points, split at the
    median of the widest axis (balanced work for the pool, compact regions, deterministic)."""
    out: list[np.ndarray] = []
    stack = [np.arange(len(points))]
    while stack:
        idx = stack.pop()
        if len(idx) <= max_size:
            out.append(idx)
            continue
        p = points[idx]
        axis = int(np.argmax(p.max(0) - p.min(0)))
        order = idx[np.argsort(p[:, axis], kind="stable")]
        half = len(order) // 2
        stack.extend([order[half:], order[:half]])
    return out


def partition_faces(mesh: MeshData, chunk_faces: int) -> list[np.ndarray]:
    """Face index sets, each unwrapped by one xatlas call: part labels first, big parts
    bisected, small parts batched together up to ``chunk_faces``."""
    centroids = mesh.vertices[mesh.faces].mean(axis=1)
    pieces: list[np.ndarray] = []
    for label in np.unique(mesh.face_labels):
        idx = np.flatnonzero(mesh.face_labels == label)
        pieces.extend(idx[sub] for sub in bisect(centroids[idx], chunk_faces))
    pieces.sort(key=len, reverse=True)
    groups: list[list[np.ndarray]] = []
    sizes: list[int] = []
    for piece in pieces:  # first fit, biggest first
        for g, size in enumerate(sizes):
            if size + len(piece) <= chunk_faces:
                groups[g].append(piece)
                sizes[g] += len(piece)
                break
        else:
            groups.append([piece])
            sizes.append(len(piece))
    return [np.sort(np.concatenate(g)) for g in groups]


MIN_PARTITION = 1000


def partition_size(n_faces: int, options: UnwrapSettings) -> int:
    """Most faces in one partition: ``n_faces * partition_texels / resolution**2`` (each
    partition fills about ``partition_texels`` of the atlas), between ``MIN_PARTITION`` and
    ``chunk_faces``; ``chunk_faces`` itself where ``partition_texels`` is 0.

    Why it depends on the atlas: xatlas's cost per face falls steeply with the partition
    size (the demo's 23k-face products: the uv stage took 6.6 CPU s per asset with
    partitions of ~5,700 faces, 3.6 s with ~1,400), but every partition border is a seam,
    and each seam costs a strip of padding (a fixed number of texels per unit of seam
    length). The share of the atlas those strips take grows as the atlas has fewer texels
    per face: at 2048 px over 23k faces (~180 texels per face) partitions of ~1,400 faces
    left utilisation, stretch and the baked-normal error no worse than before, while at
    1024 px (~45 texels per face) partitions of <= 2000 lowered a faceted scan's utilisation
    (0.586 -> 0.571) and raised its baked-normal error (1.31 -> 1.33 deg). A partition
    holding a fixed area of the atlas keeps that share fixed. BENCHMARKS.md has the figures.
    """
    if not options.partition_texels:
        return options.chunk_faces
    size = int(n_faces * options.partition_texels / options.resolution ** 2)
    return min(options.chunk_faces, max(MIN_PARTITION, size))


def unwrap_parallel(mesh: MeshData, options: UnwrapSettings) -> Unwrap:
    """Partitions unwrapped in the pool, then all their charts packed into one atlas."""
    groups = partition_faces(mesh, partition_size(mesh.n_faces, options))
    workers = options.workers or stage_cpus()
    max_area = options.max_chart_area * _surface_area(mesh)
    calls, used = [], []
    for g in groups:
        vids, local = np.unique(mesh.faces[g], return_inverse=True)
        normals = None if mesh.vertex_normals is None else mesh.vertex_normals[vids]
        calls.append((unwrap_chunk, mesh.vertices[vids], local.reshape(-1, 3), normals, max_area))
        used.append(vids)
    parts = _run(calls, min(workers, len(calls)), f"{len(calls)} partitions",
                 [len(g) for g in groups])
    vmapping, uvs, faces = [], [], np.empty((mesh.n_faces, 3), np.int64)
    offset, shift = 0, 0.0
    for g, vids, (vmap, fcs, uv) in zip(groups, used, parts):
        vmapping.append(vids[vmap])
        # side by side: xatlas finds a UV mesh's charts by shared texcoords, so partitions
        # laid over each other would merge into false charts
        uvs.append(uv + [shift - uv[:, 0].min(), -uv[:, 1].min()])
        shift += float(np.ptp(uv[:, 0])) * 1.01 + 1e-6
        faces[g] = fcs + offset
        offset += len(vmap)
    vmapping = np.concatenate(vmapping)
    packed = pack_charts(np.concatenate(uvs), faces, options)
    return Unwrap(vmapping[packed.vmapping], packed.faces, packed.uv, packed.charts,
                  packed.utilization, packed=True)


def unwrap_guarded(mesh: MeshData, options: UnwrapSettings) -> tuple[Unwrap, str]:
    """The unwrap the options ask for, xatlas always in a child process; returns the mode used."""
    mode = options.mode
    if mode == "auto":
        mode = "parallel" if mesh.n_faces > options.chunk_faces else "serial"
    if mode == "parallel":
        result = unwrap_parallel(mesh, options)
    else:
        result = _run([(unwrap, mesh, options)], 1, f"the whole mesh ({mesh.n_faces} faces)",
                      [mesh.n_faces])[0]
    return without_overlaps(result, options), mode


def apply_unwrap(mesh: MeshData, result: Unwrap) -> MeshData:
    """The mesh with vertices split at seams; every per-vertex attribute follows ``vmapping``."""
    if not np.array_equal(result.vmapping[result.faces], mesh.faces):
        raise ProcessingError(
            "xatlas changed the face order or connectivity of the mesh",
            "report this as a bug with the mesh artifact attached")
    pick = lambda a: None if a is None else np.asarray(a)[result.vmapping]
    return MeshData(mesh.vertices[result.vmapping], result.faces, mesh.face_labels, result.uv,
                    pick(mesh.vertex_colors), pick(mesh.vertex_normals))

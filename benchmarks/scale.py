"""Benchmark: catalog scale. What a cheap SKU costs, and what the executor adds on top.

    .venv/bin/python benchmarks/scale.py --quick   # 200 / 1,000 SKUs
    .venv/bin/python benchmarks/scale.py           # 1,000 / 10,000 SKUs (hours on 2 cores)
    ... --configs 1000x2,1000x1 --skip a,c         # only these SKUsxCPUs runs of (b)

The recipe (``--mesh``, ``--px``): synthetic SKUs whose meshes are UV capsules of 512
triangles (``capsule``, the default; each SKU its own size and oval) or 12-triangle boxes
(``box``), through the ``mesh`` backend, profile ``web``, with every map at ``--px`` (256 by
default: ``assetfactory run --texture-px 256``).

(a) Stage time of a cheap SKU through every stage in this process, warm, median of 8. "CPU s"
    is this process's CPU time for the SKU (the uv pool's and the validator's own processes
    are not in it).
(b) The real flow (``convert_catalog``: Prefect, sharding, planning, the Ray Data executor,
    catalog fragments) over a synthetic catalog, on a fresh local Ray limited to 1 or 2 CPUs,
    each configuration in a subprocess of its own, in a session that is reaped after it. Ray
    starts beside Prefect's temporary server, as ``assetfactory run`` starts it
    (``executor.early_ray``; its workers' warm-up then overlaps Prefect's start), and the
    flow's session (``executor.ray_session``) takes it over; with ``--ray-after-prefect`` it
    starts once Prefect is up (the order of the figures before). An untimed run of 16 SKUs comes first (``--no-warm-run``:
    not), so that no timed run is the one that reads the libraries from disk and creates
    Prefect's database. Reported: wall time of the
    flow call and the starts apart (Prefect's temporary server, started by a warm-up flow, and
    Ray), SKUs/s, orchestration overhead = 1 - summed stage time / (wall x CPUs) over the flow
    call and over the starts and the call together, the idle core-seconds (CPUs x wall - stage
    time) split into before the first stage, between the first stage and the last stage's end,
    and after it, from the run's own stage records; the driver's steps (planning, conversion,
    compaction, triage) with their start and end; the CPU seconds of each kind of process of
    the run (driver, Prefect's server, raylet, GCS, Ray's agents, Ray Data's actors, the
    workers, the glTF-Validator); the driver's peak RSS through the conversion and through the
    whole run; the object store's peak (shared-memory pages of the raylet, sampled every
    0.5 s). The chart shows memory, throughput, and the cores busy inside stage bodies over
    each run (0.25 s bins).
(c) Dispatch: a recipe of nine stages that do nothing (``trivial_stages.noop``) through the
    executor (planning + conversion + catalog records), 2 CPUs: stage executions per second.

Prints the tables and writes benchmarks/out/<name>.png and benchmarks/out/<name>.json. The
machine's load average is printed beside each run: on a shared machine, read the figures
with it.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
#: the texture size of the cheap recipe (``assetfactory run --texture-px PX``: the profile's
#: texture size, from which the recipe derives the uv, bake, texture and export sizes); set by
#: ``--px`` (passed to each configuration's process through SCALE_PX)
PX = int(os.environ.get("SCALE_PX", "256"))
#: the synthetic SKUs' meshes: ``capsule`` (a small but non-trivial mesh: a UV capsule of
#: 448 triangles, curved, each SKU its own size) or ``box`` (12 triangles); ``--mesh``
MESH = os.environ.get("SCALE_MESH", "capsule")
OVERRIDES = {"profile": {"texture_px": PX}}
#: start Ray only once Prefect's temporary server is up (``--ray-after-prefect``; the figures
#: before Ray started beside Prefect, as ``assetfactory run`` starts it); SCALE_RAY_AFTER
RAY_AFTER_PREFECT = os.environ.get("SCALE_RAY_AFTER", "") == "1"


def load() -> str:
    return "load {:.1f}/{:.1f}/{:.1f}".format(*os.getloadavg())


# ---------------------------------------------------------------------------- catalogs


def make_mesh(i: int, kind: str = MESH):
    """SKU ``i``'s mesh: its own size (and so its own bytes and identity)."""
    import trimesh

    w, h, d = 0.05 + (i % 97) * 0.003, 0.05 + (i % 89) * 0.004, 0.05 + (i % 83) * 0.002
    if kind == "box":
        return trimesh.creation.box(extents=(w, h, d))
    if kind == "capsule":
        m = trimesh.creation.capsule(height=h, radius=min(w, d) / 2, count=[16, 16])
        m.apply_scale([1.0, 1.0 + (i % 7) * 0.05, 1.0])  # a little oval, not a solid of turn
        return m
    raise ValueError(f"unknown mesh kind {kind!r}: box or capsule")


def make_catalog(root: Path, n: int, kind: str = MESH) -> Path:
    """``n`` SKUs of ``kind`` meshes, each its own GLB (distinct bytes) and size; cached
    under ``root``."""
    catalog = root / "catalog.csv"
    if catalog.exists():
        return catalog
    (root / "meshes").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        w, h, d = 0.05 + (i % 97) * 0.003, 0.05 + (i % 89) * 0.004, 0.05 + (i % 83) * 0.002
        path = root / "meshes" / f"box{i:06d}.glb"
        make_mesh(i, kind).export(path)
        rows.append({"sku": f"box-{i:06d}", "title": f"box {i}", "mesh_uri": f"meshes/{path.name}",
                     "width_mm": round(w * 1000, 3), "height_mm": round(h * 1000, 3),
                     "depth_mm": round(d * 1000, 3)})
    tmp = root / "catalog.csv.tmp"
    with open(tmp, "w", newline="") as fh:
        w_ = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w_.writeheader()
        w_.writerows(rows)
    tmp.rename(catalog)
    return catalog


# ---------------------------------------------------------------------------- (a)


def trivial_sku(boxes: int = 8) -> dict:
    from assetfactory.core.types import AssetState, SkuSpec
    from assetfactory.flows.recipe import build_recipe
    from assetfactory.flows.runner import run_asset

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        catalog = make_catalog(Path(tmp) / "cat", boxes + 1)
        root = str(catalog.parent)
        for label, ov in ((f"run --texture-px {PX}", OVERRIDES),):
            recipe = build_recipe("web", "mesh", ov)
            per_stage: dict[str, list[float]] = {}
            sums, cpus = [], []
            for i in range(boxes + 1):  # the first warms the process (imports, JIT, EGL)
                spec = SkuSpec(sku=f"b{i}", mesh_uri=f"meshes/box{i:06d}.glb",
                               catalog_root=root)
                c0 = time.process_time()
                st = run_asset(AssetState(sku=spec.sku, spec=spec, store_uri=f"{tmp}/out",
                                          run_id="bench", attempt_id=f"{label}{i}",
                                          asset_id=f"{label}{i}", profile="web",
                                          backend="mesh"), recipe)
                cpu = time.process_time() - c0
                assert st.ok, st.failure
                if i == 0:
                    continue
                cpus.append(cpu)
                sums.append(sum(r.duration_s for r in st.records))
                for r in st.records:
                    per_stage.setdefault(r.stage, []).append(r.duration_s)
            out[label] = {"sum_s": statistics.median(sums), "cpu_s": statistics.median(cpus),
                          "stages": {k: statistics.median(v) for k, v in per_stage.items()},
                          "load": load()}
    return out


# ---------------------------------------------------------------------------- (b), (c)


class Sampler:
    """Driver RSS and raylet shared memory (the object store's pages), every 0.5 s."""

    def __init__(self) -> None:
        import psutil

        self.me = psutil.Process()
        self.series: list[tuple[float, float, float]] = []
        self.cpu: dict[int, float] = {}
        self.kind: dict[int, str] = {}
        self.peak_shm = 0.0
        self._stop = threading.Event()
        self._raylet = None
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _find_raylet(self):
        for p in self.me.children(recursive=True):
            with contextlib.suppress(Exception):  # a child that just ended
                if p.name() == "raylet":
                    return p
        return None

    def _shm_mb(self) -> float:
        if self._raylet is None:
            self._raylet = self._find_raylet()
        if self._raylet is None:
            return 0.0
        try:
            with open(f"/proc/{self._raylet.pid}/status") as fh:
                for line in fh:
                    if line.startswith("RssShmem:"):
                        return int(line.split()[1]) / 1024.0
        except OSError:
            self._raylet = None
        return 0.0

    @staticmethod
    def _kind(p) -> str:
        """What a process of the run is, for the CPU-by-process table."""
        name, cmd = p.name(), " ".join(p.cmdline()[:4])
        if name in ("raylet", "gcs_server"):
            return name
        if "prefect" in cmd or "uvicorn" in cmd:
            return "prefect server"
        if name.startswith("ray::_") or "Actor" in name:
            return "ray data actors (stats, autoscaling)"
        if name.startswith("ray::") or "default_worker.py" in cmd:
            return "ray workers"
        if name == "node" or "node" in cmd.split(" ")[0]:
            return "node (glTF validator)"
        if "multiprocessing" in cmd or "forkserver" in cmd:
            return "worker pools (uv)"
        for part, what in (("dashboard/agent.py", "ray dashboard agent (metrics)"),
                           ("runtime_env/agent", "ray runtime-env agent"),
                           ("log_monitor", "ray log monitor")):
            if part in cmd:
                return what
        if "ray" in cmd:
            return "ray other"
        return f"other ({name})"

    def _cpu(self) -> None:
        for p in self.me.children(recursive=True):
            with contextlib.suppress(Exception):  # a process that just ended
                t = p.cpu_times()
                self.cpu[p.pid] = t.user + t.system
                self.kind[p.pid] = self._kind(p)  # a worker is "ray::IDLE" until it has a task

    def cpu_by_kind(self, before: dict[int, float]) -> dict[str, float]:
        """CPU seconds per kind of process since ``before`` (a copy of ``cpu``)."""
        out: dict[str, float] = {}
        for pid, t in self.cpu.items():
            k = self.kind.get(pid, "other")
            out[k] = out.get(k, 0.0) + t - before.get(pid, 0.0)
        return out

    def descendants_cpu_s(self) -> float:
        """CPU seconds of every process started under this one (Ray's head and workers, their
        process pools and validators, Prefect's server), as last seen."""
        return float(sum(self.cpu.values()))

    def _run(self) -> None:
        t0 = time.time()
        tick = 0
        while not self._stop.wait(0.5):
            shm = self._shm_mb()
            tick += 1
            if tick % 10 == 0:  # every 5 s: walking /proc for the run's processes costs CPU
                self._cpu()
            self.peak_shm = max(self.peak_shm, shm)
            self.series.append((time.time() - t0, self.me.memory_info().rss / 2**20, shm))

    def stop(self) -> None:
        self._stop.set()
        self._t.join()
        self._cpu()


def _warm_prefect() -> None:
    from prefect import flow

    @flow(name="warm-up")
    def warm() -> int:
        return 1

    warm()


#: the driver's steps inside the flow whose start and end each run records (``stamp``)
STEPS = ("prepare_run", "find_converted", "plan", "convert", "compact_run", "judge_run",
         "run_summary")


def stamp(module, names: tuple[str, ...], marks: list) -> None:
    """Wrap ``module``'s functions ``names`` so that each call appends (name, start, end) in
    epoch seconds to ``marks``: when the driver planned, converted, compacted, judged."""
    for name in names:
        fn = getattr(module, name)

        def timed(*a, _fn=fn, _name=name, **kw):
            t = time.time()
            try:
                return _fn(*a, **kw)
            finally:
                marks.append((_name, t, time.time()))

        setattr(module, name, timed)


def timeline(out: str, run_id: str, t0: float, t1: float, cpus: int,
             step: float = 0.25) -> dict:
    """Busy cores over the run from its own catalog records (every stage execution's start
    and duration), and where the idle core-seconds of ``cpus x (t1 - t0)`` lie: before the
    first stage started, between it and the last stage's end, after that."""
    import numpy as np

    from assetfactory.catalog.views import connect

    con = connect(out)
    try:
        rows = con.execute("SELECT epoch_ms(started_at) / 1000.0, duration_s FROM stages "
                           "WHERE run_id = ?", [run_id]).fetchall()
    finally:
        con.close()
    start = np.array([r[0] for r in rows]) - t0
    end = start + np.array([r[1] for r in rows])
    bins = np.arange(0.0, t1 - t0 + step, step)
    busy = np.zeros(len(bins))
    for a, b in zip(start, end):  # each execution's overlap with every bin it touches
        i, j = int(a // step), int(b // step)
        for k in range(max(i, 0), min(j, len(bins) - 1) + 1):
            lo, hi = bins[k], bins[k] + step
            busy[k] += max(0.0, min(b, hi) - max(a, lo)) / step
    first, last = float(start.min()), float(end.max())
    total = float((end - start).sum())
    return {"bins_s": step, "busy": [round(float(v), 3) for v in busy],
            "first_stage_s": first, "last_stage_end_s": last,
            "idle_before_core_s": cpus * first,
            "idle_during_core_s": cpus * (last - first) - total,
            "idle_after_core_s": cpus * (t1 - t0 - last),
            "stage_executions": len(rows)}


def run_flow(n: int, cpus: int, workdir: Path) -> dict:
    """One configuration of (b), in this (fresh) process."""
    from assetfactory.flows import convert as conv
    from assetfactory.flows.executor import early_ray, ray_session

    catalog = make_catalog(workdir / f"catalog-{MESH}-{n}", n)
    out = tempfile.mkdtemp(prefix=f"scale-{n}-{cpus}-", dir=workdir)
    early = contextlib.nullcontext()
    if not RAY_AFTER_PREFECT:
        # as ``assetfactory run`` starts them: Ray (and its warm-up) beside Prefect's server
        early = early_ray(num_cpus=cpus)
    early.__enter__()
    t_prefect = time.perf_counter()
    _warm_prefect()  # Prefect's temporary server starts once per process: timed apart
    t_prefect = time.perf_counter() - t_prefect
    sampler = Sampler()
    sampler._cpu()
    # the starts so far: Prefect's server (and Ray's processes where it started beside it)
    before_cpu = sampler.descendants_cpu_s()
    before_by_pid = dict(sampler.cpu)
    t_ray = time.perf_counter()
    # as the flow starts it (``convert --num-cpus``); with Ray started beside Prefect, this
    # takes that instance over once its start has returned (its warm-up may still run on)
    session = ray_session(num_cpus=cpus)
    session.__enter__()
    t_ray = time.perf_counter() - t_ray
    marks: dict[str, float] = {}
    stage_s = [0.0]
    stage_cpu = [0.0]
    stage_runs = [0]
    done = [0]

    def on_plan(todo: int, skipped: int) -> None:
        marks["plan"] = time.perf_counter()

    def on_done(s: dict) -> None:
        stage_s[0] += s.get("stage_s", 0.0)
        stage_cpu[0] += s.get("stage_cpu_s", 0.0)
        stage_runs[0] += s.get("stages", 0)
        done[0] += 1
        marks["last"] = time.perf_counter()
        # the driver's peak through the conversion (the run's triage and compaction after it
        # read the catalog through DuckDB, within its memory limit)
        marks["rss_convert"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    conv.PLAN_HOOK, conv.PROGRESS_HOOK = on_plan, on_done
    steps: list[tuple[str, float, float]] = []
    stamp(conv, STEPS, steps)
    load_before = load()
    own0 = os.times()
    epoch0 = time.time()
    t0 = time.perf_counter()
    stop = threading.Event()

    def snapshots() -> None:
        """What the run has done so far, every 15 s (a run stopped before the end still says
        how far it got, how fast, and the driver's and the store's peaks until then)."""
        while not stop.wait(15):
            progress.write_text(json.dumps({
                "n": n, "cpus": cpus, "done": done[0], "elapsed_s": time.perf_counter() - t0,
                "stage_s": stage_s[0], "stage_runs": stage_runs[0],
                "driver_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "object_store_peak_mb": sampler.peak_shm, "load": load(),
                "load_before": load_before}))

    progress = workdir / f"progress-{n}-{cpus}.json"
    threading.Thread(target=snapshots, daemon=True).start()
    summary = conv.convert_catalog(catalog=str(catalog), out=out, profile="web", backend="mesh",
                                   overrides=OVERRIDES, shard_size=1000,
                                   execution=json.loads(os.environ.get("SCALE_EXECUTION", "{}")))
    wall = time.perf_counter() - t0
    # the run's stage records and steps are in epoch seconds, its wall on the monotonic clock:
    # where the two disagree (the system clock stepped or slewed), the split is not to be read
    clock_skew = (time.time() - epoch0) - wall
    # the driver's peak through the flow call (the timeline below reads the run's stage rows)
    peak_flow = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    stop.set()
    own1 = os.times()
    sampler.stop()
    session.__exit__(None, None, None)
    early.__exit__(None, None, None)
    tl = timeline(out, summary["run_id"], epoch0, epoch0 + wall, cpus)
    tl["steps"] = [(name, a - epoch0, b - epoch0) for name, a, b in steps]
    conv_wall = marks["last"] - marks["plan"]
    driver_cpu = own1.user + own1.system - own0.user - own0.system
    total_cpu = driver_cpu + sampler.descendants_cpu_s() - before_cpu
    by_kind = {"driver": driver_cpu, **sampler.cpu_by_kind(before_by_pid)}
    return {"n": n, "cpus": cpus, "prefect_start_s": t_prefect, "ray_start_s": t_ray,
            "wall_s": wall, "convert_s": conv_wall,
            "plan_s": marks["plan"] - t0, "skus_per_s": n / wall, "stage_s": stage_s[0],
            "stage_runs": stage_runs[0], "done": done[0], "counts": summary.get("counts"),
            "stage_cpu_s": stage_cpu[0], "total_cpu_s": total_cpu, "cpu_by_process": by_kind,
            "cpu_outside_stages": 1 - stage_cpu[0] / total_cpu if total_cpu else None,
            "overhead": 1 - stage_s[0] / (wall * cpus),
            "overhead_with_starts": 1 - stage_s[0] / ((wall + t_prefect + t_ray) * cpus),
            "overhead_convert": 1 - stage_s[0] / (conv_wall * cpus),
            "driver_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "driver_peak_convert_mb": marks.get("rss_convert"),
            "driver_peak_flow_mb": peak_flow,
            "object_store_peak_mb": sampler.peak_shm, "series": sampler.series,
            "timeline": tl, "load_before": load_before, "load_after": load(),
            "clock_skew_s": clock_skew}


def run_dispatch(n: int, cpus: int, workdir: Path) -> dict:
    import ray
    import trivial_stages

    from assetfactory.core.types import SkuSpec
    from assetfactory.flows.executor import run_catalog
    from assetfactory.flows.recipe import Recipe, StageCall

    recipe = Recipe("bench", "none", tuple(
        StageCall(f"noop{k}", "trivial_stages:noop", trivial_stages.NoOptions(k))
        for k in range(9)))
    specs = [SkuSpec(sku=f"t{i:06d}") for i in range(n)]
    out = tempfile.mkdtemp(prefix="dispatch-", dir=workdir)
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([str(HERE)] + sys.path)}})
    load_before = load()
    t0 = time.perf_counter()
    outcome = run_catalog(specs, recipe, out=out, force=True)
    wall = time.perf_counter() - t0
    ray.shutdown()
    runs = sum(s["stages"] for s in outcome.summaries)
    return {"n": n, "cpus": cpus, "wall_s": wall, "stage_runs": runs,
            "stage_runs_per_s": runs / wall, "counts": outcome.counts,
            "load_before": load_before, "load_after": load()}


def child(kind: str, n: int, cpus: int, workdir: Path, pin: bool = False) -> dict:
    """Run one configuration in a fresh interpreter (a fresh driver: honest peak memory).
    ``pin``: the whole run (driver, Prefect's server, Ray's processes and workers, every child
    of theirs) on the first ``cpus`` cores of this machine (``sched_setaffinity``), so that
    the run's own control plane shares those cores with the stages."""
    result = workdir / f"{kind}-{n}-{cpus}{'-pinned' if pin else ''}.json"
    env = {**os.environ, "PREFECT_LOGGING_LEVEL": "WARNING",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300",
           "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    env.setdefault("PREFECT_HOME", str(workdir / "prefect-home"))
    cores = sorted(os.sched_getaffinity(0))[:cpus]
    proc = subprocess.Popen([sys.executable, __file__, "_child", kind, str(n), str(cpus),
                             str(workdir), str(result)], env=env, start_new_session=True)
    if pin:  # before the child starts Ray: every process it starts inherits the cores
        os.sched_setaffinity(proc.pid, cores)
    try:
        rc = proc.wait()
    finally:  # however it ended (or this script was interrupted): nothing of it runs on
        end_session(proc)
    if rc:
        raise subprocess.CalledProcessError(rc, proc.args)
    return json.loads(result.read_text())


def end_session(proc: subprocess.Popen, timeout: float = 60.0) -> None:
    """Stop every process of ``proc``'s session: the driver, the Ray it started (whose workers
    take process groups of their own but stay in the session) and Prefect's server. Never by
    name: other Ray clusters on the machine are not ours."""
    import psutil

    sid = proc.pid
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(sid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=20)
    deadline = time.time() + timeout
    while True:
        left = []
        for p in psutil.process_iter():
            with contextlib.suppress(OSError, psutil.Error):
                if os.getsid(p.pid) == sid and p.status() != psutil.STATUS_ZOMBIE:
                    left.append(p)
        if not left or time.time() > deadline:
            break
        for p in left:
            with contextlib.suppress(psutil.Error):
                p.kill()
        time.sleep(0.2)
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    if left:
        print(f"warning: {len(left)} processes of the run outlived it: "
              f"{[p.pid for p in left]}", file=sys.stderr)


# ---------------------------------------------------------------------------- report


def chart(results: list[dict], dispatch: dict | None, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(18, 4.5))
    for r in results:
        t = [s[0] for s in r["series"]]
        ax1.plot(t, [s[1] for s in r["series"]], label=f"driver RSS, {r['n']} SKUs, "
                 f"{r['cpus']} CPU")
        ax1.plot(t, [s[2] for s in r["series"]], ls="--",
                 label=f"object store, {r['n']} SKUs, {r['cpus']} CPU")
    ax1.set_xlabel("s")
    ax1.set_ylabel("MiB")
    ax1.set_title("memory over the run")
    ax1.legend(fontsize=7)
    labels = [f"{r['n']} SKUs\n{r['cpus']} CPU" for r in results]
    ax2.bar(labels, [r["skus_per_s"] for r in results], color="tab:blue")
    ax2.set_ylabel("SKUs / s")
    title = "throughput (cheap recipe)"
    if dispatch:
        title += f"; dispatch {dispatch['stage_runs_per_s']:.0f} stage runs/s"
    ax2.set_title(title)
    for i, r in enumerate(results):
        ax2.text(i, r["skus_per_s"], f"overhead {100 * r['overhead']:.1f}%", ha="center",
                 va="bottom", fontsize=8)
    for r in results:
        tl = r.get("timeline")
        if not tl:
            continue
        t = [k * tl["bins_s"] for k in range(len(tl["busy"]))]
        line, = ax3.plot(t, tl["busy"], lw=0.8, label=f"{r['n']} SKUs, {r['cpus']} CPU")
        ax3.axhline(r["cpus"], color=line.get_color(), ls=":", lw=0.8)
        for x in (tl["first_stage_s"], tl["last_stage_end_s"]):
            ax3.axvline(x, color=line.get_color(), ls="--", lw=0.6)
    ax3.set_xlabel("s since the flow call")
    ax3.set_ylabel("cores inside stage bodies")
    ax3.set_title("busy cores (from the run's stage records); dashed: first stage, last end")
    ax3.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    global PX, MESH, OVERRIDES
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="200 / 1,000 SKUs instead of 1,000 / "
                    "10,000")
    ap.add_argument("--sizes", default="", help="SMALL,LARGE catalog sizes (overrides --quick)")
    ap.add_argument("--dispatch-skus", type=int, default=0, help="SKUs for (c)")
    ap.add_argument("--skip", default="", help="comma list of parts to skip: a,b,c")
    ap.add_argument("--workdir", default="", help="keep catalogs and outputs here")
    ap.add_argument("--execution", default="", help="(b) executor options as JSON, e.g. "
                    "'{\"fuse_cpu_stages\": true}'")
    ap.add_argument("--px", type=int, default=PX, help="texture size of the cheap recipe "
                    "(default 256)")
    ap.add_argument("--mesh", default=MESH, choices=("capsule", "box"), help="the synthetic "
                    "SKUs' meshes (default capsule: 512 triangles; box: 12)")
    ap.add_argument("--ray-after-prefect", action="store_true", help="(b) start Ray once "
                    "Prefect's temporary server is up (the order before), not beside it as "
                    "`assetfactory run` does")
    ap.add_argument("--no-warm-run", action="store_true", help="(b) leave out the untimed "
                    "run of a few SKUs before the timed ones")
    ap.add_argument("--name", default="scale", help="output file names under benchmarks/out")
    ap.add_argument("--configs", default="", help="(b) only these SKUSxCPUS runs, e.g. "
                    "1000x2,1000x1 (default: SMALLx1,SMALLx2,LARGEx2); a trailing p "
                    "(1000x1p) also pins the whole run to that many cores of this machine "
                    "(driver, Prefect, Ray and its workers), the second measure of scaling")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    small, large = (200, 1000) if args.quick else (1000, 10_000)
    if args.sizes:
        small, large = (int(x) for x in args.sizes.split(","))
    skip = set(filter(None, args.skip.split(",")))
    if args.execution:
        os.environ["SCALE_EXECUTION"] = args.execution  # read by each (b) child
    PX, MESH = args.px, args.mesh
    OVERRIDES = {"profile": {"texture_px": PX}}
    os.environ["SCALE_PX"], os.environ["SCALE_MESH"] = str(PX), MESH  # and these
    if args.ray_after_prefect:
        os.environ["SCALE_RAY_AFTER"] = "1"
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="scale-"))
    workdir.mkdir(parents=True, exist_ok=True)
    report: dict = {"load_start": load(), "cpu_count": os.cpu_count(), "px": PX, "mesh": MESH}
    print(f"machine: {os.cpu_count()} cores, {load()}; workdir {workdir}; recipe: {MESH} "
          f"meshes, mesh backend, profile web, --texture-px {PX}")

    if "a" not in skip:
        triv = trivial_sku()
        report["trivial"] = triv
        print(f"\n(a) stage time of a cheap SKU ({MESH}, mesh backend, web, {PX} px, warm, "
              "median of 8)")
        names = list(next(iter(triv.values()))["stages"])
        print(f"{'recipe':24s} {'sum s':>7s} {'CPU s':>6s} "
              + " ".join(f"{n[:8]:>8s}" for n in names) + "  load")
        for label, r in triv.items():
            print(f"{label:24s} {r['sum_s']:7.3f} {r['cpu_s']:6.3f} "
                  + " ".join(f"{r['stages'][n]:8.3f}" for n in names) + f"  {r['load']}")

    results = []
    if "b" not in skip:
        configs = [(small, 1), (small, 2), (large, 2)]
        if args.configs:
            configs = [(int(c.split("x")[0]), int(c.split("x")[1].rstrip("p")),
                        c.endswith("p")) for c in args.configs.split(",")]
        configs = [c if len(c) == 3 else (*c, False) for c in configs]
        if not args.no_warm_run:
            # the first run after a while reads every module and library from disk and
            # creates Prefect's database (a fresh PREFECT_HOME): an untimed run of a few SKUs
            # first, so that every timed configuration starts from the same caches
            print(f"\n(b) an untimed warm-up run: 16 SKUs on 2 CPUs ({load()}) ...", flush=True)
            child("flow", 16, 2, workdir)
        for n, cpus, pin in configs:
            where = f", the whole run pinned to {cpus} core(s)" if pin else ""
            print(f"\n(b) running {n} SKUs on {cpus} CPU{where} ({load()}) ...", flush=True)
            results.append({**child("flow", n, cpus, workdir, pin), "pinned": pin})
        report["flow"] = [{k: v for k, v in r.items() if k != "series"} for r in results]
        for r, rep in zip(results, report["flow"]):
            rep["timeline"] = {k: v for k, v in r["timeline"].items() if k != "busy"}
        print(f"\n(b) the real flow, cheap recipe ({MESH} meshes, mesh backend, maps at "
              f"{PX} px)")
        print(f"{'SKUs':>6s} {'CPUs':>4s} {'start s':>7s} {'wall s':>8s} {'SKU/s':>6s} "
              f"{'overhead':>8s} {'+starts':>8s} {'conv.ovh':>8s} {'stage s':>8s} "
              f"{'driver MB':>9s} "
              f"{'(convert)':>9s} "
              f"{'store MB':>8s} {'CPU out':>7s}  load")
        for r in results:
            print(f"{r['n']:6d} {r['cpus']:3d}{'p' if r.get('pinned') else ' '} "
                  f"{r['prefect_start_s'] + r['ray_start_s']:7.1f} "
                  f"{r['wall_s']:8.1f} {r['skus_per_s']:6.2f} "
                  f"{100 * r['overhead']:7.1f}% {100 * r['overhead_with_starts']:7.1f}% "
                  f"{100 * r['overhead_convert']:7.1f}% "
                  f"{r['stage_s']:8.1f} {r['driver_peak_mb']:9.0f} "
                  f"{r.get('driver_peak_convert_mb') or 0:9.0f} "
                  f"{r['object_store_peak_mb']:8.0f} {100 * (r['cpu_outside_stages'] or 0):6.1f}%"
                  f"  {r['load_before']} -> {r['load_after']}")
        print("\nwhere the idle core-seconds are (cpus x wall - stage s), from the run's stage "
              "records; the driver's steps (s since the flow call)")
        for r in results:
            tl = r["timeline"]
            idle = r["cpus"] * r["wall_s"] - r["stage_s"]
            print(f"{r['n']:6d} x {r['cpus']} CPU{' (pinned)' if r.get('pinned') else ''}: "
                  f"idle {idle:7.1f} core-s = before the first "
                  f"stage {tl['idle_before_core_s']:6.1f} (first at {tl['first_stage_s']:.1f} "
                  f"s) + during {tl['idle_during_core_s']:6.1f} + after the last "
                  f"{tl['idle_after_core_s']:6.1f} (last end {tl['last_stage_end_s']:.1f} s "
                  f"of {r['wall_s']:.1f})")
            print("    " + "; ".join(f"{name} {a:.1f}-{b:.1f}" for name, a, b in tl["steps"]))
            if abs(r.get("clock_skew_s") or 0.0) > 0.005 * r["wall_s"]:
                print(f"    warning: the system clock moved {r['clock_skew_s']:+.1f} s against "
                      "the monotonic one over the flow call: the split above and the stage "
                      "records' times are not to be trusted for this run")
            print(f"    driver peak MB: conversion {r.get('driver_peak_convert_mb') or 0:.0f}, "
                  f"flow call {r.get('driver_peak_flow_mb') or 0:.0f}, run with the "
                  f"benchmark's own timeline query {r['driver_peak_mb']:.0f}")
            print("    CPU s by process: " + ", ".join(
                f"{k} {v:.1f}" for k, v in sorted(r["cpu_by_process"].items(),
                                                   key=lambda kv: -kv[1])))
        def pick(n: int, cpus: int, pinned: bool = False) -> dict | None:
            return next((r for r in results if r["n"] == n and r["cpus"] == cpus
                         and bool(r.get("pinned")) == pinned), None)

        one, two = pick(small, 1), pick(small, 2)
        big = next((r for r in results if r["n"] == large and not r.get("pinned")), None)
        if one and two:
            report["speedup_2_vs_1"] = one["wall_s"] / two["wall_s"]
            print(f"2 CPUs vs 1 (Ray limited to N CPUs): {report['speedup_2_vs_1']:.2f}x faster "
                  "(target >= 1.8)")
        one_p, two_p = pick(small, 1, True), pick(small, 2, True) or (
            two if two and len(os.sched_getaffinity(0)) == 2 else None)
        if one_p and two_p:
            report["speedup_2_vs_1_pinned"] = one_p["wall_s"] / two_p["wall_s"]
            print(f"2 cores vs 1 (the whole run pinned to N cores; 2 cores = the unpinned run "
                  f"on this 2-core machine unless run pinned): "
                  f"{report['speedup_2_vs_1_pinned']:.2f}x faster")
        if big and two:
            report["driver_mem_ratio"] = big["driver_peak_mb"] / two["driver_peak_mb"]
            print(f"driver peak at {large} vs {small} SKUs: {report['driver_mem_ratio']:.2f}x "
                  "(target <= 1.5)")

    dispatch = None
    if "c" not in skip:
        n = args.dispatch_skus or (2000 if args.quick else 10_000)
        dispatch = child("dispatch", n, 2, workdir)
        report["dispatch"] = dispatch
        print(f"\n(c) dispatch: {n} SKUs x 9 trivial stages on 2 CPUs: "
              f"{dispatch['wall_s']:.1f} s, {dispatch['stage_runs_per_s']:.0f} stage runs/s "
              f"(target >= 200); {dispatch['load_before']} -> {dispatch['load_after']}")

    (OUT / f"{args.name}.json").write_text(json.dumps(report, indent=1, default=str))
    if results:
        chart(results, dispatch, OUT / f"{args.name}.png")
        print(f"\nwrote {OUT / (args.name + '.png')} and {OUT / (args.name + '.json')}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        kind, n, cpus, workdir, result = sys.argv[2:7]
        fn = run_flow if kind == "flow" else run_dispatch
        Path(result).write_text(json.dumps(fn(int(n), int(cpus), Path(workdir)), default=str))
    else:
        # a stopped benchmark (SIGTERM) still ends its running configuration's whole session
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        main()

"""Faults against the real components: a Ray worker SIGKILLed mid-stage, the S3 server
(SeaweedFS) stopped mid-run and restarted, the driver (the CLI) SIGKILLed and run again, and
stages that hang. After each, every SKU has exactly one successful attempt or a failure row with
the reason, each SKU's output is its own, and no partial file is visible."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import trimesh

sys.path.insert(0, str(Path(__file__).parent))
import toy_stages

from assetfactory.catalog.views import query
from assetfactory.core.hashing import sha256_bytes
from assetfactory.core.storage import open_storage, read_ref
from assetfactory.core.types import AssetState, SkuSpec
from assetfactory.flows.executor import ExecutorOptions, Job, convert, run_catalog
from assetfactory.flows.recipe import Recipe, StageCall, build_recipe
from tests.tools import Weed, end_session

pytestmark = pytest.mark.slow

PX = {"texture": {"size": 64}, "export": {"texture_size": 64, "poster_size": 64},
      "bake": {"size": 64}, "uv": {"resolution": 64}}


def boxes(root: Path, skus: list[str]) -> list[SkuSpec]:
    """One box per SKU, each of its own size (so a GLB shows whose it is), and a catalog."""
    root.mkdir(parents=True, exist_ok=True)
    specs, rows = [], []
    for i, sku in enumerate(skus):
        size = (0.1 + 0.02 * i, 0.2 + 0.01 * i, 0.1)
        trimesh.creation.box(extents=size).export(root / f"{sku}.glb")
        dims = {"width_mm": size[0] * 1000, "height_mm": size[1] * 1000,
                "depth_mm": size[2] * 1000}
        specs.append(SkuSpec(sku=sku, mesh_uri=f"{sku}.glb", catalog_root=str(root), **dims))
        rows.append({"sku": sku, "mesh_uri": f"{sku}.glb", **dims})
    with open(root / "catalog.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return specs


def with_nap(recipe: Recipe, nap: toy_stages.NapOptions, after: str = "generate") -> Recipe:
    """The real recipe with the test's ``nap`` stage after ``after`` (where faults strike)."""
    calls = []
    for c in recipe.calls:
        calls.append(c)
        if c.name == after:
            calls.append(StageCall("nap", "toy_stages:nap", nap))
    return Recipe(recipe.profile, recipe.backend, tuple(calls))


def rows(out, sql):
    cols, got = query(str(out), sql)
    return [dict(zip(cols, r)) for r in got]


def check_outcome(out: str, specs: list[SkuSpec], ok: set[str]) -> None:
    """Exactly one successful attempt per SKU in ``ok``; every SKU has a row; each GLB is
    whole, matches its recorded hash and is its own SKU's box; no partial file listed."""
    attempts = rows(out, "SELECT sku, status, error, glb_uri, glb_sha256, attempt_id "
                         "FROM attempts")
    by_sku: dict[str, list[dict]] = {}
    for a in attempts:
        by_sku.setdefault(a["sku"], []).append(a)
    assert set(by_sku) == {s.sku for s in specs}
    for spec in specs:
        good = [a for a in by_sku[spec.sku] if a["status"] == "ok"]
        if spec.sku in ok:
            assert len(good) == 1, (spec.sku, by_sku[spec.sku])
            data = read_ref(good[0]["glb_uri"])
            assert sha256_bytes(data) == good[0]["glb_sha256"]
            mesh = trimesh.load(trimesh.util.wrap_as_stream(data), file_type="glb",
                                force="mesh")
            want = np.array([spec.width_mm, spec.height_mm, spec.depth_mm]) / 1000
            assert np.allclose(mesh.extents, want, rtol=0.02), (spec.sku, mesh.extents, want)
        else:
            assert not good and all(a["error"] for a in by_sku[spec.sku])
    assert len({a["attempt_id"] for a in attempts}) == len(attempts)
    store = open_storage(out)
    assert not [k for k in store.list("") if "/.tmp-" in k or k.startswith(".tmp-")]


# ---------------------------------------------------------------------------- one Ray for all


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """SeaweedFS, then a local Ray (2 CPUs) whose workers can reach it and the toy stages."""
    ray = pytest.importorskip("ray")
    weed = Weed(tmp_path_factory.mktemp("weed"))
    weed.start()
    env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
           "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": weed.endpoint}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    open_storage.cache_clear()
    try:
        weed.wait_ready()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {**env, "PYTHONPATH": os.pathsep.join(
                     [str(Path(__file__).parent)] + sys.path)}})
        yield weed
    finally:
        ray.shutdown()
        weed.stop()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        open_storage.cache_clear()


class _Watcher(threading.Thread):
    """Calls ``action(pid)`` once, as soon as a stage writes its worker's PID file; watches
    until ``stop()`` (the run is over), however busy the machine."""

    def __init__(self, pid_dir: Path, action) -> None:
        super().__init__(daemon=True)
        self.pid_dir, self.action, self.done = pid_dir, action, threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            found = sorted(self.pid_dir.glob("*.pid"))
            if found:
                self.action(int(found[0].read_text()))
                return
            time.sleep(0.05)

    def stop(self, timeout: float) -> None:
        self.done.set()
        self.join(timeout)


def _when_pid_file(pid_dir: Path, action) -> _Watcher:
    """Call ``action(pid)`` once, as soon as a stage writes its worker's PID file."""
    watcher = _Watcher(pid_dir, action)
    watcher.start()
    return watcher


def test_a_worker_killed_mid_stage(tmp_path, cluster):
    specs = boxes(tmp_path / "cat", ["slow-a", "fine-b", "fine-c"])
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    recipe = with_nap(build_recipe("web", "mesh", PX),
                      toy_stages.NapOptions(seconds=4.0, pid_dir=str(pid_dir)))
    killed = []
    watcher = _when_pid_file(pid_dir, lambda pid: (killed.append(pid),
                                                   os.kill(pid, signal.SIGKILL)))
    out = str(tmp_path / "out")
    # the three SKUs in one task, recorded together once the task's work is done
    outcome = run_catalog(specs, recipe, out=out, options=ExecutorOptions(skus_per_task=3))
    watcher.stop(timeout=5)
    assert killed, "the nap stage never started"
    assert outcome.counts == {"ok": 3}, outcome.summaries
    # the killed task ran again (a second PID file) and each SKU was recorded once, in one
    # block record: the killed try had written none
    assert len(list(pid_dir.glob("slow-a.*.pid"))) == 2
    check_outcome(out, specs, {"slow-a", "fine-b", "fine-c"})
    assert rows(out, "SELECT count(*) AS n FROM stages WHERE stage = 'nap'")[0]["n"] == 3
    assert len(list(Path(out).glob("catalog/assets/**/*.parquet"))) == 1


def test_s3_stopped_mid_run_and_restarted(tmp_path, cluster):
    weed = cluster
    specs = boxes(tmp_path / "cat", ["slow-s3", "other-s3"])
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    # the nap lasts 1 s; S3 is down for the next 6 s (plus the restart): what the SKUs do
    # next (read the dense mesh, write the cleaned one) meets a dead endpoint
    recipe = with_nap(build_recipe("web", "mesh", PX),
                      toy_stages.NapOptions(seconds=1.0, pid_dir=str(pid_dir)))
    outage = []

    def stop_then_restart(pid: int) -> None:
        weed.stop()
        outage.append(time.time())
        time.sleep(6)
        weed.start()
        weed.wait_ready()
        outage.append(time.time())

    watcher = _when_pid_file(pid_dir, stop_then_restart)
    out = "s3://factory/faults-s3"
    outcome = run_catalog(specs, recipe, out=out, options=ExecutorOptions(
        skus_per_task=1, retries=40, backoff_s=0.5, max_backoff_s=4.0))
    watcher.stop(timeout=120)
    assert len(outage) == 2, "the server was not stopped and restarted during the run"
    assert outcome.counts == {"ok": 2}, outcome.summaries
    check_outcome(out, specs, {"slow-s3", "other-s3"})
    retried = rows(out, "SELECT * FROM assets")
    n_retries = sum(v or 0 for r in retried for k, v in r.items() if k.endswith("_retries"))
    assert n_retries >= 1, "no stage met the outage"


def test_hung_stages_time_out_and_free_their_worker(tmp_path, cluster):
    recipe = Recipe("test", "none", (
        StageCall("nap", "toy_stages:nap", toy_stages.NapOptions()),
        StageCall("count", "toy_stages:count", toy_stages.CountOptions(1))))
    skus = ["hang1", "stuck1", "fine1", "fine2"]
    jobs = [Job(AssetState(sku=s, spec=SkuSpec(sku=s), store_uri=str(tmp_path), run_id="r1",
                           attempt_id=f"att-{s}", asset_id=f"id-{s}"), {}) for s in skus]
    # two per task: the stuck SKU's watchdog records it alone and ends the worker; the task's
    # next try leaves it out of the block's record (one row per attempt, none twice)
    out = convert(jobs, recipe, options=ExecutorOptions(
        timeouts={"nap": 2}, hang_grace_s=1, worker_retries=1, skus_per_task=2))
    got = {r["sku"]: r for r in rows(tmp_path, "SELECT * FROM assets")}
    assert set(got) == set(skus)
    # interrupted in Python; and stuck in "native" code (the signal blocked): worker stopped
    assert got["hang1"]["error"] == "timed out after 2 s" and got["hang1"]["failed_stage"] == "nap"
    assert got["stuck1"]["error"] == "timed out after 2 s; its worker was stopped"
    assert got["stuck1"]["fix"] and "--timeout nap=" in got["stuck1"]["fix"]
    assert got["fine1"]["status"] == got["fine2"]["status"] == "ok"
    assert rows(tmp_path, "SELECT count(*) AS n FROM attempts")[0]["n"] == len(skus)
    assert out.counts == {"ok": 2, "failed": 2}


# ---------------------------------------------------------------------------- the driver


def _cli(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    with open(log, "wb") as fh:  # a file, not a pipe nobody reads while the run goes on
        return subprocess.Popen([sys.executable, "-m", "assetfactory.cli", *args], env=env,
                                stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)


def _kill_run(proc: subprocess.Popen, marker: str) -> list[str]:
    """SIGKILL every process of a CLI run: the driver, the local Ray it started (head and
    workers, whatever their process group) and Prefect's server, until none is left; returns
    any still alive after a minute. They share the driver's session (started with
    ``start_new_session``) and carry ``marker`` in their environment, inherited from it: a
    process that left the session is found by the marker."""
    import psutil

    if proc.poll() is None:
        proc.kill()
    proc.wait()
    left = end_session(proc.pid)
    needle = f"FAULT_TEST_RUN={marker}".encode()
    deadline = time.monotonic() + 60
    while True:
        found = []
        for p in psutil.process_iter():
            try:
                with open(f"/proc/{p.pid}/environ", "rb") as fh:
                    if needle in fh.read() and p.status() != psutil.STATUS_ZOMBIE:
                        found.append(p)
                        p.kill()
            except (OSError, psutil.Error):
                continue
        if not found or time.monotonic() > deadline:
            return left + [f"{p.pid} (marker)" for p in found]
        time.sleep(0.2)


def test_the_driver_killed_and_run_again(tmp_path):
    skus = [f"drv-{i}" for i in range(5)]
    specs = boxes(tmp_path / "cat", skus)
    out = tmp_path / "out"
    marker = os.urandom(6).hex()
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "FAULT_TEST_RUN": marker}
    env.pop("RAY_ADDRESS", None)  # a local Ray of its own, killed with the driver
    args = ["run", str(tmp_path / "cat" / "catalog.csv"), "--backend", "mesh", "--profile",
            "web", "--texture-px", "64", "--out", str(out)]
    first = _cli(args, env, tmp_path / "first.log")
    try:
        deadline = time.time() + 600
        committed = []
        while time.time() < deadline and first.poll() is None:
            committed = list(out.glob("catalog/assets/**/*.parquet"))
            if committed:
                break
            time.sleep(0.05)
        assert committed, (tmp_path / "first.log").read_text()[-3000:]
        first.kill()  # SIGKILL: no cleanup, no final record
        first.wait()
    finally:
        # and the local Ray it started: no orphan task finishes later or eats the CPU
        survivors = _kill_run(first, marker)
    assert not survivors, f"processes of the killed run outlived it: {survivors}"
    before = {r["sku"] for r in rows(out, "SELECT sku FROM attempts WHERE status = 'ok'")}
    assert 0 < len(before) < len(skus), before
    # no partial file under a final name: every fragment reads, every GLB loads
    for p in out.rglob("*.parquet"):
        if not p.name.startswith(".tmp-"):
            import pyarrow.parquet as pq

            pq.read_table(p)
    second = _cli(args, env, tmp_path / "second.log")
    try:
        second.wait(timeout=900)
    finally:
        survivors = _kill_run(second, marker)
    assert not survivors, f"processes of the second run outlived it: {survivors}"
    text = (tmp_path / "second.log").read_text(errors="replace")
    assert second.returncode == 0, text[-3000:]
    after = rows(out, "SELECT sku, run_id, count(*) AS n FROM attempts GROUP BY sku, run_id")
    runs = sorted({r["run_id"] for r in after})
    assert len(runs) == 2
    redone = {r["sku"] for r in after if r["run_id"] == runs[1]}
    assert redone == set(skus) - before  # only the unfinished work was done again
    check_outcome(str(out), specs, set(skus))

"""The streaming executor on a real local Ray: failures stay with their SKU, GPU backends run in
an actor pool that builds them once per actor, planning skips what is converted (hung stages,
killed workers and the other faults: test_faults.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import toy_stages

from assetfactory.catalog.views import query
from assetfactory.core.types import AssetState, Resources, SkuSpec
from assetfactory.flows.executor import (
    ExecutorOptions,
    Job,
    RunContext,
    _data_context,
    _identified,
    _task_cap,
    concurrent_runs,
    convert,
    early_ray,
    plan,
    ray_session,
    segments,
    skus_per_task,
    tail_sizes,
    task_blocks,
    unrecorded,
    wait_ray_stopped,
)
from assetfactory.flows.identity import recipe_identity
from assetfactory.flows.recipe import Recipe, StageCall, build_recipe
from assetfactory.tasks.generate import GenerateOptions

RECIPE = Recipe("test", "none", (
    StageCall("count", "toy_stages:count", toy_stages.CountOptions(2)),
    StageCall("picky", "toy_stages:picky", toy_stages.CountOptions()),
    StageCall("count", "toy_stages:count", toy_stages.CountOptions(3)),
))


def test_an_early_ray_start_is_taken_over_and_stopped_while_the_caller_goes_on(monkeypatch):
    """The command line starts Ray beside Prefect's temporary server (``early_ray``); the
    flow's session with the same arguments takes that instance over (one start, not two) and,
    with ``stop_later``, stops it in a thread that ``wait_ray_stopped`` joins. (Runs before
    this module's Ray fixture starts its own instance.)"""
    import ray

    assert not ray.is_initialized()
    starts = []
    real_init = ray.init
    monkeypatch.setattr(ray, "init", lambda **kw: starts.append(kw) or real_init(**kw))
    with early_ray(num_cpus=1):
        with ray_session(num_cpus=1, stop_later=True):
            assert ray.is_initialized() and ray.cluster_resources()["CPU"] == 1
        wait_ray_stopped()
        assert not ray.is_initialized()
    assert len(starts) == 1 and not ray.is_initialized()


def test_a_local_session_is_warm_before_its_first_conversion():
    """A local instance that ``ray_session`` starts brings up, as it starts, what the first
    conversion would otherwise wait on: its worker with every stage imported (a task per CPU)
    and Ray Data's statistics and autoscaling actors (``_warm_session``). Only a cluster's
    workers get the set-up hook. (Runs before this module's Ray fixture starts its own
    instance.)"""
    import ray

    from assetfactory.flows.executor import _init_kwargs, await_warm

    assert "runtime_env" not in _init_kwargs(None, 1, None)
    assert "worker_process_setup_hook" in _init_kwargs("ray://head:10001", None, None)[
        "runtime_env"]
    assert not ray.is_initialized()
    with ray_session(num_cpus=1):
        await_warm()

        @ray.remote(num_cpus=1)
        def imported() -> bool:
            return "assetfactory.tasks.bake" in sys.modules

        assert ray.get(imported.remote())
        actors = {(a["namespace"], a["name"])
                  for a in ray.util.list_named_actors(all_namespaces=True)}
        assert ("_dataset_stats_actor", "datasets_stats_actor") in actors
        assert ("AutoscalingCoordinator", "AutoscalingCoordinator") in actors
    assert not ray.is_initialized()


@pytest.fixture(scope="module")
def ray_gpu(tmp_path_factory):
    """Ray with 2 CPUs and one (logical) GPU: Ray schedules GPU actors on it like on a real one."""
    ray = pytest.importorskip("ray")
    builds = tmp_path_factory.mktemp("builds")
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {
                 "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent)] + sys.path),
                 "TOY_BUILDS_DIR": str(builds)}})
    yield builds
    ray.shutdown()


def _jobs(tmp_path, skus):
    return [Job(AssetState(sku=s, spec=SkuSpec(sku=s), store_uri=str(tmp_path), run_id="r1",
                           attempt_id=f"att-{s}", asset_id=f"id-{s}"), {}) for s in skus]


def _rows(out, sql):
    cols, rows = query(str(out), sql)
    return [dict(zip(cols, r)) for r in rows]


@pytest.mark.slow
def test_failures_stay_with_their_sku_and_every_sku_is_recorded(tmp_path, ray_gpu):
    skus = ["good1", "bad1", "bug1", "die1", "good2", "good3"]
    seen = []
    # two SKUs per task: the crashing SKU's task-mate is run again on its own and completes
    out = convert(_jobs(tmp_path, skus), RECIPE, options=ExecutorOptions(
        skus_per_task=2, worker_retries=1), on_done=seen.append)
    assert sorted(s["sku"] for s in out.summaries) == sorted(skus) == sorted(
        s["sku"] for s in seen)
    got = {r["sku"]: (r["status"], r["failed_stage"])
           for r in _rows(tmp_path, "SELECT sku, status, failed_stage FROM assets")}
    assert got["good1"] == got["good2"] == got["good3"] == ("ok", None)
    assert got["bad1"] == ("failed", "picky") and got["bug1"] == ("failed", "picky")
    assert got["die1"] == ("failed", "runner")
    n = _rows(tmp_path, "SELECT count(*) AS n, count(DISTINCT attempt_id) AS d FROM attempts")[0]
    assert n["n"] == n["d"] == len(skus)  # one record per SKU, none twice
    assert out.counts == {"ok": 3, "failed": 3}


@pytest.mark.slow
def test_gpu_backend_runs_in_an_actor_pool_built_once_per_actor(tmp_path, ray_gpu):
    call = StageCall("generate", "toy_stages:toygen", GenerateOptions(backend="toygpu"))
    recipe = Recipe("test", "toygpu", (
        StageCall("count", "toy_stages:count", toy_stages.CountOptions(1)), call,
        StageCall("count", "toy_stages:count", toy_stages.CountOptions(1))))
    segs = segments(recipe, ExecutorOptions())
    assert [s.actor for s in segs] == [False, True, False]
    assert segs[1].resources == Resources(cpus=0.5, gpus=0.5)
    before = set(os.listdir(ray_gpu))
    skus = [f"gpu{i}" for i in range(8)]
    out = convert(_jobs(tmp_path, skus), recipe, options=ExecutorOptions(skus_per_task=1))
    assert out.counts == {"ok": 8}
    rows = _rows(tmp_path, "SELECT sku, generate_pid, cuda_visible, count FROM assets")
    pids = {r["generate_pid"] for r in rows}
    builds = set(os.listdir(ray_gpu)) - before
    # one GPU, half a GPU per actor: at most two actors, each built its backend exactly once,
    # and every SKU served by one of them (the pool may start an actor that then serves none)
    built_by = [int(b.split("-")[0]) for b in builds]
    assert len(built_by) == len(set(built_by)) <= 2, builds
    assert pids <= set(built_by), (pids, builds)
    assert all(r["cuda_visible"] == "0" for r in rows)  # Ray gave each actor the GPU
    assert all(r["count"] == 2 for r in rows)


@pytest.mark.slow
def test_plan_skips_converted_identities_and_sizes_tasks(tmp_path, ray_gpu):
    recipe = build_recipe("web", "mesh")
    specs = [SkuSpec(sku=f"p{i}", width_mm=float(i + 1)) for i in range(80)]
    first = plan(specs, recipe, out=str(tmp_path), run_id="r", done={})
    assert len(first.jobs) == 80 and not first.skipped
    again = plan(specs, recipe, out=str(tmp_path), run_id="r",
                 done={"p3": {first.jobs[3].state.asset_id}, "p4": {"other"}})
    assert again.skipped == ["p3"] and len(again.jobs) == 79
    small = plan(specs[:5], recipe, out=str(tmp_path), run_id="r", done={})  # in-process
    assert [j.state.asset_id for j in small.jobs] == [j.state.asset_id for j in first.jobs[:5]]
    # identities left to the converting task: the same ids there, and the same SKU skipped
    deferred = plan(specs, recipe, out=str(tmp_path), run_id="r",
                    done={"p3": {first.jobs[3].state.asset_id}, "p4": {"other"}}, in_tasks=True)
    assert not deferred.skipped and not any(j.state.asset_id for j in deferred.jobs)
    assert [j.state.attempt_id for j in deferred.jobs] == [j.state.attempt_id for j in first.jobs]
    ctx = RunContext(recipe.describe(), recipe_identity(recipe), "", ExecutorOptions(), recipe)
    worked = [_identified(j, ctx) for j in deferred.jobs[:6]]
    assert [j.state.asset_id for j in worked] == [j.state.asset_id for j in first.jobs[:6]]
    assert [j.input_hashes for j in worked] == [j.input_hashes for j in first.jobs[:6]]
    assert [j.skip for j in worked] == [False, False, False, True, False, False]
    assert skus_per_task(5, ExecutorOptions()) == 1
    assert skus_per_task(1000, ExecutorOptions()) == 8
    assert skus_per_task(1000, ExecutorOptions(skus_per_task=3)) == 3
    # the shard's last tasks smaller, so that its end leaves no CPU waiting on a long task
    blocks = task_blocks(first.jobs, recipe)
    size = len(blocks[0])
    assert [j for b in blocks for j in b] == first.jobs and task_blocks(first.jobs, recipe) \
        == blocks
    lengths = [len(b) for b in blocks]
    assert lengths == sorted(lengths, reverse=True) and size == 10  # 80 / (4 x 2 CPUs)
    assert tail_sizes(size) == [10, 2, 1] and tail_sizes(32) == [32, 8, 2, 1]
    for bigger, smaller in zip(tail_sizes(size), tail_sizes(size)[1:]):
        # the last 2 CPUs x each size in blocks of the next size: 20 SKUs in 2s, 4 in 1s
        assert sum(n for n in lengths if n <= smaller) == 2 * bigger
        assert smaller in lengths
    # tasks in flight: what the 2 CPUs run at once, plus one waiting behind each; Ray Data's
    # resource-budget backpressure (which holds the next task back) off only then
    assert _task_cap(Resources(cpus=1), 1)["compute"].size == 4
    assert _task_cap(Resources(cpus=2), 2)["compute"].size == 3
    assert _task_cap(Resources(cpus=1), 0) == {}
    from ray.data._internal.execution import backpressure_policy as bp
    names = [p.__name__ for p in _data_context(1).get_config(
        bp.ENABLED_BACKPRESSURE_POLICIES_CONFIG_KEY)]
    assert "ResourceBudgetBackpressurePolicy" not in names and names
    import logging
    starved = logging.getLogger("ray.data._internal.execution.resource_manager")
    notice = logging.LogRecord(starved.name, logging.WARNING, "", 0, "Cluster resources are not "
                               "enough to run any task from X.", None, None)
    assert not starved.filter(notice)  # not starved while nothing holds its tasks back
    assert "ResourceBudgetBackpressurePolicy" in [p.__name__ for p in _data_context(0).get_config(
        bp.ENABLED_BACKPRESSURE_POLICIES_CONFIG_KEY)]
    assert starved.filter(notice)


def test_a_gpu_backend_on_a_cluster_without_gpus_asks_for_cpus_only(tmp_path):
    """No Ray needed: the operators the recipe becomes. A GPU request where the cluster has no
    GPU would wait forever; the pool's actors ask for CPUs and still load weights once each."""
    call = StageCall("generate", "toy_stages:toygen", GenerateOptions(backend="toygpu"))
    recipe = Recipe("test", "toygpu", (
        StageCall("count", "toy_stages:count", toy_stages.CountOptions(1)), call,
        StageCall("picky", "toy_stages:picky", toy_stages.CountOptions()),
        StageCall("count", "toy_stages:count", toy_stages.CountOptions(1))))
    apart = ExecutorOptions(fuse_cpu_stages=False)
    with_gpu = segments(recipe, apart, cluster_gpus=1)
    assert [s.actor for s in with_gpu] == [False, True, False, False]
    assert with_gpu[1].resources == Resources(cpus=0.5, gpus=0.5)
    without = segments(recipe, apart, cluster_gpus=0)
    assert without[1].actor and without[1].resources == Resources(cpus=0.5, gpus=0.0)
    fused = segments(recipe, ExecutorOptions(fuse_cpu_stages=True,
                                             resources={"picky": Resources(cpus=2)}),
                     cluster_gpus=1)
    assert [s.name for s in fused] == ["count", "generate", "picky+count"]
    assert fused[2].resources == Resources(cpus=2)
    # a stage in a task runs on the CPUs that task reserved: count (1 CPU) fused with picky
    # raised to 2 sees 2; the stage declaring 2 CPUs, lowered to 1, sees 1
    from assetfactory.core.stage import cpu_count
    from assetfactory.flows.executor import RunContext, _run_segment

    cpus = StageCall("cpus", "toy_stages:cpus", toy_stages.CpuOptions())
    ctx = RunContext({}, "", "", apart)
    state = AssetState(sku="c", spec=SkuSpec(sku="c"), store_uri=str(tmp_path), run_id="r",
                       attempt_id="att-c", asset_id="id-c")
    for over, want in ((None, 2), (Resources(cpus=1), 1)):
        opts = ExecutorOptions(fuse_cpu_stages=True, resources={"cpus": over} if over else {})
        (seg,) = segments(Recipe("test", "mesh", (recipe.calls[0], cpus)), opts,
                          cluster_gpus=0)
        job = _run_segment(Job(state, {}), seg, ctx)
        assert job.state.metrics["stage_cpus"] == min(want, cpu_count())
    with pytest.raises(ValueError, match="unknown execution option"):
        ExecutorOptions.from_dict({"timeout": 3})
    with pytest.raises(ValueError, match="must be > 0"):
        ExecutorOptions.from_dict({"timeouts": {"uv": 0}})


@pytest.mark.slow
def test_the_driver_hears_of_each_task_as_it_ends(tmp_path, ray_gpu):
    """Three one-SKU tasks on two CPUs; the third waits until the driver has been told of
    the other two (its ``on_done`` writes a file the waiting stage looks for). Read with one
    block of look-ahead (``iter_rows``), the second summary came only with the third's, so
    the waiting SKU would wait out its 120 s and report it was never released."""
    release = tmp_path / "release"
    nap = StageCall("nap", "toy_stages:nap",
                    toy_stages.NapOptions(seconds=120.0, until=str(release)))
    seen = []

    def on_done(summary):
        seen.append(summary["sku"])
        if {"quick1", "quick2"} <= set(seen):
            release.touch()

    out = convert(_jobs(tmp_path, ["quick1", "quick2", "wait3"]), Recipe("test", "none", (nap,)),
                  options=ExecutorOptions(skus_per_task=1), on_done=on_done)
    assert out.counts == {"ok": 3}
    (row,) = _rows(tmp_path, "SELECT released FROM assets WHERE sku = 'wait3'")
    assert row["released"] is True
    assert seen[-1] == "wait3"


def test_cpu_stages_fuse_by_default_only_where_declared_memory_does_not_bind():
    """No Ray needed. Fused stages declare the largest memory of their stages (bake: 4 GiB):
    fused where the cluster still runs as many tasks at once as it has CPUs, apart where that
    memory would leave CPUs idle."""
    gb = 2**30
    real = build_recipe("web", "mesh")
    names = [c.name for c in real.calls]
    roomy = segments(real, ExecutorOptions(), cluster_gpus=0,
                     cluster={"CPU": 2.0, "memory": 9 * gb})
    assert [s.name for s in roomy] == ["+".join(names)]
    assert roomy[0].resources.memory_mb == 4096 and roomy[0].resources.cpus == 1
    tight = segments(real, ExecutorOptions(), cluster_gpus=0,
                     cluster={"CPU": 2.0, "memory": 6 * gb})
    assert [s.name for s in tight] == names
    assert [s.name for s in segments(real, ExecutorOptions(fuse_cpu_stages=False),
                                     cluster_gpus=0, cluster={"CPU": 2.0, "memory": 9 * gb})] \
        == names


def test_a_retried_shard_runs_only_unrecorded_blocks_with_the_same_members(tmp_path):
    """No Ray needed. Blocks are fixed by the planned jobs; a block is recorded whole (one
    file), so what a retry runs is the blocks with no record, each with its first members."""
    from assetfactory.flows.runner import AttemptMeta, record_attempt, record_attempts

    jobs = _jobs(tmp_path, [f"s{i}" for i in range(7)])
    options = ExecutorOptions(skus_per_task=3, fuse_cpu_stages=False)
    blocks = task_blocks(jobs, RECIPE, options)
    assert [[j.state.sku for j in b] for b in blocks] == [["s0", "s1", "s2"],
                                                          ["s3", "s4", "s5"], ["s6"]]
    assert task_blocks(jobs, RECIPE, options) == blocks
    meta = AttemptMeta(0.0, {}, "rh", {}, "")
    record_attempts([(j.state, meta) for j in blocks[0]])
    record_attempt(blocks[1][1].state, meta)  # recorded alone (a hung stage's watchdog)
    left = unrecorded(blocks)
    assert [[j.state.sku for j in b] for b in left] == [["s3", "s5"], ["s6"]]
    assert _rows(tmp_path, "SELECT count(*) AS n FROM attempts")[0]["n"] == 4


def test_two_shards_run_at_once_only_where_each_gets_a_whole_operator():
    """No Ray needed. Ray Data splits the cluster between executions at once in whole units:
    one CPU (or one GPU) between two shards is none each, and each waits on the other."""
    gb = 2**30
    assert concurrent_runs(RECIPE, cluster={"CPU": 1.0, "memory": 8 * gb}) == 1
    assert concurrent_runs(RECIPE, cluster={"CPU": 2.0, "memory": 8 * gb}) == 2
    assert concurrent_runs(RECIPE, cluster={"CPU": 3.0, "memory": 8 * gb}) == 1  # 1 CPU idle
    assert concurrent_runs(RECIPE, cluster={"CPU": 4.0, "memory": 8 * gb}) == 2
    real = build_recipe("web", "mesh")  # bake declares 4 GiB: two shards need 8
    assert concurrent_runs(real, cluster={"CPU": 2.0, "memory": 6 * gb}) == 1
    assert concurrent_runs(real, cluster={"CPU": 2.0, "memory": 9 * gb}) == 2
    gpu = Recipe("test", "toygpu", (
        StageCall("generate", "toy_stages:toygen", GenerateOptions(backend="toygpu")),))
    # half a GPU per actor: one GPU split in two is 0 each; two GPUs are one each
    assert concurrent_runs(gpu, cluster={"CPU": 4.0, "GPU": 1.0, "memory": 8 * gb}) == 1
    assert concurrent_runs(gpu, cluster={"CPU": 4.0, "GPU": 2.0, "memory": 8 * gb}) == 2


def test_the_control_plane_polls_less_where_nothing_waits_on_it(monkeypatch):
    """Ray Data's scheduling loop waits longer for finished tasks when tasks wait in Ray
    behind the running ones (``tasks_ahead``), its own 0.1 s when it dispatches every task;
    a local instance's log monitor lists its folder every 5 s (nothing reads its output), a
    cluster's is left alone and a value the user set is kept."""
    from ray.data._internal.execution import streaming_executor_state as state

    from assetfactory.flows.executor import LOG_MONITOR_ENV, SCHEDULING_WAIT_S, _init_kwargs

    _data_context(1)
    assert state.WAIT_FOR_TASK_COMPLETION_TIMEOUT_S == SCHEDULING_WAIT_S > 0.1
    _data_context(0)
    assert state.WAIT_FOR_TASK_COMPLETION_TIMEOUT_S == 0.1
    for name in LOG_MONITOR_ENV:
        monkeypatch.delenv(name, raising=False)
    _init_kwargs("ray://head:10001", None, None)
    assert not set(LOG_MONITOR_ENV) & set(os.environ)
    monkeypatch.setenv("LOG_NAME_UPDATE_INTERVAL_S", "1")
    _init_kwargs(None, 2, None)
    assert os.environ["RAY_LOG_MONITOR_MANY_FILES_THRESHOLD"] == "0"
    assert os.environ["LOG_NAME_UPDATE_INTERVAL_S"] == "1"
    monkeypatch.delenv("LOG_NAME_UPDATE_INTERVAL_S")
    _init_kwargs(None, 2, None)
    assert os.environ["LOG_NAME_UPDATE_INTERVAL_S"] == "5"

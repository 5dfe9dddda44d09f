"""The runner: failures stay with their SKU; timeouts, transient retries and the CPU budget."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import toy_stages

from assetfactory.core.errors import InputError
from assetfactory.core.stage import cpu_count
from assetfactory.core.types import AssetState, SkuSpec
from assetfactory.flows.recipe import Recipe, StageCall, build_recipe
from assetfactory.flows.runner import StagePolicy, is_transient, policy_for, run_asset, run_stage

RECIPE = Recipe("test", "none", (
    StageCall("count", "toy_stages:count", toy_stages.CountOptions(2)),
    StageCall("picky", "toy_stages:picky", toy_stages.CountOptions()),
    StageCall("count", "toy_stages:count", toy_stages.CountOptions(3)),
))
FAST = StagePolicy(retries=3, backoff_s=0.01, max_backoff_s=0.05)


def _state(tmp_path, sku):
    return AssetState(sku=sku, spec=SkuSpec(sku=sku), store_uri=str(tmp_path), run_id="r",
                      attempt_id=f"att-{sku}", asset_id=f"id-{sku}")


def test_run_asset_in_process(tmp_path):
    ok = run_asset(_state(tmp_path, "good"), RECIPE)
    assert ok.ok and ok.metrics["count"] == 5 and len(ok.records) == 3
    bad = run_asset(_state(tmp_path, "bad1"), RECIPE)
    assert bad.failure.stage == "picky" and bad.failure.fix == "make it good"
    assert bad.metrics["count"] == 2  # later stages did not run
    assert [r.status for r in bad.records] == ["ok", "failed"]
    bug = run_stage(RECIPE.calls[1], _state(tmp_path, "bug1"))
    assert bug.failure.kind == "internal" and "RuntimeError" in bug.failure.message


def test_recipe_is_data_and_hash_tracks_options():
    a, b = build_recipe("ar"), build_recipe("web")
    assert [c.name for c in a.calls][:2] == ["ingest", "generate"]
    assert a.hash != b.hash
    assert build_recipe("ar").hash == a.hash
    with pytest.raises(ValueError):
        build_recipe("nope")


def test_a_hung_stage_times_out_and_the_process_goes_on(tmp_path):
    call = StageCall("nap", "toy_stages:nap", toy_stages.NapOptions())
    t0 = time.perf_counter()
    hung = run_stage(call, _state(tmp_path, "hang1"), StagePolicy(timeout_s=0.5))
    assert time.perf_counter() - t0 < 5
    assert not hung.ok and hung.failure.kind == "timeout"
    assert hung.failure.message == "timed out after 0.5 s" and "--timeout nap=" in hung.failure.fix
    assert hung.records[-1].status == "failed"
    # the timer is gone: the next stage runs to its end
    ok = run_stage(call, _state(tmp_path, "fine1"), StagePolicy(timeout_s=0.5))
    assert ok.ok
    time.sleep(0.6)


def test_transient_faults_are_retried_and_input_errors_are_not(tmp_path):
    flaky = StageCall("flaky", "toy_stages:flaky", toy_stages.FlakyOptions(2, str(tmp_path)))
    ok = run_stage(flaky, _state(tmp_path, "s3down"), FAST)
    assert ok.ok and ok.metrics["tries"] == 3 and ok.metrics["flaky_retries"] == 2
    gone = run_stage(StageCall("flaky", "toy_stages:flaky",
                               toy_stages.FlakyOptions(9, str(tmp_path))),
                     _state(tmp_path, "s3gone"), FAST)
    assert gone.failure.kind == "transient" and "after 4 tries" in gone.failure.message
    bad = run_stage(StageCall("flaky", "toy_stages:flaky",
                              toy_stages.FlakyOptions(1, str(tmp_path), "input")),
                    _state(tmp_path, "badphoto"), FAST)
    assert bad.failure.kind == "InputError"
    assert (tmp_path / "badphoto.tries").read_text() == "1"  # never retried


def test_is_transient():
    import botocore.exceptions as be

    assert is_transient(ConnectionRefusedError(111, "refused"))
    assert is_transient(be.EndpointConnectionError(endpoint_url="http://x"))
    assert is_transient(be.ClientError({"Error": {"Code": "SlowDown"},
                                        "ResponseMetadata": {"HTTPStatusCode": 503}}, "PutObject"))
    assert not is_transient(be.ClientError({"Error": {"Code": "NoSuchKey"},
                                            "ResponseMetadata": {"HTTPStatusCode": 404}}, "Get"))
    assert not is_transient(FileNotFoundError("x"))
    try:  # a stage that wraps a failed read in an InputError is still retried
        try:
            raise ConnectionResetError("reset")
        except ConnectionResetError as exc:
            raise InputError("could not read the photo", "check it") from exc
    except InputError as wrapped:
        assert is_transient(wrapped)
    assert not is_transient(InputError("corrupt photo", "export it again"))


def test_a_stage_gets_its_declared_cpus(tmp_path):
    got = run_stage(StageCall("cpus", "toy_stages:cpus", toy_stages.CpuOptions()),
                    _state(tmp_path, "c"))
    assert got.metrics["stage_cpus"] == min(2, cpu_count())
    # the executor hands a stage the CPUs it reserved for its task (a segment's resources,
    # raised or lowered by ``ExecutorOptions.resources``), not the stage's own declaration
    call = StageCall("cpus", "toy_stages:cpus", toy_stages.CpuOptions())
    assert run_stage(call, _state(tmp_path, "d"), cpus=1).metrics["stage_cpus"] == 1
    assert policy_for("uv").timeout_s == 1800 and policy_for("uv", {"*": 5}).timeout_s == 5
    assert policy_for("uv", {"uv": 7, "*": 5}).timeout_s == 7


def test_a_stage_stuck_past_its_grace_calls_on_hang_once_and_a_finished_one_never():
    """The watchdog (one thread per process) calls ``on_hang`` for a body that neither ends
    nor can be interrupted (here: a sleep in a thread, where the timeout is only delivered
    when the sleep returns), and never for a body that ended in time."""
    import threading

    from assetfactory.flows.runner import StageTimeout, deadline

    hung, raised = [], []

    def stuck() -> None:
        try:
            with deadline(0.2, on_hang=lambda: hung.append(time.monotonic()), grace_s=0.2):
                time.sleep(1.5)
        except StageTimeout:
            raised.append(True)

    quick = []
    with deadline(0.3, on_hang=lambda: quick.append(1), grace_s=0.1):
        pass
    t0 = time.monotonic()
    worker = threading.Thread(target=stuck)
    worker.start()
    worker.join()
    time.sleep(0.3)
    assert len(hung) == 1 and 0.3 < hung[0] - t0 < 1.4
    assert raised == [True]
    assert quick == []

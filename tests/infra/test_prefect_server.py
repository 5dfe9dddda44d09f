"""infra/prefect.yaml against a real Prefect server on loopback: its deployments are served
(``assetfactory serve-flows``), the cron-scheduled one is triggered once and completes, the
scheduler plans its nightly runs, and ``prefect deploy`` accepts the file as it is.

One server for the module (``prefect server start`` on a free port, its own PREFECT_HOME and
SQLite database), stopped with everything it started at the end.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "flows"))
from catalog_helpers import FAST, PROFILE, box_obj, write_catalog

from assetfactory.catalog.views import query
from tests.tools import end_session

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    """End a process started here and its process group (flow-run children, Ray)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
    else:  # the leader is gone; its group may not be
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    # a flow run's local Ray: its workers take process groups of their own but stay in the
    # session
    end_session(proc.pid)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real Prefect server; yields the environment a client process needs."""
    home = tmp_path_factory.mktemp("prefect-home")
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_API_URL": url,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "WARNING",
           "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",
           "PREFECT_RUNNER_POLL_FREQUENCY": "2", "PREFECT_SERVER_UI_ENABLED": "false"}
    log = open(home / "server.log", "wb")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1",
                             "--port", str(port), "--no-ui"],
                            env={k: v for k, v in env.items() if k != "PREFECT_API_URL"},
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 180
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            _stop(proc)
            log.close()
            pytest.fail("the Prefect server did not start:\n"
                        + (home / "server.log").read_text(errors="replace")[-3000:])
        time.sleep(0.5)
    yield env
    _stop(proc)
    log.close()


def _client_call(env: dict, coro_fn):
    """Run ``coro_fn(client)`` against the test server with its settings."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    async def main():
        async with get_client() as client:
            return await coro_fn(client)

    def run():
        with temporary_settings(updates={PREFECT_API_URL: env["PREFECT_API_URL"]}):
            return asyncio.run(main())

    # On a thread of its own: another library's event loop (Playwright's sync API, say) may be
    # running on the main thread, where asyncio.run() refuses to start a second one.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(run).result()


def _wait_for(env, what, fn, timeout=180, proc=None, log=None):
    deadline = time.time() + timeout
    last_error = ""
    while True:
        try:
            value = _client_call(env, fn)
        except Exception as exc:  # noqa: BLE001 - not there yet (e.g. no such deployment)
            value, last_error = None, f"{type(exc).__name__}: {exc}"
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the serving process exited while waiting for {what}:\n"
                        + (log.read_text(errors="replace")[-3000:] if log else ""))
        if time.time() > deadline:
            pytest.fail(f"timed out waiting for {what} (last client error: {last_error or 'none'})"
                        + (":\n" + log.read_text(errors="replace")[-3000:] if log else ""))
        time.sleep(1)


def test_served_deployments_run_on_schedule_and_on_demand(server, tmp_path):
    drop, out = tmp_path / "drop", tmp_path / "out"
    drop.mkdir()
    box_obj(tmp_path / "catalog" / "box.obj", (0.2, 0.1, 0.1))
    catalog = write_catalog(tmp_path / "catalog" / "catalog.csv",
                            [{"sku": "Nightly Box", "mesh_uri": "box.obj"}])
    env = {**server, "ASSETFACTORY_CATALOG": str(catalog), "ASSETFACTORY_DROP": str(drop),
           "ASSETFACTORY_OUT": str(out), "PREFECT_HOME": str(tmp_path / "serve-home")}
    log_path = tmp_path / "serve.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([str(BIN / "assetfactory"), "serve-flows"], env=env, cwd=REPO,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        async def served(client):
            names = {}
            for name in ("sync_catalog/nightly-sync", "ingest_prefix/bulk-ingest",
                         "convert_catalog/convert-on-demand"):
                names[name] = await client.read_deployment_by_name(name)
            return names

        deployments = _wait_for(env, "the served deployments", served, proc=proc, log=log_path)
        nightly = deployments["sync_catalog/nightly-sync"]
        (schedule,) = nightly.schedules
        assert schedule.schedule.cron == "0 2 * * *" and schedule.active
        gcl = nightly.global_concurrency_limit  # where Prefect 3 keeps a deployment's limit
        assert (nightly.concurrency_limit or (gcl and gcl.limit)) == 1
        assert nightly.parameters["catalog"] == str(catalog)

        async def planned(client):  # the scheduler service plans the cron's next nights
            from prefect.client.schemas.filters import (
                DeploymentFilter,
                DeploymentFilterId,
                FlowRunFilter,
                FlowRunFilterState,
                FlowRunFilterStateType,
            )
            from prefect.client.schemas.objects import StateType

            runs = await client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[nightly.id])),
                flow_run_filter=FlowRunFilter(state=FlowRunFilterState(
                    type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))))
            return [r for r in runs if r.auto_scheduled]

        upcoming = _wait_for(env, "scheduled nightly runs", planned, timeout=120)
        assert all((r.expected_start_time.hour, r.expected_start_time.minute) == (2, 0)
                   for r in upcoming)

        # trigger the scheduled deployment once, now, and wait for it to finish
        from prefect.deployments import run_deployment
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings(updates={PREFECT_API_URL: env["PREFECT_API_URL"]}):
            run = run_deployment("sync_catalog/nightly-sync", timeout=600, poll_interval=2,
                                 parameters={"profile": PROFILE, "overrides": FAST})
        assert run.state is not None and run.state.is_completed(), (
            run.state, log_path.read_text(errors="replace")[-3000:])
    finally:
        _stop(proc)
        log.close()

    # (the 15-minute bulk-ingest schedule may also have fired meanwhile, on an empty folder)
    cols, rows = query(str(out), "SELECT * FROM flow_runs WHERE flow = 'sync'")
    (row,) = [dict(zip(cols, r)) for r in rows]
    assert row["flow_run_id"] == str(run.id)  # the catalog names Prefect's own flow run
    assert (row["flow"], row["status"], row["converted"], row["ok"]) == ("sync", "completed", 1, 1)
    assert json.loads(row["parameters"])["catalog"] == str(catalog)
    _, assets = query(str(out), "SELECT sku, status FROM assets")
    assert assets == [("Nightly Box", "ok")]


def test_prefect_deploy_accepts_the_file(server, tmp_path):
    env = {**server, "ASSETFACTORY_CATALOG": "s3://catalogs/merchant/catalog.parquet",
           "ASSETFACTORY_DROP": "s3://supplier-uploads/catalogs",
           "ASSETFACTORY_OUT": "s3://assets/merchant", "PREFECT_HOME": str(tmp_path)}

    async def pool(client):  # the pool workers would poll (made here: one CLI start less)
        from prefect.client.schemas.actions import WorkPoolCreate
        from prefect.workers.process import ProcessWorker

        template = ProcessWorker.get_default_base_job_template()
        return await client.create_work_pool(WorkPoolCreate(
            name="assetfactory", type="process", base_job_template=template))

    assert _client_call(env, pool).name == "assetfactory"
    cmd = [str(BIN / "prefect"), "--no-prompt", "deploy", "--all", "--prefect-file",
           str(REPO / "infra" / "prefect.yaml")]
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])

    async def deployed(client):
        return await client.read_deployment_by_name("ingest_prefix/bulk-ingest")

    ingest = _client_call(env, deployed)
    assert ingest.work_pool_name == "assetfactory"
    assert ingest.parameters == {"prefix": "s3://supplier-uploads/catalogs",
                                 "out": "s3://assets/merchant", "profile": "ar"}
    assert [s.schedule.cron for s in ingest.schedules] == ["*/15 * * * *"]
    assert ingest.entrypoint == "assetfactory.flows.ingest:ingest_prefix"

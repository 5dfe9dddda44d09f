"""Serve the deployments of ``infra/prefect.yaml`` from one long-running process.

Two ways to run the scheduled flows, from the same file:

* ``prefect deploy --all --prefect-file infra/prefect.yaml`` registers them with a Prefect
  server for workers of the ``assetfactory`` work pool (the cluster setup);
* ``assetfactory serve-flows`` (this module) registers them and runs them itself, in this
  process's environment: no work pool or worker to set up (a single machine, or a test).

Parameters may use Prefect's ``{{ $ENV_VAR }}`` placeholders (``prefect deploy`` fills them from
its environment; so does this module); one left unfilled is an error naming the variable, rather
than a flow run that fails on a path called ``{{ $X }}`` at 2 a.m.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

#: The checkout's (or the image's) ``infra/prefect.yaml``; else ``./infra/prefect.yaml``.
DEFAULT_FILE = next((p for p in (Path(__file__).resolve().parents[1] / "infra" / "prefect.yaml",
                                 Path.cwd() / "infra" / "prefect.yaml") if p.is_file()),
                    Path("infra") / "prefect.yaml")
_PLACEHOLDER = re.compile(r"\{\{\s*\$(\w+)\s*\}\}")


class DeploymentFileError(ValueError):
    """``prefect.yaml`` is malformed or names an environment variable that is not set."""


def read_deployments(path: str | Path = DEFAULT_FILE, environ: dict[str, str] | None = None
                     ) -> list[dict[str, Any]]:
    """The file's deployments with ``{{ $VAR }}`` placeholders filled from ``environ``."""
    import os

    env = dict(os.environ if environ is None else environ)
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise DeploymentFileError(f"cannot read {path}: {exc}") from exc
    deployments = (doc or {}).get("deployments")
    if not isinstance(deployments, list) or not deployments:
        raise DeploymentFileError(f"{path} has no 'deployments' list")
    filled = _fill(deployments, env)
    missing = sorted(set(_PLACEHOLDER.findall(yaml.safe_dump(filled))))
    if missing:
        raise DeploymentFileError(
            f"{path} uses environment variable(s) {', '.join(missing)} that are not set; set "
            "them (e.g. ASSETFACTORY_OUT=s3://assets/merchant) before serving or deploying")
    return filled


def _fill(value: Any, env: dict[str, str]) -> Any:
    """Replace ``{{ $VAR }}`` in every string, as ``prefect deploy`` does; unset ones stay."""
    if isinstance(value, str):
        return _PLACEHOLDER.sub(lambda m: env.get(m.group(1), m.group(0)), value)
    if isinstance(value, list):
        return [_fill(v, env) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, env) for k, v in value.items()}
    return value


def _schedules(entry: dict[str, Any]) -> list:
    from prefect.schedules import Cron, Interval, RRule

    out = []
    for s in entry.get("schedules") or []:
        common = {k: s[k] for k in ("timezone", "active", "parameters", "slug") if k in s}
        if "cron" in s:
            out.append(Cron(s["cron"], **common))
        elif "interval" in s:
            out.append(Interval(s["interval"], **common))
        elif "rrule" in s:
            out.append(RRule(s["rrule"], **common))
        else:
            raise DeploymentFileError(f"deployment {entry.get('name')!r}: a schedule needs "
                                      "cron, interval or rrule")
    return out


def runner_deployments(path: str | Path = DEFAULT_FILE, only: list[str] | None = None) -> list:
    """``RunnerDeployment``s for ``prefect.serve`` built from the file's entries."""
    from prefect.deployments.runner import EntrypointType
    from prefect.flows import load_flow_from_entrypoint

    out = []
    for entry in read_deployments(path):
        if only and entry["name"] not in only:
            continue
        flow = load_flow_from_entrypoint(entry["entrypoint"], use_placeholder_flow=False)
        limit = entry.get("concurrency_limit")
        out.append(flow.to_deployment(
            name=entry["name"], schedules=_schedules(entry), parameters=entry.get("parameters"),
            description=entry.get("description"), tags=entry.get("tags"),
            concurrency_limit=limit, entrypoint_type=EntrypointType.MODULE_PATH))
    if only and len(out) != len(set(only)):
        names = [e["name"] for e in read_deployments(path)]
        raise DeploymentFileError(f"no deployment named {sorted(set(only))} in {path}; it has "
                                  f"{names}")
    return out


def serve_deployments(path: str | Path = DEFAULT_FILE, only: list[str] | None = None,
                      limit: int | None = None) -> None:
    """Register the deployments and run their flow runs here until interrupted."""
    from prefect import serve

    serve(*runner_deployments(path, only), limit=limit)

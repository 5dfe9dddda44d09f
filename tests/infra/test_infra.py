"""infra/: the KubeRay cluster, the Docker images and the Prefect deployments, parsed and checked
against what the code and the Makefile say (no cluster or Docker daemon needed)."""

from __future__ import annotations

import inspect
import re
import shlex
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
DOCKERFILES = ("Dockerfile", "Dockerfile.cuda")


# --------------------------------------------------------------------------- the Makefile


def makefile_apt_packages() -> set[str]:
    text = (REPO / "Makefile").read_text()
    m = re.search(r"^APT_PKGS\s*:?=\s*(.+)$", text, re.MULTILINE)
    assert m, "the Makefile defines no APT_PKGS"
    return set(m.group(1).split())


def makefile_setup_commands() -> list[str]:
    """The recipe of the Makefile's install target, with $(PY)/$(VENV) spelled as in an image."""
    text = (REPO / "Makefile").read_text()
    m = re.search(r"^\$\(VENV\)/\.installed:.*\n((?:\t.*\n)+)", text, re.MULTILINE)
    assert m, "the Makefile has no $(VENV)/.installed target"
    lines = [ln.strip() for ln in m.group(1).splitlines()]
    return [ln.replace("$(PY)", "python").replace("$(VENV)/bin/", "") for ln in lines]


# --------------------------------------------------------------------------- Dockerfiles


def dockerfile(name: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, current = [], ""
    for raw in (INFRA / name).read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        word, _, rest = current.partition(" ")
        out.append((word.upper(), rest.strip()))
        current = ""
    return out


def run_commands(name: str) -> list[list[str]]:
    """Every shell command of the RUN instructions, split on && and ;, as argument lists."""
    cmds = []
    for word, rest in dockerfile(name):
        if word == "RUN":
            for part in re.split(r"&&|;", rest):
                if part.strip():
                    cmds.append(shlex.split(part))
    return cmds


def apt_installed(name: str) -> set[str]:
    pkgs: set[str] = set()
    for cmd in run_commands(name):
        if cmd[:2] in (["apt-get", "install"], ["apt", "install"]) or (
                "apt-get" in cmd and "install" in cmd):
            start = cmd.index("install") + 1
            pkgs |= {a for a in cmd[start:] if not a.startswith("-")}
    return pkgs


@pytest.mark.parametrize("name", DOCKERFILES)
def test_images_install_what_make_setup_installs(name):
    apt = apt_installed(name)
    missing = makefile_apt_packages() - apt
    assert not missing, f"{name} lacks the Makefile's APT_PKGS {sorted(missing)}"
    assert {"nodejs", "npm"} <= apt  # the glTF-Validator runs on Node.js
    cmds = run_commands(name)
    # the same Python package: this project, from the build context
    assert any(c[:2] == ["pip", "install"] and "." in c[2:] for c in cmds), cmds
    # the same npm packages, from the lock file
    assert ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"] in cmds
    copies = [rest for word, rest in dockerfile(name) if word == "COPY"]
    assert any("package-lock.json" in c for c in copies)
    # and the same warm-up the Makefile runs right after installing
    setup = makefile_setup_commands()
    warmup = [c for c in setup if "kernels" in c or "warmup" in c]
    assert warmup, setup
    assert all(shlex.split(w) in cmds for w in warmup), (warmup, cmds)
    env = " ".join(rest for word, rest in dockerfile(name) if word == "ENV")
    assert "ASSETFACTORY_NODE_MODULES=/opt/assetfactory/node_modules" in env


def test_python_matches_the_projects_requirement():
    import tomllib

    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    low = tuple(int(x) for x in re.search(r">=\s*(\d+)\.(\d+)", requires).groups())
    for name in DOCKERFILES:
        (base,) = [rest for word, rest in dockerfile(name) if word == "FROM"]
        version = tuple(int(x) for x in re.search(r"python:(\d+)\.(\d+)", base).groups())
        assert version >= low, (name, base, requires)


def test_the_cuda_image_exposes_the_gpu_for_compute_and_egl():
    env = " ".join(rest for word, rest in dockerfile("Dockerfile.cuda") if word == "ENV")
    caps = re.search(r"NVIDIA_DRIVER_CAPABILITIES=(\S+)", env).group(1).split(",")
    assert {"compute", "graphics"} <= set(caps)


def pip_requirements(cmd: list[str]) -> tuple[frozenset, frozenset]:
    """(requirements, meaningful flags) of a ``pip install`` argument list; ``-e``, ``-q`` and
    ``--no-cache-dir`` say how, not what, so they are dropped."""
    args = cmd[cmd.index("install") + 1:]
    reqs, flags, i = set(), set(), 0
    while i < len(args):
        a = args[i]
        if a in ("-c", "--constraint"):
            flags.add(("-c", args[i + 1]))
            i += 2
            continue
        if a.startswith("-"):
            if a not in ("-e", "--editable", "-q", "--quiet", "--no-cache-dir"):
                flags.add(a)
        else:
            reqs.add(a)
        i += 1
    return frozenset(reqs), frozenset(flags)


def test_the_cuda_image_installs_the_learned_backends_as_make_setup_test_does():
    text = (REPO / "Makefile").read_text()
    m = re.search(r"^\$\(VENV\)/\.installed-learned:.*\n((?:\t.*\n)+)", text, re.MULTILINE)
    assert m, "the Makefile has no $(VENV)/.installed-learned target"
    wanted = [pip_requirements(shlex.split(ln.strip().replace("$(PY) -m ", "")))
              for ln in m.group(1).splitlines() if "pip install" in ln]
    assert wanted and any("torch" in " ".join(r) for r, _ in wanted)
    cmds = [c for c in run_commands("Dockerfile.cuda") if c[:2] == ["pip", "install"]]
    have = [pip_requirements(c) for c in cmds]
    missing = [w for w in wanted if w not in have]
    assert not missing, (missing, have)
    # and in the Makefile's order: torch before the extra that must not replace it
    assert [have.index(w) for w in wanted] == sorted(have.index(w) for w in wanted)
    copies = " ".join(rest for word, rest in dockerfile("Dockerfile.cuda") if word == "COPY")
    assert "constraints-learned.txt" in copies or ". ." in copies


def test_the_build_context_leaves_local_state_out():
    ignored = set((REPO / ".dockerignore").read_text().split())
    assert {".venv", "node_modules", "factory-data", ".git"} <= ignored


# --------------------------------------------------------------------------- RayCluster

_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9}


def quantity(q) -> float:
    s = str(q)
    if s.endswith("m"):
        return float(s[:-1]) / 1000
    for unit, factor in _UNITS.items():
        if s.endswith(unit):
            return float(s[: -len(unit)]) * factor
    return float(s)


@pytest.fixture(scope="module")
def cluster() -> dict:
    return yaml.safe_load((INFRA / "ray-cluster.yaml").read_text())


def _groups(cluster):
    yield "head", cluster["spec"]["headGroupSpec"]
    for g in cluster["spec"]["workerGroupSpecs"]:
        yield g["groupName"], g


def test_raycluster_shape(cluster):
    assert cluster["apiVersion"] == "ray.io/v1" and cluster["kind"] == "RayCluster"
    head = cluster["spec"]["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"  # no stage runs on the head
    ports = {p["name"]: p["containerPort"] for p in
             head["template"]["spec"]["containers"][0]["ports"]}
    assert ports["client"] == 10001 and ports["gcs"] == 6379
    names = [g["groupName"] for g in cluster["spec"]["workerGroupSpecs"]]
    assert names == ["cpu", "gpu"]
    for g in cluster["spec"]["workerGroupSpecs"]:
        assert 0 <= g["minReplicas"] <= g["replicas"] <= g["maxReplicas"]


@pytest.mark.parametrize("group", ["head", "cpu", "gpu"])
def test_every_container_requests_what_ray_is_told(cluster, group):
    spec = dict(_groups(cluster))[group]
    (container,) = spec["template"]["spec"]["containers"]
    res = container["resources"]
    for key in ("cpu", "memory"):
        assert quantity(res["requests"][key]) <= quantity(res["limits"][key]), (group, key)
        assert quantity(res["requests"][key]) > 0
    params = spec["rayStartParams"]
    if group != "head":  # Ray must not schedule more CPUs or GPUs than the pod is given
        assert quantity(params["num-cpus"]) == quantity(res["limits"]["cpu"])
    gpus = quantity(res["limits"].get("nvidia.com/gpu", 0))
    assert quantity(params.get("num-gpus", 0)) == gpus
    assert (gpus > 0) == (group == "gpu")
    # GPU workers run the CUDA image, the others the CPU image
    assert container["image"].endswith(":cuda" if group == "gpu" else ":cpu")
    mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
    assert "/dev/shm" in mounts  # the object store would otherwise get the 64 MB default
    if group == "gpu":
        tolerations = spec["template"]["spec"]["tolerations"]
        assert any(t["key"] == "nvidia.com/gpu" for t in tolerations)


def test_the_gpu_group_fits_the_biggest_declared_stage(cluster):
    """Every stage's declared memory fits a CPU worker (else Ray could never place it)."""
    from assetfactory.flows.recipe import STAGE_ORDER, resolve_stage

    cpu = dict(_groups(cluster))["cpu"]["template"]["spec"]["containers"][0]["resources"]
    for name in STAGE_ORDER:
        res = resolve_stage(f"assetfactory.tasks.{name}:{name}").resources
        assert res.cpus <= quantity(cpu["limits"]["cpu"])
        assert res.memory_mb * 2**20 <= quantity(cpu["limits"]["memory"])


# --------------------------------------------------------------------------- prefect.yaml

ENV = {"ASSETFACTORY_CATALOG": "/data/catalog.csv", "ASSETFACTORY_DROP": "/data/drop",
       "ASSETFACTORY_OUT": "/data/out"}


def test_prefect_yaml_deployments_load_and_match_their_flows():
    from prefect.client.schemas.schedules import CronSchedule
    from prefect.flows import load_flow_from_entrypoint

    from assetfactory.flows.deployments import read_deployments

    deployments = read_deployments(INFRA / "prefect.yaml", ENV)
    names = [d["name"] for d in deployments]
    assert {"nightly-sync", "bulk-ingest"} <= set(names) and len(set(names)) == len(names)
    crons = []
    for d in deployments:
        flow = load_flow_from_entrypoint(d["entrypoint"], use_placeholder_flow=False)
        params = inspect.signature(flow.fn).parameters
        unknown = set(d.get("parameters", {})) - set(params)
        assert not unknown, (d["name"], unknown)
        for s in d.get("schedules") or []:
            if "cron" in s:
                CronSchedule(cron=s["cron"], timezone=s.get("timezone"))  # raises if invalid
                crons.append(d["name"])
        assert d["work_pool"]["name"] == "assetfactory"
        if d.get("schedules"):
            assert d.get("concurrency_limit") == 1  # a slow run never overlaps the next
            required = {n for n, p in params.items() if p.default is inspect.Parameter.empty}
            assert required <= set(d["parameters"]), (d["name"], required)
    assert "nightly-sync" in crons
    sync = next(d for d in deployments if d["name"] == "nightly-sync")
    assert sync["parameters"]["catalog"] == ENV["ASSETFACTORY_CATALOG"]


def test_an_unset_placeholder_is_an_error_naming_it():
    from assetfactory.flows.deployments import DeploymentFileError, read_deployments

    with pytest.raises(DeploymentFileError, match="ASSETFACTORY_DROP"):
        read_deployments(INFRA / "prefect.yaml", {k: v for k, v in ENV.items()
                                                 if k != "ASSETFACTORY_DROP"})

"""Each stage's output on a fixed input matches the golden hash recorded for its version.

See golden_stages.py for the canonical forms and the regeneration command (``make golden``).
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import skip_without_gltf_validator
from golden_stages import GOLDEN_FILE, check_stage, golden_recipe, load_golden

from assetfactory.flows.recipe import STAGE_ORDER, build_recipe


@pytest.fixture(scope="module", autouse=True)
def _validator():
    skip_without_gltf_validator()  # export validates its GLB inside the stage


def test_the_golden_file_covers_every_stage_of_the_recipe():
    golden = load_golden()
    assert list(STAGE_ORDER) == [c.name for c in golden_recipe().calls]
    assert set(golden["stages"]) == set(STAGE_ORDER)


@pytest.mark.parametrize("name", STAGE_ORDER)
def test_stage_output_matches_its_version_golden(name):
    problems = check_stage(name)
    assert not problems, "\n".join(problems)


def test_a_changed_output_under_the_same_version_is_caught():
    from golden_stages import OVERRIDES

    # the same bake version with a different ORM roughness: a stand-in for a code change
    changed = build_recipe("ar", "silhouette",
                           {**OVERRIDES, "bake": {**OVERRIDES["bake"], "roughness": 0.61}})
    (problem,) = check_stage("bake", recipe=changed)
    assert "texture/orm" in problem and "bump the version" in problem and "make golden" in problem


def test_a_bumped_version_asks_for_regeneration():
    golden = copy.deepcopy(load_golden())
    golden["stages"]["uv"]["version"] = "0.0.1"
    (problem,) = check_stage("uv", golden)
    assert "regenerate" in problem and "0.0.1" in problem


def test_outputs_do_not_depend_on_the_thread_or_core_count():
    """The same check in a process limited to one core and one numba/OpenMP thread."""
    script = Path(__file__).with_name("golden_stages.py")
    env = {**os.environ, "NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    code = ("import os, sys; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
            f"sys.path.insert(0, {str(script.parent)!r}); "
            "import golden_stages; sys.exit(golden_stages.main(['--check']))")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert GOLDEN_FILE.exists()

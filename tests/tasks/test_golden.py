"""Each stage's output on a fixed input matches the golden hash recorded for its version.

See golden_stages.py for the canonical forms and the regeneration command (``make golden``).
"""

from __future__ import annotations

import copy

import pytest
from golden_stages import check_stage, golden_recipe, load_golden

from assetfactory.flows.recipe import STAGE_ORDER, build_recipe
from tests.tools import skip_without_gltf_validator


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


#: The stages with parallel kernels or thread pools (numba prange, open3d's ray casts, KD-tree
#: workers, the uv packer's process pool).
THREADED = ("cleanup", "uv", "bake", "texture")


def test_outputs_do_not_depend_on_the_thread_or_core_count():
    """The threaded stages again in this process with one numba thread and one granted CPU
    (what ``stage_cpus()`` hands open3d, scipy and the uv pool): the same golden hashes."""
    import numba

    from assetfactory.core.stage import cpu_budget, stage_cpus

    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        with cpu_budget(1):
            assert stage_cpus() == 1
            problems = [p for name in THREADED for p in check_stage(name)]
    finally:
        numba.set_num_threads(before)
    assert not problems, "\n".join(problems)

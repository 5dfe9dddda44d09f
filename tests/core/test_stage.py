"""The stage contract itself: frozen options, provenance by the decorator, errors tagged."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pytest

from assetfactory.core.artifacts import load_mesh, save_mesh
from assetfactory.core.errors import InputError, OptionsError
from assetfactory.core.mesh import MeshData
from assetfactory.core.stage import check, stage
from assetfactory.core.types import AssetState, Resources, SkuSpec, StageResult
from assetfactory.flows.recipe import STAGE_ORDER, resolve_stage


@dataclass(frozen=True)
class ShiftOptions:
    dx: float = 1.0

    def __post_init__(self):
        check(abs(self.dx) < 10, "dx must be below 10")


@stage("shift", "3", ShiftOptions, Resources(cpus=0.5, memory_mb=64))
def shift(state: AssetState, options: ShiftOptions) -> StageResult:
    mesh = load_mesh(state, "mesh")
    if mesh.n_faces == 0:
        raise InputError("empty mesh", "give it faces")
    moved = mesh.replace(vertices=mesh.vertices + [options.dx, 0, 0])
    return StageResult({"mesh": save_mesh(state, moved)}, {"shift_dx": options.dx})


def _state(tmp_path, faces=((0, 1, 2),)):
    st = AssetState(sku="s1", spec=SkuSpec(sku="s1"), store_uri=str(tmp_path))
    mesh = MeshData(np.eye(3), np.asarray(faces, np.int64).reshape(-1, 3))
    return dataclasses.replace(st, artifacts={"mesh": save_mesh(st, mesh)})


def test_provenance_is_added_by_the_decorator(tmp_path):
    st = _state(tmp_path)
    before = dataclasses.replace(st)
    res = shift(st, ShiftOptions(2.0))
    assert st == before  # the input state is untouched
    r = res.record
    assert (r.stage, r.version, r.status) == ("shift", "3", "ok")
    assert r.options == {"dx": 2.0} and len(r.options_hash) == 16
    assert r.inputs == {"mesh": st.artifacts["mesh"].sha256}
    assert r.outputs == {"mesh": res.artifacts["mesh"].sha256}
    assert r.duration_s >= 0 and r.host and r.device == "cpu" and r.peak_rss_mb > 0
    nxt = st.apply(res)
    assert np.allclose(load_mesh(nxt, "mesh").vertices[:, 0], [3, 2, 2])
    assert nxt.metrics["shift_dx"] == 2.0 and len(nxt.records) == 1


def test_options_are_validated_and_typed(tmp_path):
    with pytest.raises(OptionsError):
        ShiftOptions(50)
    with pytest.raises(OptionsError):
        shift.options(nope=1)
    with pytest.raises(OptionsError):
        shift(_state(tmp_path), {"dx": 1.0})
    with pytest.raises(TypeError):
        @stage("bad", "1", dict)
        def bad(state, options):  # pragma: no cover - never called
            return StageResult()


def test_asset_errors_name_the_stage_and_sku(tmp_path):
    with pytest.raises(InputError) as exc:
        shift(_state(tmp_path, faces=()), ShiftOptions())
    assert exc.value.stage == "shift" and exc.value.sku == "s1"
    assert "[s1:shift] empty mesh Fix: give it faces" == str(exc.value)


def test_every_pipeline_stage_follows_the_contract():
    for name in STAGE_ORDER:
        st = resolve_stage(f"assetfactory.tasks.{name}:{name}")
        assert st.name == name
        assert dataclasses.is_dataclass(st.options_type)
        assert st.options_type.__dataclass_params__.frozen
        st.default_options()  # defaults are valid
        assert st.resources.cpus > 0
        assert st.__doc__ or st.fn.__doc__ or st.options_type.__doc__


@dataclass(frozen=True)
class NoOptions:
    pass


@stage("reads-material", "1", NoOptions, reads=("material", "fov_deg"))
def reads_material(state: AssetState, options: NoOptions) -> StageResult:
    spec = state.spec
    return StageResult(metrics={"m": f"{spec.material}|{spec.metadata.get('fov_deg')}|"
                                     f"{spec.sku}|{spec.row}"})


@stage("reads-too-much", "1", NoOptions, reads=("material",))
def reads_too_much(state: AssetState, options: NoOptions) -> StageResult:
    what = state.spec.metadata.get("what")
    if what == "title":
        return StageResult(metrics={"m": state.spec.title})
    if what == "dims":
        return StageResult(metrics={"m": str(state.spec.dims_m)})
    if what == "all":
        return StageResult(metrics={"m": str(dict(state.spec.metadata))})
    return StageResult(metrics={"m": state.spec.metadata.get("camera_distance")})


def test_a_stage_sees_exactly_the_columns_it_declares(tmp_path):
    spec = SkuSpec(sku="s1", material="oak", row=3,
                   metadata={"fov_deg": "40", "what": "title", "camera_distance": "3"})
    st = AssetState(sku="s1", spec=spec, store_uri=str(tmp_path))
    assert reads_material.reads == frozenset({"material", "fov_deg"})
    assert reads_material(st).metrics["m"] == "oak|40|s1|3"
    assert st.spec is spec  # the stage saw a view; the state is untouched
    from assetfactory.core.stage import UndeclaredColumn

    # reads-too-much declares 'material' but reads the undeclared column 'what' first
    with pytest.raises(UndeclaredColumn, match="'what'.*reads="):
        reads_too_much(st)


@pytest.mark.parametrize("what,column", [("title", "title"), ("dims", "width_mm"),
                                         ("all", "every column"), ("other", "camera_distance")])
def test_undeclared_reads_fail_naming_the_column(tmp_path, what, column):
    from assetfactory.core.stage import UndeclaredColumn

    st = AssetState(sku="s1", spec=SkuSpec(sku="s1", metadata={"what": what, "camera_distance": 2}),
                    store_uri=str(tmp_path))
    loose = stage("loose", "1", NoOptions, reads=("what",))(reads_too_much.fn)
    with pytest.raises(UndeclaredColumn, match=column):
        loose(st)


def test_beside_takes_a_second_thread_only_on_a_second_granted_cpu():
    """``beside`` runs its work here on one granted CPU and on a thread of its own (with the
    same CPU budget) on two; an error comes back through the future either way."""
    import threading

    from assetfactory.core.stage import beside, cpu_budget, cpu_count, stage_cpus

    here = threading.get_ident()
    seen = lambda: (threading.get_ident(), stage_cpus())
    with cpu_budget(1):
        assert beside(seen).result() == (here, 1)
    with cpu_budget(2):
        thread, cpus = beside(seen).result()
        assert cpus == min(2, cpu_count())
        assert (thread != here) == (cpu_count() >= 2)
        with pytest.raises(ZeroDivisionError):
            beside(lambda: 1 / 0).result()

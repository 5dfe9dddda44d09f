"""Backend registry (built-ins, run-time registrations, entry points) and weight lookup."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from typing import ClassVar

import pytest

from assetfactory.core.errors import MissingWeightsError, OptionsError
from assetfactory.models import registry
from assetfactory.models.base import (
    DenseMesh,
    GenerateRequest,
    Generator,
    config_fields,
    make_config,
)
from assetfactory.models.mesh import MeshImportConfig
from assetfactory.models.silhouette import SilhouetteConfig
from assetfactory.models.weights import resolve_weights, weights_digest


@dataclass(frozen=True)
class EchoConfig:
    """A stand-in plugin backend (found through a fake entry point below)."""

    name: ClassVar[str] = "echo"
    device: str = "cpu"

    def build(self):
        return EchoGenerator()

    def weights_sha256(self):
        return None


class EchoGenerator:
    def generate(self, request: GenerateRequest) -> DenseMesh:  # pragma: no cover - not called
        raise NotImplementedError


def test_builtins_are_found_and_listed():
    assert {"silhouette", "mesh"} <= set(registry.available())
    assert registry.find("silhouette") is SilhouetteConfig
    assert registry.find("mesh") is MeshImportConfig
    assert isinstance(SilhouetteConfig().build(), Generator)
    assert isinstance(MeshImportConfig().build(), Generator)


def test_unknown_backend_lists_the_available_ones():
    with pytest.raises(registry.UnknownBackendError) as err:
        registry.find("hunyuan9")
    assert "hunyuan9" in str(err.value) and "silhouette" in str(err.value)


def test_register_and_unregister():
    registry.register("echo-test", EchoConfig)
    try:
        assert registry.find("echo-test") is EchoConfig
        assert "echo-test" in registry.available()
    finally:
        registry.unregister("echo-test")
    assert "echo-test" not in registry.available()
    with pytest.raises(TypeError):
        registry.register("broken", object)


def test_entry_points_load_lazily(monkeypatch):
    ep = metadata.EntryPoint(name="echo", value=f"{__name__}:EchoConfig", group=registry.GROUP)
    bad = metadata.EntryPoint(name="ghost", value="no_such_module_xyz:Config",
                              group=registry.GROUP)
    monkeypatch.setattr(registry, "_entry_points", lambda: {"echo": ep, "ghost": bad})
    assert {"echo", "ghost", "silhouette"} <= set(registry.available())
    assert registry.find("echo") is EchoConfig
    with pytest.raises(ImportError, match="ghost"):
        registry.find("ghost")


def test_installed_entry_points_declare_the_builtins():
    names = {ep.name for ep in metadata.entry_points(group=registry.GROUP)}
    if not names:
        pytest.skip("assetfactory is not installed with its entry points")
    assert {"silhouette", "mesh"} <= names


def test_importing_the_registry_imports_no_backend():
    code = ("import sys; from assetfactory.models import registry; registry.available(); "
            "print(any(m in sys.modules for m in ('assetfactory.models.silhouette', "
            "'assetfactory.models.mesh')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_make_config_rejects_unknown_fields():
    assert "resolution" in config_fields(SilhouetteConfig)
    assert make_config(SilhouetteConfig, resolution=64).resolution == 64
    with pytest.raises(OptionsError, match="accepts"):
        make_config(SilhouetteConfig, colour="red")


# ---------------------------------------------------------------- weights

def test_local_path_and_env_override(tmp_path, monkeypatch):
    weights = tmp_path / "w"
    weights.mkdir()
    (weights / "model.safetensors").write_bytes(b"abc")
    assert resolve_weights(str(weights)) == weights
    monkeypatch.setenv("AF_TEST_WEIGHTS", str(weights))
    assert resolve_weights("org/not-here", "AF_TEST_WEIGHTS") == weights
    monkeypatch.setenv("AF_TEST_WEIGHTS", str(tmp_path / "nowhere"))
    with pytest.raises(MissingWeightsError, match="AF_TEST_WEIGHTS"):
        resolve_weights("org/not-here", "AF_TEST_WEIGHTS")


def test_hf_cache_snapshot_is_found(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    repo = tmp_path / "hf" / "hub" / "models--acme--shape-gen"
    snap = repo / "snapshots" / "0123abc"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abc\n")
    assert resolve_weights("acme/shape-gen") == snap
    assert resolve_weights("acme/shape-gen", required=("config.json",)) == snap
    with pytest.raises(MissingWeightsError, match="model.ckpt"):
        resolve_weights("acme/shape-gen", required=("model.ckpt",))


def test_missing_weights_say_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("AF_TEST_WEIGHTS", raising=False)
    with pytest.raises(MissingWeightsError) as err:
        resolve_weights("acme/absent", "AF_TEST_WEIGHTS")
    msg = str(err.value)
    assert "never downloaded" in msg and "AF_TEST_WEIGHTS" in msg
    assert str(tmp_path / "hf" / "hub" / "models--acme--absent") in msg
    assert "huggingface-cli download acme/absent" in msg
    with pytest.raises(MissingWeightsError, match="Copy the weights"):
        resolve_weights(str(tmp_path / "local" / "weights.ckpt"))


def test_weights_digest_tracks_content(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"one")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.bin").write_bytes(b"two")
    first = weights_digest(tmp_path)
    assert first == weights_digest(tmp_path) and len(first) == 64
    (tmp_path / "sub" / "b.bin").write_bytes(b"three")
    assert weights_digest(tmp_path) != first
    assert weights_digest(tmp_path / "a.bin") != first


def test_backends_declare_resources():
    from assetfactory.core.types import Resources
    from assetfactory.models.base import backend_resources

    assert backend_resources(SilhouetteConfig()) == Resources(cpus=1)
    assert backend_resources(MeshImportConfig()) == Resources(cpus=1)

    @dataclass(frozen=True)
    class OldStyle:  # no resources(): judged by its device
        name: ClassVar[str] = "old"
        device: str = "cuda:0"

    assert backend_resources(OldStyle()) == Resources(cpus=1, gpus=1)
    assert backend_resources(OldStyle(device="cpu")) == Resources(cpus=1)

    @dataclass(frozen=True)
    class Wrong:
        name: ClassVar[str] = "wrong"

        def resources(self):
            return {"gpus": 1}

    with pytest.raises(TypeError, match="not Resources"):
        backend_resources(Wrong())

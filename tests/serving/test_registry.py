"""ModelRegistry on real version folders, in this process: model control (poll or explicit),
load and unload, and the loaded-versions bound."""

import json

import pytest

from serving.errors import InvalidInput, ModelNotFound
from serving.registry import ModelRegistry
from serving.runtime.session import SessionConfig
from tests.serving.synthetic import publish_classifier

CPU = SessionConfig(providers=["CPUExecutionProvider"])


def loaded(registry: ModelRegistry) -> dict[str, list[int]]:
    return {name: sorted(m.runners) for name, m in registry.models().items()}


def test_explicit_mode_loads_only_what_it_is_told(tmp_path):
    publish_classifier(tmp_path, "a")
    publish_classifier(tmp_path, "b")
    registry = ModelRegistry(tmp_path, CPU, model_control="explicit")
    registry.refresh()
    assert loaded(registry) == {}
    with pytest.raises(ModelNotFound, match="not loaded"):
        registry.get_or_load("a")
    registry.load("a")
    assert loaded(registry) == {"a": [1]}
    publish_classifier(tmp_path, "a", seed=1)
    registry.refresh()  # a loaded model is kept current; b stays unloaded
    assert loaded(registry) == {"a": [2]}
    registry.unload("a")
    registry.refresh()
    assert loaded(registry) == {} and registry.lookup("a") is None


def test_load_and_unload_refuse_unknown_names_and_give_the_reason(tmp_path):
    publish_classifier(tmp_path, "a")
    registry = ModelRegistry(tmp_path, CPU, model_control="explicit")
    with pytest.raises(ModelNotFound, match="unknown model"):
        registry.load("nope")
    with pytest.raises(InvalidInput):
        registry.unload("../a")
    registry.unload("a")  # known but not loaded: nothing to do
    manifest = tmp_path / "a" / "1" / "manifest.json"
    data = json.loads(manifest.read_text())
    data["files"]["model.onnx"]["sha256"] = "0" * 64
    manifest.write_text(json.dumps(data))
    with pytest.raises(ModelNotFound, match="no loadable version: .*sha256 of model.onnx"):
        registry.load("a")


def test_poll_mode_loads_every_model_and_unload_lasts_until_the_next_scan(tmp_path):
    publish_classifier(tmp_path, "a")
    registry = ModelRegistry(tmp_path, CPU)
    registry.refresh()
    registry.unload("a")
    assert loaded(registry) == {}
    registry.refresh()
    assert loaded(registry) == {"a": [1]}


def test_the_latest_is_never_evicted(tmp_path):
    for seed in range(3):
        publish_classifier(tmp_path, "a", seed=seed)
    registry = ModelRegistry(tmp_path, CPU, max_loaded_versions=1)
    registry.refresh()
    assert registry.get_or_load("a", 1).version == 1  # served to its caller, then unloaded
    assert loaded(registry) == {"a": [3]}
    assert registry.get_or_load("a").version == 3


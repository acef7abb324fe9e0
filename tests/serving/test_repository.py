import json
import threading

import onnx
import pytest

from serving.repository import (
    Manifest,
    ManifestError,
    VersionWriter,
    model_names,
    verify_version,
    version_numbers,
)
from serving.repository.triton_config import render_triton_config
from tests.serving.synthetic import classifier_graph, classifier_manifest, publish_classifier


def test_publishing_twice_gives_versions_1_and_2(tmp_path):
    first = publish_classifier(tmp_path, "m")
    second = publish_classifier(tmp_path, "m", seed=1)
    assert (first.name, second.name) == ("1", "2")
    assert version_numbers(tmp_path / "m") == [1, 2]
    manifest = verify_version(second)
    assert manifest.version == 2 and manifest.name == "m"
    assert set(manifest.files) == {"model.onnx"}
    assert len(manifest.files["model.onnx"]["sha256"]) == 64


def test_published_files_are_readable_by_other_users(tmp_path):
    path = publish_classifier(tmp_path, "m")
    for f in (path / "manifest.json", tmp_path / "m" / "config.pbtxt",
              tmp_path / "m" / "labels.txt"):
        assert f.stat().st_mode & 0o044 == 0o044, f


def test_interrupted_publish_leaves_no_version(tmp_path):
    with pytest.raises(RuntimeError), VersionWriter(tmp_path, "m") as w:
        onnx.save(classifier_graph(), w.path / "model.onnx")
        raise RuntimeError("killed while exporting")
    assert version_numbers(tmp_path / "m") == []
    assert list((tmp_path / "m").iterdir()) == []


def test_staging_folders_are_invisible_to_readers(tmp_path):
    with VersionWriter(tmp_path, "m") as w:
        onnx.save(classifier_graph(), w.path / "model.onnx")
        assert w.path.name.startswith(".")
        assert model_names(tmp_path) == ["m"] and version_numbers(tmp_path / "m") == []
        w.commit(classifier_manifest())
    assert version_numbers(tmp_path / "m") == [1]


def test_invalid_manifest_is_refused_before_publishing(tmp_path):
    bad = classifier_manifest()
    bad["labels"] = ["only", "three", "labels"]
    with pytest.raises(ManifestError, match="10 columns"), VersionWriter(tmp_path, "m") as w:
        onnx.save(classifier_graph(), w.path / "model.onnx")
        w.commit(bad)
    assert version_numbers(tmp_path / "m") == []


def test_concurrent_publishers_get_distinct_versions(tmp_path):
    threads = [threading.Thread(target=publish_classifier, args=(tmp_path, "m"),
                                kwargs={"seed": i}) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert version_numbers(tmp_path / "m") == [1, 2, 3, 4, 5, 6]
    for v in range(1, 7):
        verify_version(tmp_path / "m" / str(v))


def test_tampered_file_fails_verification(tmp_path):
    path = publish_classifier(tmp_path, "m")
    data = bytearray((path / "model.onnx").read_bytes())
    data[-1] ^= 1
    (path / "model.onnx").write_bytes(data)
    with pytest.raises(ManifestError, match="sha256 of model.onnx"):
        verify_version(path)
    # a file of another size is refused from its size, before any hashing
    (path / "model.onnx").write_bytes(data + b"\0")
    with pytest.raises(ManifestError, match="model.onnx is .* bytes, manifest says"):
        verify_version(path)


def test_missing_file_and_broken_json_fail_verification(tmp_path):
    path = publish_classifier(tmp_path, "m")
    (path / "model.onnx").unlink()
    with pytest.raises(ManifestError, match="missing"):
        verify_version(path)
    (path / "manifest.json").write_text("{not json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        verify_version(path)


def test_file_outside_the_version_is_refused(tmp_path):
    path = publish_classifier(tmp_path, "m")
    data = json.loads((path / "manifest.json").read_text())
    data["files"]["../../etc/passwd"] = {"sha256": "0" * 64}
    (path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ManifestError, match="outside"):
        verify_version(path)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.pop("task"), "task"),
    (lambda d: d.update(task="regress"), "unknown task"),
    (lambda d: d.update(parity={"max_abs_diff": float("nan")}), "parity"),
    (lambda d: d["inputs"][0].update(dtype="complex64"), "dtype"),
    (lambda d: d.update(labels=[]), "labels"),
])
def test_manifest_validation(mutate, message):
    data = classifier_manifest()
    data["name"] = "m"
    mutate(data)
    with pytest.raises(ManifestError, match=message):
        Manifest.from_dict(data)


def test_invalid_model_names_are_refused(tmp_path):
    for name in ["", "../x", ".hidden", "a/b"]:
        with pytest.raises(ValueError):
            VersionWriter(tmp_path, name)


def test_triton_config(tmp_path):
    publish_classifier(tmp_path, "digits")
    config = (tmp_path / "digits" / "config.pbtxt").read_text()
    assert 'platform: "onnxruntime_onnx"' in config
    assert 'name: "pixels"' in config and "dims: [ 1, 28, 28 ]" in config
    assert "dims: [ 10 ]" in config and "max_batch_size: 256" in config
    labels = (tmp_path / "digits" / "labels.txt").read_text().split()
    assert labels == [f"class-{i}" for i in range(10)]
    two_graphs = Manifest.from_dict({**classifier_manifest(), "name": "s",
                                     "graphs": {"encoder": "e.onnx", "decoder": "d.onnx"}})
    assert render_triton_config(two_graphs) is None


def test_unknown_manifest_keys_travel_through(tmp_path):
    data = {**classifier_manifest(), "name": "m", "quantization": {"type": "int8-dynamic"}}
    manifest = Manifest.from_dict(data)
    assert manifest.to_dict()["quantization"] == {"type": "int8-dynamic"}
    assert "extra" not in manifest.to_dict()

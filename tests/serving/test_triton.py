"""The Triton form of the repository (serving.triton): exported, then served by a real
tritonserver (the nvidia-pytriton wheel's) beside this server, both asked the same things
with the same standard client (tritonclient.http); the answers must be equal.

tritonclient.http, not tritonclient.grpc: the gRPC client's protos define the same `inference.*`
symbols as this server's, which protobuf allows once per process.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from serving.repository import verify_version
from serving.triton.backend import VERSION_FOLDER, TritonModel
from serving.triton.wheel import LocalTriton, ensure_env
from tests.conftest import ROOT
from tests.deploy.files import DOCKERFILES, parse_dockerfile
from tests.serving.server_process import ServerProcess
from tests.serving.synthetic import publish_classifier, publish_tagger
from tests.serving.synthetic_seq2seq import SENTENCES, publish_captioner, publish_translator

http = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException  # noqa: E402

CLASSIFIER, TAGGER, TRANSLATOR, CAPTIONER = "tiny-classifier", "tiny-tagger", "toy-translate", \
    "toy-caption"
MODELS = (CLASSIFIER, TAGGER, TRANSLATOR, CAPTIONER)
QUEUE_DELAY_US = 20_000
# inputs and outputs with only the batch axis: Triton's form is [N, 1] (serving.triton.config)
ROW_TENSORS = {"text", "image", "translation", "caption", "target_lengths", "source_lengths",
               "caption_lengths", "scores", "finished"}


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repository = tmp_path_factory.mktemp("triton") / "models"
    publish_classifier(repository, CLASSIFIER)
    publish_tagger(repository, TAGGER, [0.3, 0.5, 0.7, 0.5])
    # a queue delay of its own, so that concurrent calls reliably meet in Triton's batcher
    publish_translator(repository, TRANSLATOR,
                       serving={"dynamic_batching": {"max_queue_delay_us": QUEUE_DELAY_US}})
    publish_captioner(repository, CAPTIONER)
    return repository


def export(repository: Path, out: Path, *args: str) -> list[dict]:
    result = subprocess.run([sys.executable, "-m", "serving.triton", "export", "--repository",
                             str(repository), "--out", str(out), *args], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.fixture(scope="module")
def triton_repository(repository: Path) -> Path:
    out = repository.parent / "triton-repo"
    exported = export(repository, out, "--form", "python", "--smallserve-path", str(ROOT))
    assert {(m["name"], m["form"]) for m in exported} == {(n, "python") for n in MODELS}
    return out


# ---------------------------------------------------------------- the export, without Triton

def test_python_form_carries_the_verified_version_and_a_batching_config(triton_repository):
    for name in MODELS:
        version = triton_repository / name / "1"
        assert (version / "model.py").read_text() == \
            (ROOT / "serving" / "triton" / "model.py").read_text()
        assert verify_version(version / VERSION_FOLDER).name == name
        config = (triton_repository / name / "config.pbtxt").read_text()
        assert 'backend: "python"' in config and "dynamic_batching {" in config
        assert f'string_value: "{ROOT}"' in config  # smallserve_path
    translate = (triton_repository / TRANSLATOR / "config.pbtxt").read_text()
    assert f"max_queue_delay_microseconds: {QUEUE_DELAY_US}" in translate  # the manifest's
    assert 'name: "text"\n    data_type: TYPE_STRING\n    dims: [ 1 ]\n' \
        '    reshape: { shape: [ ] }' in translate
    classify = (triton_repository / CLASSIFIER / "config.pbtxt").read_text()
    # the pixel contract of this server, not the graph's float input
    assert 'name: "pixels"\n    data_type: TYPE_UINT8\n    dims: [ 1, 28, 28 ]' in classify
    assert 'label_filename: "labels.txt"' in classify
    assert (triton_repository / CLASSIFIER / "labels.txt").read_text().split()[0] == "class-0"


def test_python_backend_options_become_config_parameters(repository, tmp_path):
    env = "$$TRITON_MODEL_DIRECTORY/../smallserve-env.tar.gz"
    export(repository, tmp_path / "out", "--form", "python", "--model", TRANSLATOR,
           "--instances", "2", "--intra-op-threads", "1", "--execution-env", env)
    assert [p.name for p in (tmp_path / "out").iterdir()] == [TRANSLATOR]
    config = (tmp_path / "out" / TRANSLATOR / "config.pbtxt").read_text()
    assert "instance_group [ { kind: KIND_CPU count: 2 } ]" in config
    assert 'key: "intra_op_threads" value: { string_value: "1" }' in config
    assert f'key: "EXECUTION_ENV_PATH" value: {{ string_value: "{env}" }}' in config
    assert "smallserve_path" not in config


def test_onnx_form_is_the_graph_for_single_graph_models_only(repository, tmp_path):
    out = tmp_path / "onnx-form"
    forms = {m["name"]: m["form"] for m in export(repository, out)}
    assert forms == {CLASSIFIER: "onnx", TAGGER: "onnx", TRANSLATOR: "python",
                     CAPTIONER: "python"}
    assert verify_version(out / CLASSIFIER / "1").task == "classify"
    config = (out / CLASSIFIER / "config.pbtxt").read_text()
    assert 'platform: "onnxruntime_onnx"' in config and "dynamic_batching {" in config


def test_newest_version_that_loads_is_exported(tmp_path):
    repository = tmp_path / "models"
    publish_classifier(repository, "m", seed=0)
    broken = publish_classifier(repository, "m", seed=1)
    (broken / "model.onnx").write_bytes(b"not the graph the manifest hashed")
    exported = export(repository, tmp_path / "out", "--form", "python")
    assert [(m["name"], m["version"]) for m in exported] == [("m", 1)]
    assert not (tmp_path / "out" / "m" / "2").exists()
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]


def test_a_model_without_a_loadable_version_fails_the_export(tmp_path):
    repository = tmp_path / "models"
    broken = publish_classifier(repository, "m")
    (broken / "model.onnx").write_bytes(b"x")
    result = subprocess.run([sys.executable, "-m", "serving.triton", "export", "--repository",
                             str(repository), "--out", str(tmp_path / "out")], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "m: not exported: version 1:" in result.stderr
    assert not (tmp_path / "out" / "m").exists()


# ---------------------------------------------------------------- execute() with a fake Triton

class FakeTensor:
    def __init__(self, name: str, array: np.ndarray) -> None:
        self._name, self.array = name, array

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray:
        return self.array


class FakeRequest:
    def __init__(self, inputs: dict[str, np.ndarray], parameters: dict | None = None,
                 outputs: tuple[str, ...] = ()) -> None:
        self._inputs, self._parameters, self._outputs = inputs, parameters or {}, outputs

    def inputs(self) -> list[FakeTensor]:
        return [FakeTensor(k, v) for k, v in self._inputs.items()]

    def parameters(self) -> str:
        return json.dumps(self._parameters)

    def requested_output_names(self) -> list[str]:
        return list(self._outputs)


class FakeTritonError:
    INVALID_ARG, INTERNAL, NOT_FOUND, UNAVAILABLE, CANCELLED = range(5)

    def __init__(self, message: str, code: int) -> None:
        self.message, self.code = message, code


FAKE_PB = SimpleNamespace(
    Tensor=FakeTensor, TritonError=FakeTritonError,
    InferenceResponse=lambda output_tensors=(), error=None: SimpleNamespace(
        tensors={t.name(): t.array for t in output_tensors}, error=error))


def texts(*items: str) -> np.ndarray:
    return np.array([t.encode() for t in items], dtype=object)


def test_execute_checks_each_request_alone_and_merges_those_that_agree(triton_repository):
    model = TritonModel(triton_repository / TRANSLATOR / "1" / VERSION_FOLDER, FAKE_PB)
    runs = []
    run = model.strategy.run
    model.strategy.run = lambda payloads: runs.append(len(payloads)) or run(payloads)
    requests = [FakeRequest({"text": texts(SENTENCES[0])}, {"beam_size": 1}),
                FakeRequest({"text": texts("")}, {"beam_size": 1}),
                FakeRequest({"text": texts(SENTENCES[1])}, {"beam_size": "1"},
                            ("token_ids", "attention")),
                FakeRequest({"text": texts(SENTENCES[0])}, {"beam_size": 3})]
    responses = model.execute(requests)
    assert runs == [2, 1]  # the two greedy calls of one length bucket merged; beam 3 alone
    assert responses[1].error.code == FakeTritonError.INVALID_ARG
    assert "empty" in responses[1].error.message
    assert set(responses[2].tensors) == {"token_ids", "attention"}
    runner = model.runner
    for i in (0, 2, 3):
        alone = runner.outputs(runner.batch_strategy().run([runner.check(
            requests[i]._inputs, requests[i]._parameters)])[0], list(responses[i].tensors))
        for name, array in responses[i].tensors.items():
            np.testing.assert_array_equal(array, alone[name], err_msg=name)


def test_execute_answers_a_failed_run_with_errors_not_an_exception(triton_repository):
    model = TritonModel(triton_repository / CLASSIFIER / "1" / VERSION_FOLDER, FAKE_PB)

    def fail(payloads: list) -> list:
        raise RuntimeError("onnxruntime fell over")

    model.strategy.run = fail
    pixels = np.zeros((1, 1, 28, 28), np.uint8)
    responses = model.execute([FakeRequest({"pixels": pixels}), FakeRequest({"pixels": pixels})])
    assert [r.error.code for r in responses] == [FakeTritonError.INTERNAL] * 2


# ---------------------------------------------------------------- a real tritonserver

@pytest.fixture(scope="session")
def triton_wheel() -> None:
    """The wheel's tritonserver, its environment created on first use (a download); skipped
    only where it cannot run."""
    reason = ensure_env()
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def servers(repository, triton_repository, tmp_path_factory, triton_wheel):
    """(Triton's client, this server's client): both speak the Open Inference Protocol over
    HTTP; this server runs on the repository Triton's form was exported from."""
    ours = ServerProcess(repository).start(wait=False)
    triton = LocalTriton(triton_repository, tmp_path_factory.mktemp("tritonserver"))
    try:
        triton.start()
        ours.wait_serving()
        yield (http.InferenceServerClient(triton.http_url, concurrency=8),
               http.InferenceServerClient(ours.http_url.removeprefix("http://")))
    finally:
        triton.stop()
        ours.__exit__()


def request_of(inputs: dict[str, tuple[np.ndarray, str]], triton: bool) -> list:
    tensors = []
    for name, (array, datatype) in inputs.items():
        if triton and name in ROW_TENSORS:
            array = array.reshape(-1, 1)
        tensor = http.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    return tensors


def answer_of(result, triton: bool) -> dict:
    """Outputs by name, with Triton's [N, 1] row tensors as this server's [N]."""
    answer = {o["name"]: result.as_numpy(o["name"]) for o in result.get_response()["outputs"]}
    return {n: a.reshape(-1) if triton and n in ROW_TENSORS else a for n, a in answer.items()}


def ask(client, model: str, inputs: dict[str, tuple[np.ndarray, str]], triton: bool,
        parameters: dict | None = None, outputs: list | None = None) -> dict:
    """One call; outputs: names, or (name, class_count) for the classification extension."""
    wanted = [http.InferRequestedOutput(o) if isinstance(o, str) else
              http.InferRequestedOutput(o[0], class_count=o[1]) for o in outputs or []]
    result = client.infer(model, request_of(inputs, triton), parameters=parameters,
                          outputs=wanted or None)
    return answer_of(result, triton)


def both(servers, model, inputs, parameters=None, outputs=None) -> tuple[dict, dict]:
    triton, ours = servers
    return (ask(triton, model, inputs, True, parameters, outputs),
            ask(ours, model, inputs, False, parameters, outputs))


def assert_same(theirs: dict, ours: dict, floats: set[str]) -> None:
    assert set(theirs) == set(ours)
    for name, array in ours.items():
        assert theirs[name].shape == array.shape, name
        if name in floats:
            np.testing.assert_allclose(theirs[name], array, atol=1e-6, rtol=0, err_msg=name)
        else:
            np.testing.assert_array_equal(theirs[name], array, err_msg=name)


def test_triton_serves_every_task_with_dynamic_batching(servers):
    triton, _ = servers
    index = triton.get_model_repository_index()
    assert {(m["name"], m["state"]) for m in index} == {(n, "READY") for n in MODELS}
    for name in MODELS:
        config = triton.get_model_config(name)
        assert config["backend"] == "python" and "dynamic_batching" in config


@pytest.mark.parametrize("model", [CLASSIFIER, TAGGER])
def test_image_model_probabilities_equal_ours(servers, model):
    pixels = np.random.default_rng(0).integers(0, 256, (5, 1, 28, 28)).astype(np.uint8)
    theirs, ours = both(servers, model, {"pixels": (pixels, "UINT8")})
    assert_same(theirs, ours, {"probabilities", "logits"})
    if model == CLASSIFIER:
        np.testing.assert_allclose(theirs["probabilities"].sum(1), 1, atol=1e-6)
    # the classification extension: Triton applies it to the model's output itself
    theirs, ours = both(servers, model, {"pixels": (pixels, "UINT8")},
                        outputs=[("probabilities", 3)])
    assert theirs["probabilities"].shape == (5, 3)
    for their_row, our_row in zip(theirs["probabilities"], ours["probabilities"], strict=True):
        their_top = [item.decode().split(":") for item in their_row]
        our_top = [item.decode().split(":") for item in our_row]
        assert [t[1:] for t in their_top] == [o[1:] for o in our_top]  # index, label
        np.testing.assert_allclose([float(t[0]) for t in their_top],
                                   [float(o[0]) for o in our_top], atol=1e-6)


def check_attention_rows(attention: np.ndarray, lengths: np.ndarray) -> None:
    """Every generated token's attention is a distribution over the source (or the grid)."""
    flat = attention.reshape(*attention.shape[:2], -1)
    for row, n in zip(flat, lengths, strict=True):
        np.testing.assert_allclose(row[:n].sum(-1), 1, atol=1e-5)
        assert not row[n:].any()


@pytest.mark.parametrize("parameters", [{"beam_size": 1}, {"beam_size": 3, "max_length": 6}])
def test_translations_equal_ours(servers, parameters):
    sentences = texts(*SENTENCES[:4])
    theirs, ours = both(servers, TRANSLATOR, {"text": (sentences, "BYTES")}, parameters)
    assert_same(theirs, ours, {"token_probabilities", "attention", "scores"})
    check_attention_rows(theirs["attention"], theirs["target_lengths"])
    for row, n in zip(theirs["attention"], theirs["source_lengths"], strict=True):
        assert not row[:, n:].any()  # padding gets no weight


def png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


@pytest.mark.parametrize("parameters", [{"beam_size": 1}, {"beam_size": 2}])
def test_captions_equal_ours(servers, parameters):
    rng = np.random.default_rng(1)
    images = np.array([png(rng.integers(0, 256, (32, 32)).astype(np.uint8))
                       for _ in range(3)], dtype=object)
    theirs, ours = both(servers, CAPTIONER, {"image": (images, "BYTES")}, parameters)
    assert_same(theirs, ours, {"token_probabilities", "attention", "scores"})
    check_attention_rows(theirs["attention"], theirs["caption_lengths"])


def test_concurrent_calls_batched_by_triton_equal_ours_one_by_one(servers):
    triton, ours = servers
    calls = [SENTENCES[i % len(SENTENCES)] for i in range(16)]
    wanted = [http.InferRequestedOutput(n) for n in ("token_ids", "attention")]
    before = _executions(triton)
    pending = [triton.async_infer(TRANSLATOR, request_of({"text": (texts(s), "BYTES")}, True),
                                  parameters={"beam_size": 1}, outputs=wanted) for s in calls]
    theirs = [answer_of(p.get_result(), True) for p in pending]
    for sentence, answer in zip(calls, theirs, strict=True):
        assert_same(answer, ask(ours, TRANSLATOR, {"text": (texts(sentence), "BYTES")}, False,
                                {"beam_size": 1}, ["token_ids", "attention"]), {"attention"})
    requests, executions = (a - b for a, b in zip(_executions(triton), before, strict=True))
    assert requests == len(calls) and executions < requests  # merged runs


def _executions(client) -> tuple[int, int]:
    """Requests answered and model runs (execute() calls) of the translator, so far."""
    stats, = client.get_inference_statistics(TRANSLATOR)["model_stats"]
    return int(stats["inference_stats"]["success"]["count"]), int(stats["execution_count"])


@pytest.mark.parametrize("model, inputs, parameters, message", [
    (TRANSLATOR, {"text": (texts(""), "BYTES")}, None, "empty"),
    (TRANSLATOR, {"text": (texts("hola"), "BYTES")}, {"beam_size": "many"}, "beam_size"),
    (TRANSLATOR, {"text": (texts("hola"), "BYTES")}, {"beam_size": 1000}, "beam_size"),
    (CAPTIONER, {"image": (np.array([b"not an image"], dtype=object), "BYTES")}, None, ""),
    (CLASSIFIER, {"pixels": (np.zeros((1, 1, 28, 28), np.float32), "FP32")}, None, "FP32"),
])
def test_bad_input_gets_an_error_and_the_model_keeps_serving(servers, model, inputs,
                                                             parameters, message):
    triton, ours = servers
    for client, is_triton in ((triton, True), (ours, False)):
        with pytest.raises(InferenceServerException) as error:
            ask(client, model, inputs, is_triton, parameters)
        assert error.value.status() == "400", error.value
        assert message in str(error.value)
    assert triton.is_server_live() and triton.is_model_ready(model)
    good = {TRANSLATOR: {"text": (texts(SENTENCES[0]), "BYTES")},
            CAPTIONER: {"image": (np.array([png(np.zeros((32, 32), np.uint8))],
                                           dtype=object), "BYTES")},
            CLASSIFIER: {"pixels": (np.zeros((1, 1, 28, 28), np.uint8), "UINT8")}}[model]
    theirs, ours_answer = both(servers, model, good)
    assert_same(theirs, ours_answer, {"token_probabilities", "attention", "scores",
                                      "probabilities", "logits"})


def test_the_triton_images_command_exports_the_repository_and_serves_it(tmp_path, triton_wheel):
    """docker/triton-serve.sh as the image runs it (compose profile `triton`), with the wheel's
    tritonserver and no smallserve_path: the python backend imports the installed package."""
    repository = tmp_path / "models"
    publish_classifier(repository, CLASSIFIER)
    image = parse_dockerfile(DOCKERFILES["triton"])
    script = image.source_of(image.final.last("CMD").exec_form()[0])
    env = {"SMALLSERVE_REPOSITORY": str(repository), "PYTHON": sys.executable,
           "TRITON_MODEL_REPOSITORY": str(tmp_path / "triton-repo")}
    with LocalTriton(None, tmp_path, launcher=["sh", str(script)], env=env) as triton:
        client = http.InferenceServerClient(triton.http_url)
        assert client.get_model_config(CLASSIFIER)["backend"] == "python"
        pixels = np.zeros((2, 1, 28, 28), np.uint8)
        probabilities = ask(client, CLASSIFIER, {"pixels": (pixels, "UINT8")}, True)[
            "probabilities"]
        np.testing.assert_allclose(probabilities.sum(1), 1, atol=1e-6)

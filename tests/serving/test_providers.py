import logging

import pytest

from serving.runtime.providers import (
    CPU,
    CUDA,
    ProviderError,
    choose_providers,
    parse_provider_list,
)
from serving.runtime.session import SessionConfig, create_session


@pytest.mark.parametrize(("available", "requested", "chosen"), [
    ([CPU], None, [CPU]),
    ([CUDA, CPU], None, [CUDA, CPU]),
    (["TensorrtExecutionProvider", CUDA, CPU], None, [CUDA, CPU]),
    (["AzureExecutionProvider", CPU], None, [CPU]),
    ([CUDA, CPU], [CPU], [CPU]),
    ([CUDA, CPU], [CPU, CUDA], [CPU, CUDA]),
    ([CPU], [CUDA, CPU], [CPU]),  # asked for CUDA first; this build has only the CPU
])
def test_choose_providers(available, requested, chosen):
    assert choose_providers(available, requested) == chosen


def test_requesting_only_missing_providers_is_an_error():
    with pytest.raises(ProviderError, match="CUDAExecutionProvider"):
        choose_providers([CPU], [CUDA])


def test_parse_provider_list():
    assert parse_provider_list("auto") is None
    assert parse_provider_list("") is None
    assert parse_provider_list(None) is None
    assert parse_provider_list("cuda, cpu") == [CUDA, CPU]
    assert parse_provider_list("CPUExecutionProvider") == [CPU]


class FakeSession:
    """Stands in for onnxruntime.InferenceSession where CUDA is absent from this machine."""

    def __init__(self, providers):
        self._providers = providers

    def get_providers(self):
        return self._providers


def test_cuda_session_failure_falls_back_to_cpu(tmp_path, caplog):
    calls = []

    def factory(path, sess_options, providers):
        calls.append(providers)
        if CUDA in providers:
            raise RuntimeError("CUDA failure 100: no CUDA-capable device is detected")
        return FakeSession(providers)

    with caplog.at_level(logging.WARNING):
        _, active = create_session(tmp_path / "m.onnx", None, SessionConfig(),
                                   available=[CUDA, CPU], factory=factory)
    assert calls == [[CUDA, CPU], [CPU]]
    assert active == [CPU]
    assert "falling back" in caplog.text


def test_cuda_silently_dropped_is_reported(tmp_path, caplog):
    # onnxruntime drops a provider whose library fails to load and runs on the rest
    def factory(path, sess_options, providers):
        return FakeSession([CPU])

    with caplog.at_level(logging.WARNING):
        _, active = create_session(tmp_path / "m.onnx", None, SessionConfig(),
                                   available=[CUDA, CPU], factory=factory)
    assert active == [CPU]
    assert "failed to initialise" in caplog.text


def test_cpu_failure_is_not_hidden(tmp_path):
    def factory(path, sess_options, providers):
        raise RuntimeError("corrupt model")

    with pytest.raises(RuntimeError, match="corrupt model"):
        create_session(tmp_path / "m.onnx", None, SessionConfig(), available=[CPU],
                       factory=factory)


def test_real_session_on_this_machine(tmp_path):
    import onnx

    from tests.serving.synthetic import classifier_graph

    path = tmp_path / "m.onnx"
    onnx.save(classifier_graph(), path)
    session, active = create_session(path, None, SessionConfig(intra_op_threads=1))
    assert active[-1] == CPU
    assert session.get_inputs()[0].name == "pixels"

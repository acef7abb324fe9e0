"""config.pbtxt is read with Triton's own model-config schema, so Triton loads the repository."""

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2


def test_config_pbtxt_parses_with_tritons_schema(oip_repository):
    text = (oip_repository / "mnist" / "config.pbtxt").read_text()
    config = text_format.Parse(text, model_config_pb2.ModelConfig())
    assert config.name == "mnist" and config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == 256
    assert [(i.name, i.data_type, list(i.dims)) for i in config.input] == [
        ("pixels", model_config_pb2.TYPE_FP32, [1, 28, 28])]
    assert [o.name for o in config.output] == ["probabilities", "logits"]
    assert config.output[0].label_filename == "labels.txt"
    assert (oip_repository / "mnist" / "labels.txt").read_text().split() == \
        [str(i) for i in range(10)]
    assert config.version_policy.latest.num_versions == 1

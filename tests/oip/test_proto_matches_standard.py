"""Our proto/inference/*.proto must agree with the standard client's on every shared field."""

import subprocess
import sys
from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool
from tritonclient.grpc import model_config_pb2, service_pb2  # noqa: F401 (registers both)

from tests.conftest import ROOT


def our_pool(tmp_path: Path) -> descriptor_pool.DescriptorPool:
    out = tmp_path / "ours.pb"
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{ROOT / 'proto'}",
                    f"--descriptor_set_out={out}", "--include_imports",
                    "inference/grpc_service.proto"], check=True)
    files = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    pool = descriptor_pool.DescriptorPool()  # apart from the default pool tritonclient uses
    for f in files.file:
        pool.Add(f)
    return pool


def fields(message) -> dict:
    return {f.name: (f.number, f.type, f.is_repeated,
                     f.message_type.full_name if f.message_type else None)
            for f in message.fields}


def all_messages(message):
    yield message
    for nested in message.nested_types:
        yield from all_messages(nested)


def test_every_message_and_field_matches_the_standard(tmp_path):
    pool = our_pool(tmp_path)
    standard = service_pb2.DESCRIPTOR.pool
    checked = 0
    for filename in ("inference/grpc_service.proto", "inference/model_config.proto"):
        ours_file = pool.FindFileByName(filename)
        assert ours_file.package == "inference"
        for top in ours_file.message_types_by_name.values():
            for ours in all_messages(top):
                theirs = standard.FindMessageTypeByName(ours.full_name)  # KeyError: invented
                for name, spec in fields(ours).items():
                    assert name in fields(theirs), f"{ours.full_name}.{name} is not standard"
                    assert spec == fields(theirs)[name], f"{ours.full_name}.{name} differs"
                    checked += 1
    assert checked > 100


def test_service_methods_match_the_standard(tmp_path):
    pool = our_pool(tmp_path)
    ours = pool.FindServiceByName("inference.GRPCInferenceService")
    theirs = service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    for method in ours.methods:
        standard = theirs.methods_by_name[method.name]
        assert method.input_type.full_name == standard.input_type.full_name
        assert method.output_type.full_name == standard.output_type.full_name
    assert {m.name for m in ours.methods} >= {
        "ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata",
        "ModelInfer", "ModelConfig", "ModelStatistics", "RepositoryIndex"}


def test_enums_match_the_standard(tmp_path):
    pool = our_pool(tmp_path)
    for name in ("inference.DataType", "inference.ModelInput.Format",
                 "inference.ModelInstanceGroup.Kind"):
        ours = pool.FindEnumTypeByName(name)
        theirs = model_config_pb2.DESCRIPTOR.pool.FindEnumTypeByName(name)
        assert {v.name: v.number for v in ours.values}.items() <= \
            {v.name: v.number for v in theirs.values}.items()

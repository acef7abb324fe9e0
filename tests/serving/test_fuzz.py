"""Random and malformed requests for every RPC of both APIs against one real server.

Every call must end in a gRPC status the client can act on: never UNKNOWN or INTERNAL (an
unhandled error), never a missed deadline (a hang) or UNAVAILABLE (a crash), and a valid call
right after each one must succeed. SMALLSERVE_FUZZ_SCALE multiplies the number of examples.
"""

import os
from collections import Counter, defaultdict
from pathlib import Path

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from serving.api.generated.inference import grpc_service_pb2 as oip
from serving.api.generated.smallserve.v1 import model_service_pb2 as pb
from serving.client.messages import classify_request
from serving.oip.tensors import encode_bytes_tensor
from tests.serving import fuzz_requests as fr
from tests.serving.fuzz_requests import encode
from tests.serving.server_process import ServerProcess
from tests.serving.synthetic import publish_classifier, publish_tagger
from tests.serving.synthetic_seq2seq import publish_captioner, publish_translator

SCALE = float(os.environ.get("SMALLSERVE_FUZZ_SCALE", "1"))
DEADLINE = 20.0
FAILURES = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL,
            grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE,
            grpc.StatusCode.CANCELLED, grpc.StatusCode.DATA_LOSS,
            grpc.StatusCode.UNIMPLEMENTED}
API = "/smallserve.v1.ModelService/"
OIP = "/inference.GRPCInferenceService/"
VALID = classify_request("digits", pixels=np.zeros((1, 28, 28), np.uint8)).SerializeToString()


def fuzz(examples: int):
    return settings(max_examples=max(1, int(examples * SCALE)), deadline=None, database=None,
                    suppress_health_check=list(HealthCheck), print_blob=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repo = tmp_path_factory.mktemp("fuzz") / "repo"
    publish_classifier(repo, "digits")
    publish_tagger(repo, "tags", [0.5] * 10)
    publish_translator(repo)
    publish_captioner(repo)
    with ServerProcess(repo, "--max-batch-size", str(fr.BATCH_LIMIT),
                       "--max-image-pixels", str(fr.IMAGE_LIMIT),
                       "--max-text-bytes", str(fr.TEXT_LIMIT), "--poll-interval", "0") as s, \
            grpc.insecure_channel(s.target) as channel:
        s.channel = channel
        yield s


def call(server, method: str, payload: bytes) -> tuple[grpc.StatusCode, str]:
    """Raw bytes in (so requests that are not even valid messages can be sent)."""
    try:
        server.channel.unary_unary(method)(payload, timeout=DEADLINE)
    except grpc.RpcError as e:
        return e.code(), e.details() or ""
    return grpc.StatusCode.OK, ""


SEEN: dict[str, Counter] = defaultdict(Counter)  # method -> status codes the fuzzing got


def check(server, method: str, payload: bytes, shown: object = None) -> grpc.StatusCode:
    code, details = call(server, method, payload)
    SEEN[method.rsplit("/", 1)[-1]][code.name] += 1
    assert code not in FAILURES, \
        f"{method} -> {code.name}: {details}\nrequest: {str(shown or payload)[:3000]}"
    after, details = call(server, API + "Classify", VALID)
    assert after == grpc.StatusCode.OK, f"a valid call after {method} got {after}: {details}"
    return code


SMALLSERVE_EXAMPLES = {"ListModels": 3, "GetModelMetadata": 40, "Classify": 100, "Tag": 60,
                       "Translate": 80, "Caption": 60}
OIP_EXAMPLES = {"ServerLive": 3, "ServerReady": 3, "ServerMetadata": 3, "ModelReady": 30,
                "ModelMetadata": 40, "ModelConfig": 40, "ModelStatistics": 40,
                "RepositoryIndex": 20, "ModelInfer": 150}


@pytest.mark.parametrize("method", list(SMALLSERVE_EXAMPLES))
def test_smallserve_rpc_answers_random_requests_with_a_status(server, method):
    @fuzz(SMALLSERVE_EXAMPLES[method])
    @given(request=fr.smallserve_requests()[method])
    def one(request):
        check(server, API + method, request.SerializeToString(), request)

    one()


@pytest.mark.parametrize("method", list(OIP_EXAMPLES))
def test_oip_rpc_answers_random_requests_with_a_status(server, method):
    @fuzz(OIP_EXAMPLES[method])
    @given(request=fr.oip_requests()[method])
    def one(request):
        check(server, OIP + method, request.SerializeToString(), request)

    one()


@fuzz(40)
@given(request=fr.sequence_infer_requests())
def test_search_options_of_sequence_models_are_checked(server, request):
    check(server, OIP + "ModelInfer", request.SerializeToString(), request)


WIRE = [(API + m, fr.smallserve_requests()[m]) for m in SMALLSERVE_EXAMPLES] + \
       [(OIP + m, fr.oip_requests()[m]) for m in OIP_EXAMPLES]


@fuzz(150)
@given(data=st.data())
def test_bytes_that_are_not_quite_the_message_are_handled(server, data):
    """Truncated messages, noise and invalid UTF-8 in string fields get a status (gRPC alone
    would answer UNKNOWN); unknown fields are ignored, as protobuf promises."""
    method, strategy = data.draw(st.sampled_from(WIRE))
    check(server, method, data.draw(fr.wire_damage(data.draw(strategy).SerializeToString())))


def test_invalid_utf8_in_a_name_is_invalid_argument(server):
    for method, payload in [(OIP + "ModelMetadata", fr.length_delimited(1, b"\xff\xfe")),
                            (API + "GetModelMetadata",
                             fr.length_delimited(1, fr.length_delimited(1, b"di\xe9gits")))]:
        code, details = call(server, method, payload)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "not a valid" in details, details


def vm_hwm_kb(pid: int) -> int:
    """Peak resident memory of a process so far."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def caption_infer(image: bytes) -> bytes:
    request = oip.ModelInferRequest(model_name="toy-caption")
    request.inputs.add(name="image", datatype="BYTES", shape=[1])
    request.raw_input_contents.append(encode_bytes_tensor(np.array([image], dtype=object)))
    return request.SerializeToString()


def test_decompression_bomb_is_refused_before_it_is_decoded(server):
    """A 20000x20000 PNG is ~60 KB on the wire and 400 MB once decoded: the server refuses it
    from its header, on both APIs, and its peak memory does not move."""
    bomb = fr.png_bomb()
    assert len(bomb) < 200_000
    one_pixel = encode(Image.new("L", (1, 1), 200), "PNG")
    for payload in (pb.ClassifyRequest(model=pb.ModelRef(name="digits"), images=[one_pixel]),
                    pb.CaptionRequest(model=pb.ModelRef(name="toy-caption"),
                                      images=[one_pixel])):
        method = API + ("Classify" if isinstance(payload, pb.ClassifyRequest) else "Caption")
        assert call(server, method, payload.SerializeToString())[0] == grpc.StatusCode.OK
    before = vm_hwm_kb(server.process.pid)
    for method, payload in [
            (API + "Classify", pb.ClassifyRequest(model=pb.ModelRef(name="digits"),
                                                  images=[bomb]).SerializeToString()),
            (API + "Caption", pb.CaptionRequest(model=pb.ModelRef(name="toy-caption"),
                                                images=[bomb]).SerializeToString()),
            (OIP + "ModelInfer", caption_infer(bomb))]:
        code, details = call(server, method, payload)
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (method, code, details)
        assert "20000x20000" in details or "exceeds limit" in details, details
    grown_mb = (vm_hwm_kb(server.process.pid) - before) / 1024
    assert grown_mb < 30, f"peak memory grew {grown_mb:.0f} MB"


def test_image_pixel_limit_is_the_configured_one(server):
    at_limit = encode(Image.new("1", (1000, 1000)), "PNG")
    over = encode(Image.new("1", (1001, 1000)), "PNG")
    request = pb.ClassifyRequest(model=pb.ModelRef(name="digits"))
    request.images[:] = [at_limit]
    assert call(server, API + "Classify", request.SerializeToString())[0] == grpc.StatusCode.OK
    request.images[:] = [over]
    code, details = call(server, API + "Classify", request.SerializeToString())
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "1001x1000, larger than 1000000 pixels" in details
    code, details = call(server, OIP + "ModelInfer", caption_infer(over))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "larger than" in details


@pytest.mark.parametrize("fmt", ["PPM", "TIFF", "EPS"])
def test_only_common_image_formats_are_decoded(server, fmt):
    image = Image.new("RGB" if fmt == "EPS" else "L", (28, 28))
    request = pb.ClassifyRequest(model=pb.ModelRef(name="digits"),
                                 images=[encode(image, fmt)] if fmt != "EPS" else
                                 [b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 28 28\n"])
    code, details = call(server, API + "Classify", request.SerializeToString())
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "could not be decoded" in details


def test_text_limit_is_the_configured_one(server):
    long_text = b"la casa " * (fr.TEXT_LIMIT // 8 + 1)
    request = pb.TranslateRequest(model=pb.ModelRef(name="toy-translate"), texts=[long_text])
    code, details = call(server, API + "Translate", request.SerializeToString())
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "--max-text-bytes" in details
    infer = oip.ModelInferRequest(model_name="toy-translate")
    infer.inputs.add(name="text", datatype="BYTES", shape=[1])
    infer.raw_input_contents.append(encode_bytes_tensor(np.array([long_text], dtype=object)))
    code, details = call(server, OIP + "ModelInfer", infer.SerializeToString())
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "--max-text-bytes" in details


@pytest.mark.parametrize("beam_size", [1, 2])
def test_a_huge_max_length_is_capped_by_the_model(server, beam_size):
    """Decoding is bounded by the model's limit whatever the request asks (a greedy search
    sized for 2**31 steps would allocate 128 GB)."""
    api = pb.CaptionRequest(model=pb.ModelRef(name="toy-caption"), beam_size=beam_size,
                            max_length=2**31 - 1, images=[fr.POOL[0]] * 2)
    response = server.channel.unary_unary(API + "Caption", response_deserializer=(
        pb.CaptionResponse.FromString))(api.SerializeToString(), timeout=DEADLINE)
    assert all(0 < len(c.tokens) <= 6 for c in response.captions)  # the toy model's limit
    infer = oip.ModelInferRequest.FromString(caption_infer(fr.POOL[0]))
    infer.parameters["beam_size"].int64_param = beam_size
    infer.parameters["max_length"].uint64_param = 2**31 - 1
    code, details = call(server, OIP + "ModelInfer", infer.SerializeToString())
    assert code == grpc.StatusCode.OK, details
    text = pb.TranslateRequest(model=pb.ModelRef(name="toy-translate"), texts=[b"lo veo"],
                               beam_size=beam_size, max_length=2**31 - 1)
    assert call(server, API + "Translate", text.SerializeToString())[0] == grpc.StatusCode.OK


def test_no_unhandled_error_reached_the_log(server):
    """Runs last: nothing above made the server log a traceback or an ERROR."""
    assert server.process.poll() is None
    log = server.log
    assert "Traceback" not in log and " ERROR " not in log, log[-5000:]


def test_the_fuzzing_reached_past_the_first_check():
    """Requests that all bounce off one early check would prove little: the inference RPCs
    must have seen both answers and refusals."""
    print({method: dict(codes) for method, codes in SEEN.items()})
    if SCALE < 1 or not SEEN:
        pytest.skip("fuzzing ran too little to judge")
    for method in ("Classify", "Tag", "Translate", "Caption", "ModelInfer"):
        assert SEEN[method]["OK"] >= 3 and SEEN[method]["INVALID_ARGUMENT"] >= 3, SEEN[method]

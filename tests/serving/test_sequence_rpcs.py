"""Translate and Caption on a real server, with real (small, hand-built) encoder/decoder graphs."""

import io
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
from PIL import Image

from serving.api.generated.inference import grpc_service_pb2 as oip
from serving.api.generated.inference import grpc_service_pb2_grpc as oip_grpc
from serving.api.generated.smallserve.v1 import model_service_pb2 as pb
from serving.api.generated.smallserve.v1 import model_service_pb2_grpc as pb_grpc
from serving.client import Client, ClientError
from serving.oip.tensors import decode_bytes_tensor, encode_bytes_tensor
from serving.runners import load_runner
from serving.runners.translator import TranslationCall
from serving.runtime.session import SessionConfig
from tests.conftest import ROOT
from tests.serving.server_process import ServerProcess
from tests.serving.synthetic import publish_classifier
from tests.serving.synthetic_seq2seq import SENTENCES, publish_captioner, publish_translator

MIXED = ["lo veo", "el perro come la manzana roja", "la casa blanca"]


@pytest.fixture(scope="module")
def seq_server(tmp_path_factory):
    repo = tmp_path_factory.mktemp("seq") / "repo"
    publish_translator(repo)
    publish_captioner(repo)
    publish_classifier(repo, "digits")
    with ServerProcess(repo) as server:
        server.repository = repo
        yield server


def png(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


@pytest.mark.parametrize("beam_size", [1, 3])
def test_translate_matches_in_process_with_rows_summing_to_one(seq_server, beam_size):
    runner = load_runner(seq_server.repository / "toy-translate" / "1", SessionConfig())
    with Client(seq_server.target) as client:
        served = client.translate("toy-translate", MIXED, beam_size=beam_size)["translations"]
        alone = [client.translate("toy-translate", [t], beam_size=beam_size)
                 ["translations"][0] for t in MIXED]
    local = runner.translate(MIXED, beam_size=beam_size)
    for s, a, r in zip(served, alone, local, strict=True):
        assert s["text"] == r.text == a["text"]  # batching with longer sentences changes nothing
        assert s["target_pieces"] == r.target_pieces and s["source_pieces"] == r.source_pieces
        attention = np.array(s["attention"]).reshape(len(s["target_pieces"]),
                                                     len(s["source_pieces"]))
        np.testing.assert_allclose(attention.sum(axis=1), 1, atol=1e-5)
        np.testing.assert_allclose(attention, r.attention, atol=1e-6)
        assert all(0 < p <= 1 for p in s["token_probabilities"])


def test_translate_over_the_open_inference_protocol(seq_server):
    request = oip.ModelInferRequest(model_name="toy-translate")
    request.inputs.add(name="text", datatype="BYTES", shape=[len(MIXED)])
    request.raw_input_contents.append(encode_bytes_tensor(np.array(MIXED, dtype=object)))
    request.parameters["beam_size"].int64_param = 1
    with grpc.insecure_channel(seq_server.target) as channel:
        response = oip_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)
    outputs = {o.name: (o, raw) for o, raw in zip(response.outputs,
                                                   response.raw_output_contents, strict=True)}
    text_meta, text_raw = outputs["translation"]
    texts = [t.decode() for t in decode_bytes_tensor(text_raw, len(MIXED), "translation")]
    att_meta, att_raw = outputs["attention"]
    attention = np.frombuffer(att_raw, np.float32).reshape(list(att_meta.shape))
    lengths = np.frombuffer(outputs["source_lengths"][1], np.int32)
    steps = np.frombuffer(outputs["target_lengths"][1], np.int32)
    with Client(seq_server.target) as client:
        greedy = client.translate("toy-translate", MIXED, beam_size=1)["translations"]
    assert texts == [g["text"] for g in greedy]
    for i in range(len(MIXED)):
        real = attention[i, :steps[i]]
        np.testing.assert_allclose(real.sum(axis=1), 1, atol=1e-5)
        assert (real[:, lengths[i]:] == 0).all()  # padding of the batch gets nothing


@pytest.mark.parametrize("texts, words", [
    ([b""], "empty"),
    ([b"   \t "], "empty"),
    ([" ".join(SENTENCES).encode()], "at most 12"),
    ([b"\xff\xfe bad"], "UTF-8"),
    ([], "empty"),
])
def test_bad_text_is_invalid_argument(seq_server, texts, words):
    request = pb.TranslateRequest(model=pb.ModelRef(name="toy-translate"), texts=texts)
    with grpc.insecure_channel(seq_server.target) as channel:
        stub = pb_grpc.ModelServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.Translate(request, timeout=10)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert words in caught.value.details()
        ok = stub.Translate(pb.TranslateRequest(model=pb.ModelRef(name="toy-translate"),
                                                texts=[b"lo veo"]), timeout=10)
    assert len(ok.translations) == 1


def test_wrong_task_and_bad_options(seq_server):
    with Client(seq_server.target) as client:
        for call in (lambda: client.translate("digits", ["lo veo"]),
                     lambda: client.translate("toy-translate", ["lo veo"], beam_size=-1),
                     lambda: client.translate("toy-translate", ["lo veo"], beam_size=65),
                     lambda: client.caption("toy-translate", images=[b"x"])):
            with pytest.raises(ClientError) as caught:
                call()
            assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_caption_attention_maps(seq_server):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 32, 32)).astype(np.uint8)
    runner = load_runner(seq_server.repository / "toy-caption" / "1", SessionConfig())
    with Client(seq_server.target) as client:
        by_pixels = client.caption("toy-caption", pixels=images, beam_size=2)
        by_png = client.caption("toy-caption", images=[png(im) for im in images], beam_size=2)
    local = runner.caption(images[:, None].astype(np.float32), beam_size=2)
    assert by_pixels["grid"] == [4, 4] and by_pixels["image_size"] == [32, 32]
    for a, b, r in zip(by_pixels["captions"], by_png["captions"], local, strict=True):
        assert a["text"] == b["text"] == r.text
        maps = np.array(a["attention"])
        assert maps.shape == (len(a["tokens"]), 4, 4)
        np.testing.assert_allclose(maps.sum(axis=(1, 2)), 1, atol=1e-5)


@pytest.mark.parametrize("data", [b"not an image", png(np.zeros((32, 32), np.uint8))[:40]])
def test_corrupt_image_is_invalid_argument(seq_server, data):
    with Client(seq_server.target) as client:
        with pytest.raises(ClientError) as caught:
            client.caption("toy-caption", images=[data])
        assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert client.caption("toy-caption", pixels=np.zeros((1, 32, 32), np.uint8))


def test_caption_over_the_open_inference_protocol(seq_server):
    images = [png(np.full((32, 32), v, np.uint8)) for v in (0, 128, 255)]
    request = oip.ModelInferRequest(model_name="toy-caption")
    request.inputs.add(name="image", datatype="BYTES", shape=[3])
    request.raw_input_contents.append(encode_bytes_tensor(np.array(images, dtype=object)))
    with grpc.insecure_channel(seq_server.target) as channel:
        response = oip_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)
    names = [o.name for o in response.outputs]
    attention = response.outputs[names.index("attention")]
    assert list(attention.shape)[0] == 3 and list(attention.shape)[2:] == [4, 4]


def test_cli_translate_and_caption_plots(seq_server, tmp_path):
    (tmp_path / "img.png").write_bytes(png(np.zeros((32, 32), np.uint8)))
    base = [sys.executable, "-m", "serving.client", "--target", seq_server.target]
    tr = subprocess.run([*base, "translate", "--model", "toy-translate", "el gato negro come",
                         "--plot", str(tmp_path / "attention.png")],
                        capture_output=True, text=True, cwd=ROOT)
    assert tr.returncode == 0, tr.stderr
    assert json.loads(tr.stdout)["translations"][0]["source_pieces"][-1] == "</s>"
    cap = subprocess.run([*base, "caption", "--model", "toy-caption", str(tmp_path / "img.png"),
                          "--plot", str(tmp_path / "overlay.png")],
                         capture_output=True, text=True, cwd=ROOT)
    assert cap.returncode == 0, cap.stderr
    assert json.loads(cap.stdout)["captions"][0]["input"].endswith("img.png")
    for name in ("attention.png", "overlay.png"):
        with Image.open(tmp_path / name) as im:
            assert im.width > 50 and im.height > 50


@pytest.fixture(scope="module")
def merging_server(seq_server):
    """The same models behind a 50 ms queue delay, so concurrent calls surely meet in the
    queue: the toy decodes take well under a millisecond, less than a client thread needs to
    send the next call, and without a delay whether two calls overlap is up to the machine."""
    with ServerProcess(seq_server.repository, "--batch-max-delay-us", "50000",
                       "--decode-batching", "merge") as server:
        server.repository = seq_server.repository
        yield server


def test_concurrent_translate_calls_merge_and_each_gets_its_own(merging_server):
    """Calls of one beam size whose sentences fall in one length bucket share a decode, and
    each caller gets exactly the translations its texts get alone; a bad call fails alone."""
    runner = load_runner(merging_server.repository / "toy-translate" / "1", SessionConfig())
    calls = [[SENTENCES[i % len(SENTENCES)], SENTENCES[(i + 2) % len(SENTENCES)]][:1 + i % 2]
             for i in range(24)]
    expected = [[r.text for r in runner.translate(texts, beam_size=2)] for texts in calls]

    def stats():
        with grpc.insecure_channel(merging_server.target) as channel:
            s = oip_grpc.GRPCInferenceServiceStub(channel).ModelStatistics(
                oip.ModelStatisticsRequest(name="toy-translate"), timeout=5).model_stats[0]
        return s.inference_count, s.execution_count

    with Client(merging_server.target) as client, ThreadPoolExecutor(24) as pool:
        client.list_models()
        rows_before, runs_before = stats()
        futures = [pool.submit(client.translate, "toy-translate", texts, beam_size=2)
                   for texts in calls]
        bad = pool.submit(client.translate, "toy-translate", ["el gato", "  "], beam_size=2)
        served = [[t["text"] for t in f.result()["translations"]] for f in futures]
        with pytest.raises(ClientError) as caught:
            bad.result()
        rows_after, runs_after = stats()
    assert served == expected
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert rows_after - rows_before == sum(map(len, calls))
    assert runs_after - runs_before < len(calls), "no two Translate calls shared a decode"


@pytest.mark.parametrize("model, beam", [("toy-translate", 1), ("toy-translate", 3),
                                         ("toy-caption", 2)])
def test_calls_decoded_step_by_step_together_get_what_they_get_alone(seq_server, model, beam):
    """Iteration-level batching (the default): concurrent calls of any beam size and source
    length share decoder steps, joining and leaving between steps, and each gets exactly
    what it gets when it runs alone; together they run fewer steps than one after another."""
    rng = np.random.default_rng(5)
    if model == "toy-translate":
        calls = [MIXED[i % 3:i % 3 + 1 + i % 2] for i in range(12)]
        send = lambda client, call: [t["text"] + repr(t["attention"])  # noqa: E731
                                     for t in client.translate(model, call, beam_size=beam)
                                     ["translations"]]
    else:
        calls = [rng.integers(0, 256, (1 + i % 2, 32, 32)).astype(np.uint8) for i in range(12)]
        send = lambda client, call: [" ".join(c["tokens"]) + repr(c["attention"])  # noqa: E731
                                     for c in client.caption(model, pixels=call, beam_size=beam)
                                     ["captions"]]

    def steps():
        with grpc.insecure_channel(seq_server.target) as channel:
            return oip_grpc.GRPCInferenceServiceStub(channel).ModelStatistics(
                oip.ModelStatisticsRequest(name=model), timeout=5).model_stats[0] \
                .execution_count

    with Client(seq_server.target) as client, ThreadPoolExecutor(12) as pool:
        before = steps()
        alone = [send(client, call) for call in calls]
        between = steps()
        together = list(pool.map(lambda call: send(client, call), calls))
        after = steps()
    assert together == alone
    assert after - between < between - before, "no two calls shared a decoder step"


def test_sentence_batching_keys_on_beam_size_and_length_bucket(seq_server):
    runner = load_runner(seq_server.repository / "toy-translate" / "1", SessionConfig())
    strategy = runner.batch_strategy()
    short, long = runner.prepare(["lo veo"]), runner.prepare(["el perro come la manzana roja"])
    assert len(short.ids[0]) < 4 <= len(long.ids[0])  # two different power-of-two buckets
    key = strategy.signature
    assert key(TranslationCall(short, 2)) != key(TranslationCall(long, 2))
    assert key(TranslationCall(short, 2)) != key(TranslationCall(short, 1))
    assert key(TranslationCall(short, 0)) == key(TranslationCall(short, runner.default_beam))
    merged = strategy.run([TranslationCall(short, 2), TranslationCall(long, 2)])
    assert [[r.text for r in part] for part in merged] == \
        [[r.text for r in runner.translate(["lo veo"], 2)],
         [r.text for r in runner.translate(["el perro come la manzana roja"], 2)]]


def test_concurrent_caption_calls_merge_and_keep_their_own_length_limits(merging_server):
    runner = load_runner(merging_server.repository / "toy-caption" / "1", SessionConfig())
    rng = np.random.default_rng(3)
    calls = [(rng.integers(0, 256, (1 + i % 2, 32, 32)).astype(np.uint8), 2 + i % 3)
             for i in range(16)]
    expected = [[r.tokens for r in runner.caption(x[:, None].astype(np.float32), 2, n)]
                for x, n in calls]

    def runs():
        with grpc.insecure_channel(merging_server.target) as channel:
            return oip_grpc.GRPCInferenceServiceStub(channel).ModelStatistics(
                oip.ModelStatisticsRequest(name="toy-caption"), timeout=5) \
                .model_stats[0].execution_count

    with Client(merging_server.target) as client, ThreadPoolExecutor(16) as pool:
        client.list_models()
        before = runs()
        futures = [pool.submit(client.caption, "toy-caption", pixels=x, beam_size=2,
                               max_length=n) for x, n in calls]
        served = [[c["tokens"] for c in f.result()["captions"]] for f in futures]
        after = runs()
    assert served == expected
    assert all(len(words) <= n for (_, n), caps in zip(calls, served, strict=True)
               for words in caps)
    assert after - before < len(calls), "no two Caption calls shared a decode"


def test_open_inference_protocol_translate_calls_merge_too(merging_server):
    """tritonclient users get the same merging: ModelInfer calls share decodes."""
    calls = [SENTENCES[i % len(SENTENCES)] for i in range(12)]
    with Client(merging_server.target) as client:
        expected = [client.translate("toy-translate", [t], beam_size=1)["translations"][0]
                    ["text"] for t in calls]

    def infer(text: str, stub) -> str:
        request = oip.ModelInferRequest(model_name="toy-translate")
        request.inputs.add(name="text", datatype="BYTES", shape=[1])
        request.raw_input_contents.append(encode_bytes_tensor(np.array([text], dtype=object)))
        request.parameters["beam_size"].int64_param = 1
        response = stub.ModelInfer(request, timeout=30)
        raw = dict(zip((o.name for o in response.outputs), response.raw_output_contents,
                       strict=True))["translation"]
        return decode_bytes_tensor(raw, 1, "translation")[0].decode()

    with grpc.insecure_channel(merging_server.target) as channel, \
            ThreadPoolExecutor(12) as pool:
        stub = oip_grpc.GRPCInferenceServiceStub(channel)
        before = stub.ModelStatistics(oip.ModelStatisticsRequest(name="toy-translate"),
                                      timeout=5).model_stats[0].execution_count
        served = list(pool.map(lambda t: infer(t, stub), calls))
        after = stub.ModelStatistics(oip.ModelStatisticsRequest(name="toy-translate"),
                                     timeout=5).model_stats[0].execution_count
    assert served == expected
    assert after - before < len(calls), "no two ModelInfer calls shared a decode"

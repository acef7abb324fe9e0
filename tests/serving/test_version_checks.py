"""A version serves only once its graphs match its manifest and every file it reads lies inside
it with its sha256; a scan meets FIFOs and sockets without blocking. Broken versions, written as
real files, are refused with their reason while the good version keeps serving."""

import asyncio
import json
import os
import signal
import socket

import numpy as np
import onnx
import pytest
import sentencepiece as spm

from serving.client import AsyncClient, Client
from serving.repository import ManifestError, VersionWriter
from serving.runners import load_runner
from serving.runtime.session import SessionConfig
from tests.serving.hand_versions import copy_version, file_entry, publish_by_hand, wait_for
from tests.serving.server_process import ServerProcess
from tests.serving.synthetic import classifier_graph, classifier_manifest, publish_classifier
from tests.serving.synthetic_seq2seq import (
    decoder_step_graph,
    publish_captioner,
    publish_translator,
    sentencepiece_model,
    text_encoder_graph,
)

PIXELS = np.zeros((1, 28, 28), np.uint8)


def fixed_batch_graph() -> onnx.ModelProto:
    """A classifier whose input batch axis is fixed at 1, as an exporter without dynamic axes
    writes it: one row works, merged batches do not."""
    graph = classifier_graph(seed=1)
    graph.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    return graph


def lying_graph() -> onnx.ModelProto:
    """20 columns out, but typed as 10 (onnxruntime then declares the width unknown): only
    running it shows the difference."""
    graph = classifier_graph(num_classes=20, seed=3)
    for output in graph.graph.output:
        output.type.tensor_type.shape.dim[1].dim_value = 10
    return graph


def publish_graph(repo, name: str, graph: onnx.ModelProto, manifest: dict):
    with VersionWriter(repo, name) as w:
        onnx.save(graph, w.path / "model.onnx")
        return w.commit(manifest)[1]


def reasons(client: Client, name: str) -> dict[int, str]:
    return {e["version"]: e["reason"] for e in client.metadata(name)["version_errors"]}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repo = tmp_path_factory.mktemp("checks") / "repo"
    publish_classifier(repo, "digits")
    publish_translator(repo, "mt")
    with ServerProcess(repo, "--poll-interval", "0.2", "--batch-max-delay-us", "5000") as s:
        s.repository = repo
        yield s


def test_fixed_batch_and_wide_graphs_are_refused_and_the_good_version_serves_all(server):
    repo = server.repository
    publish_graph(repo, "digits", fixed_batch_graph(), classifier_manifest())  # 2
    publish_graph(repo, "digits", classifier_graph(num_classes=20, seed=2),
                  classifier_manifest(10))  # 3: 20 columns for 10 labels
    wait_for(lambda: "digits version 2 not loaded" in server.log
             and "digits version 3 not loaded" in server.log, what="both refused")
    with Client(server.target) as client:
        why = reasons(client, "digits")
    assert "input 'pixels' axis 0 is fixed at 1" in why[2] and "dynamic" in why[2]
    assert "output 'probabilities' axis 1 is 20; the manifest says 10" in why[3]

    async def calls():  # concurrent, so the 5 ms batching delay merges them
        async with AsyncClient(server.target) as client:
            return await asyncio.gather(*(client.classify("digits", pixels=PIXELS, top_k=15)
                                          for _ in range(400)), return_exceptions=True)

    results = asyncio.run(calls())
    failures = [r for r in results if isinstance(r, Exception)]
    assert failures == [], failures[:3]
    assert {r["version"] for r in results} == {1}
    assert {len(r["results"][0]["top"]) for r in results} == {10}


def test_tokenizer_files_outside_the_version_or_unhashed_refuse_it(server, tmp_path):
    model_dir = server.repository / "mt"
    files, manifest = copy_version(model_dir / "1", 0)
    tok = manifest["tokenizer"]
    outside = tmp_path / "elsewhere.model"
    outside.write_bytes(files["spm.model"])
    cases = {
        2: ({"target_model": str(outside)}, {}, "points outside the version (an absolute"),
        3: ({"source_model": "../1/spm.model"}, {}, "points outside the version (a path with"),
        4: ({"source_model": "link.model"}, {"link.model": files["spm.model"]}, "symlink out"),
        5: ({"source_model": "unlisted.model"}, {}, "'unlisted.model' is not listed in files"),
    }
    for version, (changes, listed, _) in cases.items():
        path = publish_by_hand(model_dir, version, files, {
            **manifest, "version": version, "tokenizer": {**tok, **changes},
            "files": {**manifest["files"], **{k: file_entry(v) for k, v in listed.items()}}})
        if version == 4:
            os.symlink("../1/spm.model", path / "link.model")
        if version == 5:
            (path / "unlisted.model").write_bytes(files["spm.model"])
    wait_for(lambda: all(f"mt version {v} not loaded" in server.log for v in cases),
             what="every version refused")
    with Client(server.target) as client:
        why = reasons(client, "mt")
        for version, (_, _, reason) in cases.items():
            assert reason in why[version], (version, why[version])
        assert client.translate("mt", ["el gato negro"])["version"] == 1


def test_a_fifo_or_socket_refuses_only_its_version_and_the_scan_goes_on(tmp_path):
    repo = tmp_path / "repo"
    publish_classifier(repo, "a-fifo")
    publish_classifier(repo, "b-next")
    with ServerProcess(repo, "--poll-interval", "0.2") as server:
        model_dir = repo / "a-fifo"
        files, manifest = copy_version(model_dir / "1", 2)
        os.mkdir(model_dir / ".v2")  # manifest.json a FIFO: open() would wait for a writer
        (model_dir / ".v2" / "model.onnx").write_bytes(files["model.onnx"])
        os.mkfifo(model_dir / ".v2" / "manifest.json")
        os.rename(model_dir / ".v2", model_dir / "2")
        v3 = publish_by_hand(model_dir, 3, {}, {**manifest, "version": 3})
        os.mkfifo(v3 / "model.onnx")  # a listed file that is a FIFO
        v4 = publish_by_hand(model_dir, 4, files, {**manifest, "version": 4})
        with socket.socket(socket.AF_UNIX) as sock:  # an unlisted socket beside the files
            sock.bind(str(v4 / "control.sock"))
        publish_classifier(repo, "b-next", seed=5)  # after a-fifo in the scan's order
        with Client(server.target) as client:
            wait_for(lambda: client.classify("b-next", pixels=PIXELS)["version"] == 2,
                     what="the other model's new version served")
            wait_for(lambda: len(reasons(client, "a-fifo")) == 3, what="three refusals")
            why = reasons(client, "a-fifo")
            assert "manifest.json is a FIFO" in why[2]
            assert "model.onnx is a FIFO" in why[3]
            assert "control.sock is a socket" in why[4]
            assert client.classify("a-fifo", pixels=PIXELS)["version"] == 1
        assert server.stop(signal.SIGTERM, timeout=30) == 0


# -- the contract, version by version (real files, loaded in this process) ------------------

def rewrite(version_dir, rel: str, data: bytes) -> None:
    """Replace a file of a version and its line in the manifest's files."""
    (version_dir / rel).write_bytes(data)
    manifest = json.loads((version_dir / "manifest.json").read_text())
    manifest["files"][rel] = file_entry(data)
    (version_dir / "manifest.json").write_text(json.dumps(manifest))


def edit_manifest(version_dir, change) -> None:
    manifest = json.loads((version_dir / "manifest.json").read_text())
    change(manifest)
    (version_dir / "manifest.json").write_text(json.dumps(manifest))


def classifier_case(repo, graph: onnx.ModelProto, change=None):
    path = publish_graph(repo, "c", graph, classifier_manifest())
    if change is not None:
        edit_manifest(path, change)
    return path


def translator_case(repo, vocab_extra: int = 0, rename: str = ""):
    path = publish_translator(repo, "t")
    if vocab_extra or rename:
        rng = np.random.default_rng(0)
        vocab = spm.SentencePieceProcessor(model_proto=sentencepiece_model()).get_piece_size()
        step = decoder_step_graph(vocab + vocab_extra, rng)
        if rename:
            step.graph.input[0].name = rename
            for node in step.graph.node:
                node.input[:] = [rename if i == "prev_ids" else i for i in node.input]
        rewrite(path, "decoder_step.onnx", step.SerializeToString())
    return path


def short_encoder(repo):
    """An encoder whose embedding has fewer rows than the source tokenizer has pieces."""
    path = publish_translator(repo, "t")
    rewrite(path, "encoder.onnx",
            text_encoder_graph(5, np.random.default_rng(0)).SerializeToString())
    return path


CASES = {
    "fixed batch": (lambda r: classifier_case(r, fixed_batch_graph()),
                    "input 'pixels' axis 0 is fixed at 1"),
    "wide": (lambda r: classifier_case(r, classifier_graph(num_classes=20)),
             "output 'probabilities' axis 1 is 20"),
    "declared narrower than it runs": (lambda r: classifier_case(
        r, lying_graph(), lambda m: m.update(outputs=m["outputs"][:1])),
        "output 'probabilities' (probe run, batch 1) axis 1 is 20; the manifest says 10"),
    "input dtype": (lambda r: classifier_case(
        r, classifier_graph(), lambda m: m["inputs"][0].update(dtype="uint8")),
        "input 'pixels' is tensor(float); the manifest says uint8"),
    "input rank": (lambda r: classifier_case(
        r, classifier_graph(), lambda m: m["inputs"][0].update(shape=[-1, 28, 28])),
        "input 'pixels' has rank 4; the manifest says 3"),
    "input name": (lambda r: classifier_case(
        r, classifier_graph(), lambda m: m["inputs"][0].update(name="image")),
        "inputs are ['pixels']"),
    "output name": (lambda r: classifier_case(
        r, classifier_graph(), lambda m: m["outputs"][1].update(name="scores")),
        "has no output ['scores']"),
    "static size": (lambda r: classifier_case(
        r, classifier_graph(), lambda m: m["inputs"][0].update(shape=[-1, 1, 28, 27])),
        "input 'pixels' axis 3 is 28; the manifest says 27"),
    "decoder vocabulary": (lambda r: translator_case(r, vocab_extra=3),
                           "output 'log_probs' axis 1 is"),
    "decoder input": (lambda r: translator_case(r, rename="previous"),
                      "decoder_step.onnx: inputs are ['memory', 'previous', 'src_mask', 'state']"),
    "encoder embedding": (short_encoder, "encoder.onnx: fails (probe run, batch 1)"),
    "caption vocabulary": (lambda r: _caption_vocabulary(r),
                           "'log_probs' axis 1 is 10; it must be 11 (the vocabulary size)"),
    "caption grid": (lambda r: _caption_grid(r),
                     "'memory' axis 1 is 16; it must be 20 (grid rows x cols)"),
}


def _caption_vocabulary(repo):
    path = publish_captioner(repo, "k")
    rewrite(path, "vocab.txt", (path / "vocab.txt").read_bytes() + b"six\n")
    return path


def _caption_grid(repo):
    path = publish_captioner(repo, "k")
    edit_manifest(path, lambda m: m["grid"].update(cols=5))
    return path


@pytest.mark.parametrize("case", CASES)
def test_a_graph_that_breaks_its_manifest_is_refused(tmp_path, case):
    make, reason = CASES[case]
    path = make(tmp_path)
    with pytest.raises(ManifestError) as caught:
        load_runner(path, SessionConfig(providers=["CPUExecutionProvider"]))
    assert reason in str(caught.value)


def test_the_graphs_of_every_task_pass_as_published(tmp_path):
    for path in (publish_classifier(tmp_path, "c"), publish_translator(tmp_path, "t"),
                 publish_captioner(tmp_path, "k")):
        load_runner(path, SessionConfig(providers=["CPUExecutionProvider"]))

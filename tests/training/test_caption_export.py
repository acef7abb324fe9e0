"""The captioner's encoder and decoder-step graphs: names, dynamic batch, parity gate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from training.export.caption_graphs import (
    DECODER_FILE,
    ENCODER_FILE,
    EncoderGraph,
    OnnxCaptioner,
    check_caption_parity,
    export_caption_graphs,
)
from training.export.parity import ParityError
from training.models.captioner import Captioner

VOCAB, BOS, EOS = 9, 1, 2


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[EncoderGraph, Path, np.ndarray]:
    torch.manual_seed(0)
    model = Captioner(1, (32, 32), VOCAB, channels=[4, 8], feature_dim=8, hidden=16,
                      attention_dim=8, dropout=0.1)
    graph = EncoderGraph(model, [0.1], [0.3]).eval()
    folder = tmp_path_factory.mktemp("caption_graphs")
    export_caption_graphs(graph, folder)
    images = np.random.default_rng(0).integers(0, 256, (12, 1, 32, 32)).astype(np.uint8)
    return graph, folder, images


def test_graph_names_and_dynamic_batch(exported):
    _, folder, images = exported
    enc = ort.InferenceSession(str(folder / ENCODER_FILE), providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(str(folder / DECODER_FILE), providers=["CPUExecutionProvider"])
    assert [i.name for i in enc.get_inputs()] == ["pixels"]
    assert [o.name for o in enc.get_outputs()] == ["memory", "state"]
    assert [i.name for i in dec.get_inputs()] == ["prev_ids", "state", "memory", "src_mask"]
    assert [o.name for o in dec.get_outputs()] == ["log_probs", "new_state", "attention"]
    for n in (1, 5):
        memory, state = enc.run(None, {"pixels": images[:n].astype(np.float32)})
        assert memory.shape == (n, 64, 8) and state.shape == (n, 32)
        log_probs, new_state, attention = dec.run(None, {
            "prev_ids": np.full(n, BOS, np.int64), "state": state, "memory": memory,
            "src_mask": np.ones((n, 64), bool)})
        assert log_probs.shape == (n, VOCAB) and new_state.shape == (n, 32)
        np.testing.assert_allclose(np.exp(log_probs).sum(1), 1, atol=1e-5)
        np.testing.assert_allclose(attention.sum(1), 1, atol=1e-5)


def test_parity_passes_at_1e5_and_greedy_tokens_match(exported):
    graph, folder, images = exported
    report = check_caption_parity(graph, folder, images, BOS, EOS, max_length=6,
                                  vocab_size=VOCAB)
    assert report.max_abs_diff <= 1e-5
    assert report.greedy_mismatches == 0 and report.greedy_images == len(images)
    assert {1, 3}.issubset(report.encoder.batch_sizes)
    assert {1, 3, 7}.issubset(report.decoder_step.batch_sizes)
    entry = report.manifest_entry()
    assert entry["max_abs_diff"] == report.max_abs_diff
    hyps = OnnxCaptioner(folder).decode(images, BOS, EOS, max_length=6, beam_size=3)
    assert all(h.attention.shape == (len(h.tokens), 64) for h in hyps)


def test_parity_fails_when_the_module_differs_from_the_file(exported):
    graph, folder, images = exported
    saved = graph.model.out.bias.detach().clone()
    try:
        with torch.no_grad():
            graph.model.out.bias[3] += 0.01  # one logit: a uniform shift cancels
        with pytest.raises(ParityError):
            check_caption_parity(graph, folder, images, BOS, EOS, max_length=6,
                                 vocab_size=VOCAB)
    finally:
        with torch.no_grad():
            graph.model.out.bias.copy_(saved)

"""The two translation graphs: contract names and axes, parity gate, and which exporter."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from training.export.onnx_export import export_onnx
from training.export.parity import ParityError, check_parity
from training.export.seq2seq_graphs import (
    DECODER_FILE,
    ENCODER_FILE,
    EncoderGraph,
    OnnxTranslator,
    SearchOptions,
    check_translation_parity,
    export_translation_graphs,
    greedy_torch,
)
from training.models.seq2seq import Seq2Seq, Seq2SeqConfig

PAD, BOS, EOS = 0, 2, 3


def model(rnn: str = "gru", input_feeding: bool = False, attention: str = "additive",
          seed: int = 0) -> Seq2Seq:
    torch.manual_seed(seed)
    cfg = Seq2SeqConfig(40, 30, embedding_dim=16, hidden=24, encoder_hidden=12, layers=2,
                        rnn=rnn, attention=attention, attention_dim=16, dropout=0.0,
                        input_feeding=input_feeding)
    m = Seq2Seq(cfg).eval()
    with torch.no_grad():  # a peaked output layer, as a trained model has: decodes vary
        m.decoder.output.weight.mul_(8.0)
    return m


def sentences(n: int = 60, seed: int = 0) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [rng.integers(4, 40, rng.integers(1, 15)).tolist() + [EOS] for _ in range(n)]


def dims(path: Path, kind: str) -> dict[str, list]:
    graph = onnx.load(str(path)).graph
    values = graph.input if kind == "input" else graph.output
    return {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in values}


@pytest.mark.parametrize(("rnn", "input_feeding", "attention"), [
    ("gru", False, "additive"), ("lstm", True, "general"), ("gru", True, "dot")])
def test_graphs_match_the_contract_and_pass_parity(tmp_path: Path, rnn: str,
                                                   input_feeding: bool, attention: str) -> None:
    m = model(rnn, input_feeding, attention)
    export_translation_graphs(m, tmp_path)
    d = m.state_dim
    assert dims(tmp_path / ENCODER_FILE, "input") == {"src_ids": ["batch", "src_len"],
                                                      "src_lengths": ["batch"]}
    enc_out = dims(tmp_path / ENCODER_FILE, "output")
    assert list(enc_out) == ["memory", "state"] and enc_out["state"] == ["batch", d]
    assert enc_out["memory"][:2] == ["batch", "src_len"]
    # memory [M = 24] and, unless the attention is dot, its keys (additive 16, general 24)
    served = {"additive": 24 + 16, "general": 24 + 24, "dot": 24}[attention]
    assert dims(tmp_path / DECODER_FILE, "input") == {
        "prev_ids": ["batch"], "state": ["batch", d], "memory": ["batch", "src_len", served],
        "src_mask": ["batch", "src_len"]}
    assert dims(tmp_path / DECODER_FILE, "output") == {
        "log_probs": ["batch", 30], "new_state": ["batch", d], "attention": ["batch", "src_len"]}
    source = sentences()
    report = check_translation_parity(m, tmp_path, source, PAD, BOS, EOS, "legacy",
                                      tolerance=1e-5, greedy_sentences=60)
    assert report.max_abs_diff <= 1e-5 and report.greedy_mismatches == 0
    assert {1, 3, 32} <= set(report.encoder.batch_sizes)
    # the decodes compared are not trivial: outputs of several lengths
    tokens = greedy_torch(m, source, PAD, BOS, EOS)
    assert len({len(t) for t in tokens}) > 3


def test_served_attention_rows_sum_to_one_with_zero_padding(tmp_path: Path) -> None:
    m = model()
    export_translation_graphs(m, tmp_path)
    source = [[5, 6, EOS], [7, 8, 9, 10, 11, 12, 13, 14, 15, EOS], [4, EOS]]
    translator = OnnxTranslator(tmp_path, PAD, BOS, EOS)
    for beam in (1, 3):
        hyps = translator.translate_ids(source, SearchOptions(beam, 0.6), batch_size=3)
        for h, s in zip(hyps, source, strict=True):
            assert h.attention.shape[0] == len(h.tokens)
            np.testing.assert_allclose(h.attention.sum(axis=1), 1.0, atol=1e-5)
            assert np.all(h.attention[:, len(s):] == 0.0)
    # the batch does not change a sentence's translation
    alone = [translator.translate_ids([s], SearchOptions(1))[0].tokens for s in source]
    assert alone == [h.tokens for h in translator.translate_ids(source, SearchOptions(1))]


class Scale(torch.nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor


def test_relative_tolerance_scales_with_the_value(tmp_path: Path) -> None:
    path = export_onnx(Scale(1000.0), (torch.ones(2, 3),), tmp_path / "scale.onnx", ["x"], ["y"],
                       {"x": {0: "batch"}}, exporter="legacy")
    batches = [{"x": np.linspace(1, 2, 6, dtype=np.float32).reshape(2, 3)}]
    drifted = Scale(1000.0 * (1 + 2e-6))  # 2e-6 relative: 2e-3 to 4e-3 absolute
    with pytest.raises(ParityError):
        check_parity(drifted, path, batches, tolerance=1e-5)
    with pytest.raises(ParityError):
        check_parity(drifted, path, batches, tolerance=1e-5, relative_tolerance={"y": 1e-6})
    report = check_parity(drifted, path, batches, tolerance=1e-5,
                          relative_tolerance={"y": 1e-5})
    assert report.max_abs_diff > 1e-3 and report.relative_tolerance == {"y": 1e-5}
    with pytest.raises(ValueError, match="unknown outputs"):
        check_parity(drifted, path, batches, relative_tolerance={"z": 1.0})


class Shift(torch.nn.Module):
    def __init__(self, offset: float) -> None:
        super().__init__()
        self.offset = offset

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.offset


def test_relative_tolerance_scales_with_the_rows_largest_value(tmp_path: Path) -> None:
    """A log-softmax row shifted as a whole by the rounding of its large entries (-13) passes,
    its most probable entry (-0.5) included; the same shift on a row of small values does
    not."""
    path = export_onnx(Shift(0.0), (torch.ones(1, 3),), tmp_path / "shift.onnx", ["x"], ["y"],
                       {"x": {0: "batch"}}, exporter="legacy")
    wide = [{"x": np.array([[-0.5, -1.5, -13.0]], np.float32)}]
    narrow = [{"x": np.array([[-0.5, -1.0, -1.5]], np.float32)}]
    shifted = Shift(3.5e-5)
    report = check_parity(shifted, path, wide, tolerance=1e-5, relative_tolerance={"y": 1e-5})
    assert report.max_abs_diff > 3e-5
    with pytest.raises(ParityError):
        check_parity(shifted, path, narrow, tolerance=1e-5, relative_tolerance={"y": 1e-5})


def test_gate_fails_for_graphs_of_another_model(tmp_path: Path) -> None:
    export_translation_graphs(model(seed=1), tmp_path)
    with pytest.raises(ParityError, match="differs from PyTorch"):
        check_translation_parity(model(seed=0), tmp_path, sentences(), PAD, BOS, EOS, "legacy")


@pytest.mark.slow  # torch.export takes a minute on a busy two-core machine
@pytest.mark.parametrize("rnn", ["gru", "lstm"])
def test_dynamo_exporter_freezes_the_source_length(tmp_path: Path, rnn: str) -> None:
    """Why the legacy exporter is the default (torch 2.13, onnxscript 0.7): the dynamo one
    fixes the RNN output's time axis at the example length, and the gate refuses the result.
    When this starts failing, the dynamo exporter has been fixed: reconsider the default.
    Only the encoder goes through dynamo here (where the defect is; it takes ~30 s)."""
    m = model(rnn)
    export_translation_graphs(m, tmp_path)  # legacy: passes (the test above)
    src = torch.tensor([[5, 6, 7, 3], [5, 3, 0, 0]])
    lengths = torch.tensor([4, 2])
    export_onnx(EncoderGraph(m), (src, lengths), tmp_path / ENCODER_FILE,
                ["src_ids", "src_lengths"], ["memory", "state"],
                {"src_ids": {0: "batch", 1: "src_len"}, "src_lengths": {0: "batch"}},
                exporter="dynamo")
    assert dims(tmp_path / ENCODER_FILE, "output")["memory"][1] == 4  # the example's length
    with pytest.raises(ParityError, match="onnxruntime cannot run the exported graphs"):
        check_translation_parity(m, tmp_path, sentences(), PAD, BOS, EOS, "dynamo")

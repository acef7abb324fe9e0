"""Small but real encoder / decoder-step ONNX pairs (onnx.helper, no torch) with the graph
contract of translation and captioning, for serving tests that need no trained model."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import onnx
import sentencepiece as spm
from onnx import TensorProto, helper, numpy_helper

from serving.repository import VersionWriter

DIM = 16
PAD, UNK, BOS, EOS = 0, 1, 2, 3
SENTENCES = ["el gato negro come", "la casa blanca", "no veo el perro", "lo veo",
             "el perro come la manzana roja", "la gata no duerme"]


def _value(name: str, elem: int, shape: list) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, shape)


def _model(nodes: list, inputs: list, outputs: list, inits: list) -> onnx.ModelProto:
    model = helper.make_model(helper.make_graph(nodes, "g", inputs, outputs, inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def decoder_step_graph(vocab: int, rng: np.random.Generator) -> onnx.ModelProto:
    """h = tanh(E[prev] + state W); attention = softmax over real positions of memory . h;
    log_probs = log_softmax([context, h] U)."""
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for n, a in (
        ("E", rng.normal(size=(vocab, DIM))), ("W", rng.normal(size=(DIM, DIM)) * 0.5),
        ("U", rng.normal(size=(2 * DIM, vocab)) * 2), ("neg", np.array(-1e9)))]
    inits += [numpy_helper.from_array(np.array([-1], np.int64), "last"),
              numpy_helper.from_array(np.array([1], np.int64), "one")]
    nodes = [
        helper.make_node("Gather", ["E", "prev_ids"], ["emb"]),
        helper.make_node("MatMul", ["state", "W"], ["sw"]),
        helper.make_node("Add", ["emb", "sw"], ["pre"]),
        helper.make_node("Tanh", ["pre"], ["new_state"]),
        helper.make_node("Unsqueeze", ["new_state", "last"], ["h3"]),
        helper.make_node("MatMul", ["memory", "h3"], ["s3"]),
        helper.make_node("Squeeze", ["s3", "last"], ["scores"]),
        helper.make_node("Where", ["src_mask", "scores", "neg"], ["masked"]),
        helper.make_node("Softmax", ["masked"], ["attention"], axis=-1),
        helper.make_node("Unsqueeze", ["attention", "one"], ["a3"]),
        helper.make_node("MatMul", ["a3", "memory"], ["c3"]),
        helper.make_node("Squeeze", ["c3", "one"], ["context"]),
        helper.make_node("Concat", ["context", "new_state"], ["both"], axis=-1),
        helper.make_node("MatMul", ["both", "U"], ["logits"]),
        helper.make_node("LogSoftmax", ["logits"], ["log_probs"], axis=-1),
    ]
    return _model(nodes, [
        _value("prev_ids", TensorProto.INT64, ["batch"]),
        _value("state", TensorProto.FLOAT, ["batch", DIM]),
        _value("memory", TensorProto.FLOAT, ["batch", "source", DIM]),
        _value("src_mask", TensorProto.BOOL, ["batch", "source"])], [
        _value("log_probs", TensorProto.FLOAT, ["batch", vocab]),
        _value("new_state", TensorProto.FLOAT, ["batch", DIM]),
        _value("attention", TensorProto.FLOAT, ["batch", "source"])], inits)


def text_encoder_graph(vocab: int, rng: np.random.Generator) -> onnx.ModelProto:
    inits = [numpy_helper.from_array(rng.normal(size=(vocab, DIM)).astype(np.float32), "S"),
             numpy_helper.from_array(np.array(0, np.int64), "first")]
    # the state comes from the first piece only, so padding cannot change it
    nodes = [helper.make_node("Gather", ["S", "src_ids"], ["memory"]),
             helper.make_node("Gather", ["memory", "first"], ["state"], axis=1),
             helper.make_node("Identity", ["src_lengths"], ["unused_lengths"])]
    return _model(nodes, [_value("src_ids", TensorProto.INT64, ["batch", "source"]),
                          _value("src_lengths", TensorProto.INT64, ["batch"])],
                  [_value("memory", TensorProto.FLOAT, ["batch", "source", DIM]),
                   _value("state", TensorProto.FLOAT, ["batch", DIM]),
                   _value("unused_lengths", TensorProto.INT64, ["batch"])], inits)


def image_encoder_graph(rows: int, cols: int, size: int,
                        rng: np.random.Generator) -> onnx.ModelProto:
    """pixels [B,1,size,size] -> average-pooled grid [B, rows*cols, DIM] and its mean."""
    k = size // rows
    inits = [numpy_helper.from_array(rng.normal(size=(1, DIM)).astype(np.float32), "P"),
             numpy_helper.from_array(np.array(1 / 255, np.float32), "scale"),
             numpy_helper.from_array(np.array([0, 1, rows * cols], np.int64), "cells")]
    nodes = [helper.make_node("Mul", ["pixels", "scale"], ["x"]),
             helper.make_node("AveragePool", ["x"], ["pooled"], kernel_shape=[k, k],
                              strides=[k, k]),
             helper.make_node("Reshape", ["pooled", "cells"], ["flat"]),
             helper.make_node("Transpose", ["flat"], ["cells_first"], perm=[0, 2, 1]),
             helper.make_node("MatMul", ["cells_first", "P"], ["memory"]),
             helper.make_node("ReduceMean", ["memory"], ["state"], axes=[1], keepdims=0)]
    return _model(nodes, [_value("pixels", TensorProto.FLOAT, ["batch", 1, size, size])],
                  [_value("memory", TensorProto.FLOAT, ["batch", rows * cols, DIM]),
                   _value("state", TensorProto.FLOAT, ["batch", DIM])], inits)


def sentencepiece_model() -> bytes:
    out = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(SENTENCES * 20), model_writer=out, vocab_size=40,
        model_type="word", pad_id=PAD, unk_id=UNK, bos_id=BOS, eos_id=EOS,
        hard_vocab_limit=False, minloglevel=2)
    return out.getvalue()


def publish_translator(repository: Path, name: str = "toy-translate",
                       max_source_pieces: int = 12, seed: int = 0,
                       serving: dict | None = None) -> Path:
    """serving: the manifest's serving settings (e.g. its own dynamic batching)."""
    rng = np.random.default_rng(seed)
    model = sentencepiece_model()
    vocab = spm.SentencePieceProcessor(model_proto=model).get_piece_size()
    with VersionWriter(repository, name) as w:
        (w.path / "spm.model").write_bytes(model)
        onnx.save(text_encoder_graph(vocab, rng), w.path / "encoder.onnx")
        onnx.save(decoder_step_graph(vocab, rng), w.path / "decoder_step.onnx")
        _, path = w.commit({
            "task": "translate",
            "graphs": {"encoder": "encoder.onnx", "decoder_step": "decoder_step.onnx"},
            "inputs": [{"name": "text", "dtype": "bytes", "shape": [-1]}],
            "outputs": [{"name": "translation", "dtype": "bytes", "shape": [-1]},
                        {"name": "attention", "dtype": "float32", "shape": [-1, -1, -1]}],
            "tokenizer": {"type": "sentencepiece", "source_model": "spm.model",
                          "target_model": "spm.model", "pad_id": PAD, "bos_id": BOS,
                          "eos_id": EOS, "unk_id": UNK, "add_eos_to_source": True},
            "decoding": {"default_beam_size": 3, "length_penalty": 0.6,
                         "max_length_ratio": 1.5, "max_length_offset": 2},
            "limits": {"max_source_pieces": max_source_pieces}, "serving": serving or {},
            "parity": {"max_abs_diff": 0.0}, "metrics": {}})
    return path


def publish_captioner(repository: Path, name: str = "toy-caption", size: int = 32,
                      rows: int = 4, cols: int = 4, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    words = ["<pad>", "<unk>", "<s>", "</s>", "zero", "one", "two", "three", "four", "five"]
    with VersionWriter(repository, name) as w:
        (w.path / "vocab.txt").write_text("\n".join(words) + "\n")
        onnx.save(image_encoder_graph(rows, cols, size, rng), w.path / "encoder.onnx")
        onnx.save(decoder_step_graph(len(words), rng), w.path / "decoder_step.onnx")
        _, path = w.commit({
            "task": "caption",
            "graphs": {"encoder": "encoder.onnx", "decoder_step": "decoder_step.onnx"},
            "inputs": [{"name": "pixels", "dtype": "float32", "shape": [-1, 1, size, size]}],
            "outputs": [{"name": "caption", "dtype": "bytes", "shape": [-1]},
                        {"name": "attention", "dtype": "float32",
                         "shape": [-1, -1, rows, cols]}],
            "preprocessing": {"kind": "image", "color": "grayscale", "channels": 1,
                              "height": size, "width": size, "input_range": [0, 255]},
            "grid": {"rows": rows, "cols": cols},
            "tokenizer": {"type": "vocabulary", "vocab_file": "vocab.txt", "pad_id": 0,
                          "unk_id": 1, "bos_id": 2, "eos_id": 3, "join": " "},
            "decoding": {"default_beam_size": 2, "max_length": 6},
            "parity": {"max_abs_diff": 0.0}, "metrics": {}})
    return path

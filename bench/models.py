"""Freshly initialised models of the served architectures, exported as training exports them.

Speed does not depend on the weights, so nothing here is trained. The sequence models get one
change that matters for timing: the end-of-sequence logit is pushed to -1e4, so no sentence
stops early and every decode (greedy or beam, PyTorch or onnxruntime, in-process or served)
runs exactly the requested number of steps. Comparisons are then step for step.
"""

from __future__ import annotations

import io
import random
import string
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import sentencepiece as spm
import torch

from serving.repository import VersionWriter
from training.export.caption_graphs import EncoderGraph as CaptionEncoderGraph
from training.export.caption_graphs import export_caption_graphs
from training.export.classifier_graph import INPUT_NAME, OUTPUT_NAMES, ClassifierGraph
from training.export.onnx_export import export_onnx
from training.export.seq2seq_graphs import export_translation_graphs
from training.models import build_classifier
from training.models.captioner import Captioner
from training.models.seq2seq import Seq2Seq, Seq2SeqConfig
from training.models.taggers import build_tagger
from training.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID, TranslationTokenizer

MNIST_SHAPE = (1, 28, 28)
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
TAGGER_SHAPE = (1, 64, 64)  # the multi-digit canvases of `python -m training tagger`
TAGGER_LABELS = 10
# `python -m training translate` defaults for real corpora (tatoeba-spa-eng)
TRANSLATION_VOCAB = 3000
TRANSLATION_DIMS = {"embedding_dim": 256, "hidden": 256, "encoder_hidden": 128,
                    "attention_dim": 128}
# `python -m training caption` defaults for multi-digit canvases: 64 px, 8x8 grid, 14 words
CAPTION_SHAPE = (1, 64, 64)
CAPTION_VOCAB = 14
CAPTION_BOS, CAPTION_EOS = 1, 2
NO_END = -1e4


def classifier_graph(arch: str) -> ClassifierGraph:
    """An MNIST classifier as `python -m training mnist --arch ARCH` exports it."""
    torch.manual_seed(0)
    return ClassifierGraph(build_classifier(arch, MNIST_SHAPE, 10), MNIST_MEAN,
                           MNIST_STD).eval()


def tagger_graph(arch: str = "cnn") -> ClassifierGraph:
    """A multi-label tagger with its sigmoid head, as `python -m training tagger` exports it."""
    torch.manual_seed(0)
    hidden, channels = ([64], [16, 32, 64, 64]) if arch == "cnn" else ([512, 256], [])
    model = build_tagger(arch, TAGGER_SHAPE, TAGGER_LABELS, hidden, channels)
    return ClassifierGraph(model, (0.1,), (0.3,), head="sigmoid").eval()


def export_image_graph(graph: ClassifierGraph, shape: tuple[int, int, int], path: Path) -> Path:
    # batch 2: the exporter would freeze a batch axis traced at size 1
    return export_onnx(graph, (torch.zeros(2, *shape),), path, [INPUT_NAME],
                       list(OUTPUT_NAMES), {INPUT_NAME: {0: "batch"}})


def publish_classifier(repository: Path, arch: str) -> Path:
    """bench-ARCH in the repository: a classify version the server loads like a trained one."""
    with VersionWriter(repository, f"bench-{arch}") as w:
        export_image_graph(classifier_graph(arch), MNIST_SHAPE, w.path / "model.onnx")
        _, path = w.commit({
            "task": "classify", "graphs": {"model": "model.onnx"},
            "inputs": [{"name": INPUT_NAME, "dtype": "float32", "shape": [-1, *MNIST_SHAPE]}],
            "outputs": [{"name": n, "dtype": "float32", "shape": [-1, 10]}
                        for n in OUTPUT_NAMES],
            "labels": [str(i) for i in range(10)],
            "preprocessing": {"kind": "image", "color": "grayscale", "channels": 1,
                              "height": 28, "width": 28},
            "parity": {"max_abs_diff": 0.0, "note": "benchmark model, not checked"},
            "metrics": {}})
    return path


@dataclass
class Translation:
    model: Seq2Seq
    tokenizer: TranslationTokenizer
    words: list[str]

    def sentences(self, n: int, seed: int = 0, min_words: int = 6,
                  max_words: int = 14) -> list[str]:
        """Random sentences of the tokenizer's words (one piece each), tatoeba-like lengths."""
        rng = random.Random(seed)
        return [" ".join(rng.choices(self.words, k=rng.randint(min_words, max_words)))
                for _ in range(n)]


@cache  # one per process: building the word model takes seconds
def translation(vocab: int = TRANSLATION_VOCAB, **dims: int) -> Translation:
    """The real-data translation architecture over a word-level SentencePiece model of about
    `vocab` pieces: made-up words, since speed depends on the vocabulary's size alone."""
    rng = random.Random(0)
    words = sorted({"".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 8)))
                    for _ in range(vocab)})[:vocab - 8]
    corpus = [" ".join(rng.choices(words, k=12)) for _ in range(2 * vocab)]
    sp = word_pieces(corpus, vocab)
    tokenizer = TranslationTokenizer(sp, sp, "word")
    torch.manual_seed(0)
    cfg = Seq2SeqConfig(source_vocab=tokenizer.source_vocab_size,
                        target_vocab=tokenizer.target_vocab_size,
                        **{**TRANSLATION_DIMS, **dims}, pad_id=PAD_ID)
    model = Seq2Seq(cfg).eval()
    with torch.no_grad():
        model.decoder.output.bias[EOS_ID] = NO_END
    pieces = (sp.id_to_piece(i) for i in range(sp.get_piece_size()))
    return Translation(model, tokenizer, [p[1:] for p in pieces if p.startswith("\u2581")])


def word_pieces(corpus: list[str], vocab: int) -> spm.SentencePieceProcessor:
    """A word-level model: each made-up word one piece, so a sentence has as many pieces as
    words (plus EOS), with the special ids translation uses."""
    out = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus), model_writer=out, vocab_size=vocab, model_type="word",
        hard_vocab_limit=False, pad_id=PAD_ID, unk_id=UNK_ID, bos_id=BOS_ID, eos_id=EOS_ID,
        input_sentence_size=0, shuffle_input_sentence=False, num_threads=1, minloglevel=2)
    return spm.SentencePieceProcessor(model_proto=out.getvalue())


def publish_translation(repository: Path, t: Translation, name: str = "bench-translate") -> Path:
    """The exported encoder + decoder step with the manifest the server needs (no parity)."""
    with VersionWriter(repository, name) as w:
        t.tokenizer.save(w.path)
        export_translation_graphs(t.model, w.path)
        _, path = w.commit({
            "task": "translate",
            "graphs": {"encoder": "encoder.onnx", "decoder_step": "decoder_step.onnx"},
            "inputs": [{"name": "text", "dtype": "bytes", "shape": [-1]}],
            "outputs": [{"name": "translation", "dtype": "bytes", "shape": [-1]},
                        {"name": "attention", "dtype": "float32", "shape": [-1, -1, -1]}],
            "tokenizer": t.tokenizer.manifest_entry(),
            # the ratio and offset never bind: requests set max_length, so every decode has
            # exactly that many steps
            "decoding": {"default_beam_size": 4, "length_penalty": 0.6,
                         "max_length_ratio": 10.0, "max_length_offset": 100},
            "limits": {"max_source_pieces": 100},
            "parity": {"max_abs_diff": 0.0, "note": "benchmark model, not checked"},
            "metrics": {}})
    return path


def captioner(size: int = CAPTION_SHAPE[1], channels: tuple[int, ...] = (16, 32, 64),
              feature_dim: int = 64, hidden: int = 128) -> CaptionEncoderGraph:
    """The multi-digit captioner (normalisation inside), end of caption suppressed."""
    torch.manual_seed(0)
    model = Captioner(CAPTION_SHAPE[0], (size, size), CAPTION_VOCAB, channels, feature_dim, 32,
                      hidden, 64).eval()
    with torch.no_grad():
        model.out.bias[CAPTION_EOS] = NO_END
    return CaptionEncoderGraph(model, (0.1,), (0.3,)).eval()


def export_captioner(graph: CaptionEncoderGraph, folder: Path) -> tuple[Path, Path]:
    return export_caption_graphs(graph, folder)


def images(shape: tuple[int, ...], batch: int, seed: int = 0) -> np.ndarray:
    """Raw pixel values 0..255 as float32, as clients send them."""
    return np.random.default_rng(seed).integers(0, 256, (batch, *shape)).astype(np.float32)

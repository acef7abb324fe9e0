"""SentencePiece models for translation, trained on the training split only.

One model per language (source.model, target.model), both with the same special ids so the
manifest states them once. The server builds source ids exactly as encode_source does here:
source_model.encode(text, out_type=int), then EOS appended (add_eos_to_source), no BOS.
Detokenisation is target_model.decode(ids).
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sentencepiece as spm

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
MODEL_TYPES = ("unigram", "bpe")
SOURCE_FILE, TARGET_FILE = "source.model", "target.model"
# EOS on the source gives attention a place to look that is no word (useful at the end of the
# output), and marks where the sentence stops for the backward encoder.
ADD_EOS_TO_SOURCE = True
SPECIAL_PIECES = 4  # pad, unk, bos, eos
NORMALIZATION = "nmt_nfkc"  # SentencePiece's default rule, which training keeps
# SentencePiece's trainer skips input lines longer than this (its max_sentence_length)
MAX_SENTENCE_BYTES = 4192


def train_sentencepiece(sentences: Iterable[str], vocab_size: int,
                        model_type: str = "unigram",
                        character_coverage: float = 1.0) -> spm.SentencePieceProcessor:
    """Train in memory (nothing written to disk) and return the loaded processor.

    hard_vocab_limit=False lets a small corpus (the toy grammar) end with fewer pieces than
    asked instead of failing; vocab_size is then an upper bound.
    """
    if model_type not in MODEL_TYPES:
        raise ValueError(f"unknown SentencePiece model type {model_type!r}; "
                         f"choose from {', '.join(MODEL_TYPES)}")
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences), model_writer=model, vocab_size=vocab_size,
        model_type=model_type, character_coverage=character_coverage,
        hard_vocab_limit=False, pad_id=PAD_ID, unk_id=UNK_ID, bos_id=BOS_ID, eos_id=EOS_ID,
        # every sentence, in file order, one thread: the same corpus gives the same model
        input_sentence_size=0, shuffle_input_sentence=False, num_threads=1,
        minloglevel=2)
    return spm.SentencePieceProcessor(model_proto=model.getvalue())


def minimum_vocab_size(sentences: Iterable[str]) -> int:
    """The smallest vocab_size SentencePiece trains with on these sentences, found before it
    fails with "Vocabulary size is smaller than required_chars": one piece for each distinct
    character after its normalisation (character_coverage 1.0 keeps them all, whitespace
    becomes '\u2581'), plus the special pieces. Lines the trainer skips do not count."""
    normalizer = spm.SentencePieceNormalizer(rule_name=NORMALIZATION)
    characters: set[str] = set()
    for sentence in sentences:
        if len(sentence.encode("utf-8")) <= MAX_SENTENCE_BYTES:
            characters.update(normalizer.normalize(sentence))
    return len(characters) + SPECIAL_PIECES


@dataclass
class TranslationTokenizer:
    source: spm.SentencePieceProcessor
    target: spm.SentencePieceProcessor
    model_type: str = "unigram"

    @classmethod
    def train(cls, sources: Sequence[str], targets: Sequence[str], vocab_size: int,
              model_type: str = "unigram") -> TranslationTokenizer:
        return cls(train_sentencepiece(sources, vocab_size, model_type),
                   train_sentencepiece(targets, vocab_size, model_type), model_type)

    @classmethod
    def load(cls, folder: Path) -> TranslationTokenizer:
        return cls(spm.SentencePieceProcessor(model_file=str(folder / SOURCE_FILE)),
                   spm.SentencePieceProcessor(model_file=str(folder / TARGET_FILE)))

    @property
    def source_vocab_size(self) -> int:
        return self.source.get_piece_size()

    @property
    def target_vocab_size(self) -> int:
        return self.target.get_piece_size()

    def encode_source(self, texts: Sequence[str]) -> list[list[int]]:
        return [ids + [EOS_ID] * ADD_EOS_TO_SOURCE
                for ids in self.source.encode(list(texts), out_type=int)]

    def encode_target(self, texts: Sequence[str]) -> list[list[int]]:
        """Target ids without BOS/EOS: the model adds BOS to its input and EOS to its output."""
        return self.target.encode(list(texts), out_type=int)

    def decode(self, ids: Sequence[int]) -> str:
        return self.target.decode(list(ids))

    def save(self, folder: Path) -> list[str]:
        for name, processor in ((SOURCE_FILE, self.source), (TARGET_FILE, self.target)):
            (folder / name).write_bytes(processor.serialized_model_proto())
        return [SOURCE_FILE, TARGET_FILE]

    def manifest_entry(self) -> dict[str, Any]:
        return {
            "type": "sentencepiece", "model_type": self.model_type,
            "source_model": SOURCE_FILE, "target_model": TARGET_FILE,
            "source_vocab_size": self.source_vocab_size,
            "target_vocab_size": self.target_vocab_size,
            "pad_id": PAD_ID, "bos_id": BOS_ID, "eos_id": EOS_ID, "unk_id": UNK_ID,
            "add_bos_to_source": False, "add_eos_to_source": ADD_EOS_TO_SOURCE,
            "source_ids": "source_model.encode(text, out_type=int) + [eos_id]"
            if ADD_EOS_TO_SOURCE else "source_model.encode(text, out_type=int)",
            "detokenize": "target_model.decode(ids)",
        }

"""SentencePiece for translation, and the BLEU / attention-alignment metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.data.toy_grammar import toy_splits
from training.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID, TranslationTokenizer
from training.translation_metrics import AlignmentScore, corpus_scores, piece_words


@pytest.fixture(scope="module")
def toy_tokenizer() -> TranslationTokenizer:
    splits = toy_splits((1000, 10, 10))
    return TranslationTokenizer.train(splits.train.sources, splits.train.targets, 500)


def test_ids_eos_and_round_trip(toy_tokenizer: TranslationTokenizer, tmp_path: Path) -> None:
    tok = toy_tokenizer
    assert [tok.source.pad_id(), tok.source.unk_id(), tok.source.bos_id(),
            tok.source.eos_id()] == [PAD_ID, UNK_ID, BOS_ID, EOS_ID]
    assert tok.target.eos_id() == EOS_ID and tok.target.pad_id() == PAD_ID
    ids = tok.encode_source(["el gato negro"])[0]
    assert ids[-1] == EOS_ID and ids[:-1] == tok.source.encode("el gato negro")
    assert tok.decode(tok.encode_target(["the black cat"])[0]) == "the black cat"
    assert tok.source_vocab_size < 500  # a small corpus ends below the asked size
    tok.save(tmp_path)
    loaded = TranslationTokenizer.load(tmp_path)
    assert loaded.encode_source(["los perros"]) == tok.encode_source(["los perros"])
    entry = tok.manifest_entry()
    assert entry["add_eos_to_source"] is True and entry["add_bos_to_source"] is False
    assert (entry["pad_id"], entry["bos_id"], entry["eos_id"], entry["unk_id"]) == (0, 2, 3, 1)


def test_trained_on_the_training_split_only(toy_tokenizer: TranslationTokenizer) -> None:
    # "ü" never occurs in the toy training split: it cannot have a piece of its own
    ids = toy_tokenizer.source.encode("pingüino", out_type=int)
    assert UNK_ID in ids


def test_training_is_deterministic_and_bpe_works() -> None:
    splits = toy_splits((500, 10, 10))
    a = TranslationTokenizer.train(splits.train.sources, splits.train.targets, 200, "bpe")
    b = TranslationTokenizer.train(splits.train.sources, splits.train.targets, 200, "bpe")
    assert a.source.serialized_model_proto() == b.source.serialized_model_proto()
    assert a.manifest_entry()["model_type"] == "bpe"
    with pytest.raises(ValueError, match="unknown SentencePiece model type"):
        TranslationTokenizer.train(["a"], ["b"], 10, "char-ngram")


def test_corpus_scores_and_signatures() -> None:
    refs = ["the black cat sees it", "I do not want the red apples"]
    perfect = corpus_scores(refs, refs)
    assert perfect["bleu"] == 100.0 and perfect["chrf"] == 100.0
    assert "tok:13a" in perfect["bleu_signature"] and "nc:6" in perfect["chrf_signature"]
    worse = corpus_scores(["the cat sees it", "I want red apples"], refs)
    assert 0 < worse["bleu"] < 100 and 0 < worse["chrf"] < 100


def test_piece_words() -> None:
    assert piece_words(["▁lo", "s", "▁gato", "s", "</s>"]) == [0, 0, 1, 1, -1]
    assert piece_words(["s", "▁x"]) == [0, 1]


def test_alignment_score_counts_hits_and_misses() -> None:
    source = ["▁el", "▁gato", "▁negro", "</s>"]
    target = ["▁the", "▁black", "▁c", "at"]
    # rows: target pieces; columns: source pieces
    attention = np.array([[0.7, 0.2, 0.1, 0.0],
                          [0.1, 0.2, 0.6, 0.1],
                          [0.1, 0.5, 0.3, 0.1],   # "c" + "at" together: gato wins
                          [0.1, 0.3, 0.5, 0.1]])
    score = AlignmentScore()
    score.add(attention, source, target, ["the", "black", "cat"], (0, 2, 1))
    assert (score.words, score.hits, score.exact_sentences) == (3, 3, 1)
    # attention on </s> is a miss, and so is a word that differs from the reference
    attention[0] = [0.1, 0.1, 0.1, 0.7]
    score.add(attention[:3], source, ["▁the", "▁white", "▁cat"], ["the", "black", "cat"],
              (0, 2, 1))
    assert (score.words, score.hits, score.sentences, score.exact_sentences) == (6, 4, 2, 1)
    assert score.accuracy == pytest.approx(4 / 6)

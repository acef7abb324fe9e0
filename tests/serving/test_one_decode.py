"""The server's runners and training's scoring decode through one piece of code
(serving.decoding.encoder_decoder): the same version gives the same hypotheses both ways."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from serving.decoding import EncoderDecoder, caption_images, translate_ids
from serving.repository import TranslationDecoding, verify_version
from serving.runners import load_runner
from serving.runtime.session import SessionConfig
from tests.serving.synthetic_seq2seq import publish_captioner, publish_translator

TEXTS = ["one two three", "two", "three one two one three two"]


@pytest.mark.parametrize("beam", [1, 3])
def test_a_translate_call_and_training_scoring_give_the_same_hypotheses(tmp_path, beam):
    version = publish_translator(tmp_path, max_source_pieces=40)
    runner = load_runner(version, SessionConfig(intra_op_threads=1))
    served = runner.translate(TEXTS, beam_size=beam)
    manifest = verify_version(version)
    assert isinstance(manifest.decoding, TranslationDecoding)
    decoding = replace(manifest.decoding, default_beam_size=beam)
    tok = manifest.tokenizer
    sources = runner.prepare(TEXTS).ids
    scored = translate_ids(EncoderDecoder.open(version), sources, tok.pad_id, tok.bos_id,
                           tok.eos_id, decoding, batch_size=2)
    assert [h.tokens for h in scored] == [r.target_ids for r in served]
    for h, r in zip(scored, served, strict=True):
        np.testing.assert_allclose(h.attention[:, :len(r.source_pieces)], r.attention,
                                   atol=1e-6)
        assert h.score == pytest.approx(r.score, abs=1e-5)


def test_a_caption_call_and_training_scoring_give_the_same_hypotheses(tmp_path):
    version = publish_captioner(tmp_path)
    runner = load_runner(version, SessionConfig(intra_op_threads=1))
    images = np.random.default_rng(0).integers(0, 256, (5, 1, 32, 32)).astype(np.float32)
    served = runner.caption(images, beam_size=2)
    manifest = verify_version(version)
    decoding = replace(manifest.decoding, default_beam_size=2)
    scored = caption_images(EncoderDecoder.open(version), images, manifest.tokenizer.bos_id,
                            manifest.tokenizer.eos_id, decoding, batch_size=2)
    assert [h.tokens for h in scored] == [r.token_ids for r in served]

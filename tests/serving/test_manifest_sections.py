"""The typed manifest sections: defaults written once, old manifests loading as before, a wrong
value refused at load naming its key, and one set of graph names for trainer and server."""

from __future__ import annotations

import json

import pytest

from serving.repository import (
    Calibration,
    CaptionDecoding,
    Grid,
    ImagePreprocessing,
    Manifest,
    ManifestError,
    SentencePieceTokenizer,
    TranslationDecoding,
    TranslationLimits,
    VocabularyTokenizer,
    graph_io,
)
from tests.serving.synthetic import classifier_manifest


def translate_manifest(**sections: object) -> dict:
    return {"name": "t", "task": "translate",
            "graphs": {graph_io.ENCODER: graph_io.ENCODER_FILE,
                       graph_io.DECODER_STEP: graph_io.DECODER_STEP_FILE},
            "inputs": [{"name": "text", "dtype": "bytes", "shape": [-1]}],
            "outputs": [{"name": "translation", "dtype": "bytes", "shape": [-1]}],
            "tokenizer": {"type": "sentencepiece", "source_model": "spm.model", "pad_id": 0,
                          "bos_id": 2, "eos_id": 3, "detokenize": "target_model.decode(ids)"},
            "parity": {"max_abs_diff": 0.0}, "metrics": {}, **sections}


def caption_manifest(**sections: object) -> dict:
    return {"name": "c", "task": "caption",
            "graphs": {graph_io.ENCODER: graph_io.ENCODER_FILE,
                       graph_io.DECODER_STEP: graph_io.DECODER_STEP_FILE},
            "inputs": [{"name": graph_io.PIXELS, "dtype": "float32", "shape": [-1, 1, 8, 8]}],
            "outputs": [{"name": "caption", "dtype": "bytes", "shape": [-1]}],
            "preprocessing": {"channels": 1, "height": 8, "width": 8},
            "grid": {"rows": 2, "cols": 2},
            "tokenizer": {"type": "vocabulary", "vocab_file": "vocab.txt", "bos_id": 2,
                          "eos_id": 3},
            "parity": {"max_abs_diff": 0.0}, "metrics": {}, **sections}


def test_an_old_translate_manifest_reads_with_the_defaults():
    m = Manifest.from_dict(translate_manifest())
    assert isinstance(m.tokenizer, SentencePieceTokenizer)
    assert m.tokenizer.target_file == "spm.model" and m.tokenizer.add_eos_to_source is False
    assert m.decoding == TranslationDecoding() == {"default_beam_size": 1,
                                                   "length_penalty": 0.0,
                                                   "max_length_ratio": 2.0,
                                                   "max_length_offset": 10}
    assert m.limits == TranslationLimits() and m.limits.max_source_pieces == 200
    assert m.grid is None and m.preprocessing is None and m.calibration is None
    # keys a section does not know travel through unchanged
    assert m.tokenizer.extra == {"detokenize": "target_model.decode(ids)"}
    assert m.to_dict()["tokenizer"]["detokenize"] == "target_model.decode(ids)"


def test_an_old_caption_manifest_reads_with_the_defaults():
    m = Manifest.from_dict(caption_manifest())
    assert isinstance(m.tokenizer, VocabularyTokenizer) and m.tokenizer.join == " "
    assert isinstance(m.decoding, CaptionDecoding) and m.decoding.max_length == 20
    assert m.grid == Grid(rows=2, cols=2) and m.grid.cells == 4 and m.grid["rows"] == 2
    assert m.preprocessing is not None and m.preprocessing.chw == (1, 8, 8)
    assert m.preprocessing.color == "grayscale" and m.preprocessing.input_range == [0, 255]


def test_max_target_length_is_the_servers_limit():
    decoding = TranslationDecoding(max_length_ratio=1.5, max_length_offset=2)
    assert [decoding.max_target_length(n) for n in (1, 2, 7)] == [4, 5, 13]


@pytest.mark.parametrize(("manifest", "message"), [
    (translate_manifest(decoding={"max_length_ratio": "2"}),
     "decoding.max_length_ratio must be a finite number, not str"),
    (translate_manifest(decoding={"default_beam_size": True}),
     "decoding.default_beam_size must be an integer, not bool"),
    (translate_manifest(decoding={"default_beam_size": 0}),
     "decoding.default_beam_size must be at least 1"),
    (translate_manifest(limits={"max_source_pieces": 2.5}),
     "limits.max_source_pieces must be an integer"),
    (translate_manifest(tokenizer={"type": "sentencepiece", "source_model": "spm.model",
                                   "pad_id": 0, "bos_id": 2}), "tokenizer lacks 'eos_id'"),
    (translate_manifest(tokenizer={"type": "vocabulary"}),
     "a translate model needs a sentencepiece tokenizer"),
    (caption_manifest(grid={"rows": 2}), "a caption model needs grid rows and cols"),
    (caption_manifest(grid={"rows": 2, "cols": "2"}), "grid.cols must be an integer"),
    (caption_manifest(preprocessing={"channels": 1, "height": 8}),
     "preprocessing lacks 'width'"),
    (caption_manifest(preprocessing={"channels": 1, "height": 8, "width": 8, "color": "cmyk"}),
     "preprocessing.color must be one of grayscale, rgb"),
    (caption_manifest(decoding={"max_length": 0}), "decoding.max_length must be at least 1"),
    (caption_manifest(calibration={"temperature": -1.0}),
     "calibration.temperature must be positive"),
])
def test_a_wrong_value_is_refused_at_load_naming_its_key(manifest, message):
    with pytest.raises(ManifestError, match=message):
        Manifest.from_dict(manifest)


def test_writers_may_give_sections_or_their_dicts_and_the_json_round_trips():
    built = translate_manifest(
        decoding=TranslationDecoding(default_beam_size=4, length_penalty=0.6),
        limits=TranslationLimits(max_source_pieces=100).to_dict())
    m = Manifest.from_dict(built)
    assert m.decoding == {"default_beam_size": 4, "length_penalty": 0.6,
                          "max_length_ratio": 2.0, "max_length_offset": 10}
    again = Manifest.from_dict(json.loads(m.to_json()))
    assert again.to_dict() == m.to_dict()
    assert again.limits is not None and again.limits.max_source_pieces == 100


def test_sections_a_task_does_not_read_travel_unread():
    d = {**classifier_manifest(), "name": "m"}
    d["decoding"] = {"default_beam_size": "not a classifier's concern"}
    d["calibration"] = Calibration(temperature=1.3, kept=True, reason="why").to_dict()
    m = Manifest.from_dict(d)
    assert m.decoding is None and m.extra["decoding"] == d["decoding"]
    assert m.calibration is not None and m.calibration.temperature == 1.3
    assert isinstance(m.preprocessing, ImagePreprocessing)
    assert m.to_dict()["decoding"] == d["decoding"]
    assert "grid" not in m.to_dict() and "tokenizer" not in m.to_dict()


def test_an_image_model_needs_its_image_geometry():
    d = {**classifier_manifest(), "name": "m"}
    del d["preprocessing"]
    with pytest.raises(ManifestError, match="needs preprocessing"):
        Manifest.from_dict(d)


def test_training_exports_the_names_the_server_reads():
    from training.export import caption_graphs, classifier_graph, decoder_step, seq2seq_graphs

    assert seq2seq_graphs.ENCODER_INPUTS == graph_io.TEXT_ENCODER_INPUTS
    assert caption_graphs.ENCODER_INPUTS == graph_io.IMAGE_ENCODER_INPUTS
    assert decoder_step.STEP_INPUTS == graph_io.STEP_INPUTS
    assert decoder_step.STEP_OUTPUTS == graph_io.STEP_OUTPUTS
    assert classifier_graph.OUTPUT_NAMES == graph_io.IMAGE_OUTPUTS
    assert seq2seq_graphs.DECODER_FILE == caption_graphs.DECODER_FILE == \
        graph_io.DECODER_STEP_FILE

"""Greedy and beam search over one decoder step, shared by translation and captioning, and the
decode over a version's encoder and decoder-step graphs that the server and training run."""

from serving.decoding.encoder_decoder import (
    MAX_BEAM_SIZE,
    Encoded,
    EncoderDecoder,
    caption_images,
    length_batches,
    new_search,
    translate_ids,
)
from serving.decoding.greedy import greedy_decode
from serving.decoding.search import Hypothesis, StepFn, beam_search, run_search

__all__ = ["MAX_BEAM_SIZE", "Encoded", "EncoderDecoder", "Hypothesis", "StepFn", "beam_search",
           "caption_images", "greedy_decode", "length_batches", "new_search", "run_search",
           "translate_ids"]

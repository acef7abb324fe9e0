"""Greedy and beam search over one decoder step, shared by translation and captioning."""

from serving.decoding.search import Hypothesis, StepFn, beam_search, greedy_decode

__all__ = ["Hypothesis", "StepFn", "beam_search", "greedy_decode"]

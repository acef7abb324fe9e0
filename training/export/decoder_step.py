"""The decoder-step graph both sequence models export (translation and captioning): one step of
the model's own `step`, with log_softmax inside, so the server searches over log-probabilities.

Each model provides `step(prev_ids, state, memory, mask) -> (logits, new_state, attention)`;
a model whose encoder graph serves more than its memory (translation: the attention keys too)
passes the step that reads that instead.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from serving.decoding import StepFn
from serving.repository.graph_io import (
    ATTENTION,
    LOG_PROBS,
    MEMORY,
    NEW_STATE,
    PREV_IDS,
    SRC_MASK,
    STATE,
    STEP_INPUTS,
    STEP_OUTPUTS,
)

__all__ = ["STEP_INPUTS", "STEP_OUTPUTS", "DecoderStepGraph", "step_axes", "torch_step"]
Axes = dict[str, dict[int, str]]


class DecoderStepGraph(nn.Module):
    def __init__(self, model: nn.Module, step: Callable[..., tuple[torch.Tensor, ...]] | None
                 = None) -> None:
        super().__init__()
        self.model = model
        self.step = step or model.step

    def forward(self, prev_ids: torch.Tensor, state: torch.Tensor, memory: torch.Tensor,
                src_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits, new_state, attention = self.step(prev_ids, state, memory, src_mask)
        return torch.log_softmax(logits, dim=-1), new_state, attention


def step_axes(source_axes: dict[int, str]) -> tuple[Axes, Axes]:
    """The step's dynamic axes (inputs, outputs): the batch everywhere, and source_axes on
    what runs along the source (memory, mask, attention)."""
    batch = {0: "batch"}
    return ({PREV_IDS: batch, STATE: batch, MEMORY: source_axes, SRC_MASK: source_axes},
            {LOG_PROBS: batch, NEW_STATE: batch, ATTENTION: source_axes})


def torch_step(model: nn.Module,
               step: Callable[..., tuple[torch.Tensor, ...]] | None = None) -> StepFn:
    """The PyTorch decoder step as a numpy StepFn, for the search code shared with serving."""
    graph = DecoderStepGraph(model, step).eval()

    @torch.no_grad()
    def step(prev: np.ndarray, state: np.ndarray, memory: np.ndarray,
             mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        out = graph(*(torch.from_numpy(np.ascontiguousarray(a))
                      for a in (prev, state, memory, mask)))
        return tuple(o.numpy() for o in out)  # type: ignore[return-value]

    return step

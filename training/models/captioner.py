"""Show, Attend and Tell (Xu et al. 2015), small: a CNN feature grid, an LSTM decoder with
additive attention over the grid cells and a gate on the context.

The decoder is written as ONE step, `step(prev_ids, state, memory, mask)`, used unchanged by
teacher forcing, by the exported decoder_step graph and by the search; so what is trained is what
is served. The LSTM's (h, c) travel as one state tensor [batch, 2 * hidden].
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from training.models.attention import AdditiveAttention


class GridEncoder(nn.Module):
    """conv3x3 -> BN -> ReLU -> 2x2 max pool per stage, then a 3x3 conv at grid resolution
    (context across neighbouring cells) and a learned embedding per cell.

    The cell embedding tells the decoder WHERE a feature is (convolutions are translation
    invariant); reading digits left to right needs exactly that.
    """

    def __init__(self, in_channels: int, image_size: tuple[int, int],
                 channels: Sequence[int] = (16, 32, 64), feature_dim: int = 64) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for out in channels:
            layers += [nn.Conv2d(c, out, 3, padding=1, bias=False), nn.BatchNorm2d(out),
                       nn.ReLU(), nn.MaxPool2d(2)]
            c = out
        layers += [nn.Conv2d(c, feature_dim, 3, padding=1, bias=False),
                   nn.BatchNorm2d(feature_dim), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        scale = 2 ** len(channels)
        h, w = image_size
        if h % scale or w % scale:
            raise ValueError(f"{h}x{w} images do not divide into a grid after {len(channels)} "
                             f"halvings; use sides that are multiples of {scale}")
        self.image_size = (h, w)
        self.grid = (h // scale, w // scale)
        self.position = nn.Parameter(torch.zeros(1, self.grid[0] * self.grid[1], feature_dim))
        self.feature_dim = feature_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """normalised images (B, C, H, W) -> memory (B, rows * cols, feature_dim), row-major."""
        f = self.features(x)
        return f.flatten(2).transpose(1, 2) + self.position


class Captioner(nn.Module):
    def __init__(self, in_channels: int, image_size: tuple[int, int], vocab_size: int,
                 channels: Sequence[int] = (16, 32, 64), feature_dim: int = 64,
                 embed_dim: int = 32, hidden: int = 128, attention_dim: int = 64,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.encoder = GridEncoder(in_channels, image_size, channels, feature_dim)
        self.hidden = hidden
        self.init_state = nn.Linear(feature_dim, 2 * hidden)  # mean feature -> (h0, c0)
        self.embed = nn.Embedding(vocab_size, embed_dim)
        # Bahdanau's additive attention over the cells, queried by h
        self.attention = AdditiveAttention(hidden, feature_dim, attention_dim, query_bias=True)
        self.gate = nn.Linear(hidden, feature_dim)  # beta = sigmoid(f(h)): how much to look
        self.cell = nn.LSTMCell(embed_dim + feature_dim, hidden)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden + feature_dim + embed_dim, vocab_size)  # deep output

    @property
    def grid(self) -> tuple[int, int]:
        return self.encoder.grid

    @property
    def state_dim(self) -> int:
        return 2 * self.hidden

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """normalised images -> (memory [B, cells, F], initial state [B, 2 * hidden])."""
        memory = self.encoder(x)
        return memory, torch.tanh(self.init_state(memory.mean(dim=1)))

    def step(self, prev_ids: torch.Tensor, state: torch.Tensor, memory: torch.Tensor,
             mask: torch.Tensor, keys: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> (logits [B, V], new state [B, 2 * hidden], attention [B, cells]).
        keys: attention.keys(memory), when the caller computed them once for every step."""
        h, c = state[:, :self.hidden], state[:, self.hidden:]
        context, weights = self.attention(h, memory, mask, keys)
        context = torch.sigmoid(self.gate(h)) * context
        emb = self.dropout(self.embed(prev_ids))
        h, c = self.cell(torch.cat([emb, context], dim=1), (h, c))
        logits = self.out(self.dropout(torch.cat([h, context, emb], dim=1)))
        return logits, torch.cat([h, c], dim=1), weights

    def forward(self, x: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher forcing: tokens [B, T] = <bos> w1 .. <eos> <pad>..; predicts tokens[:, 1:].

        -> (logits [B, T-1, V], attention [B, T-1, cells])."""
        memory, state = self.encode(x)
        mask = torch.ones(memory.shape[:2], dtype=torch.bool, device=memory.device)
        # the memory side of the scores once for all steps (1.17x faster training steps); the
        # exported step computes them itself: passing them from the encoder graph measured no
        # faster in onnxruntime (the search then copies a memory twice as wide)
        keys = self.attention.keys(memory)
        logits, weights = [], []
        for t in range(tokens.shape[1] - 1):
            step_logits, state, att = self.step(tokens[:, t], state, memory, mask, keys)
            logits.append(step_logits)
            weights.append(att)
        return torch.stack(logits, 1), torch.stack(weights, 1)


def doubly_stochastic_penalty(attention: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Xu et al.'s regulariser sum_cells (1 - sum_t alpha_t,cell)^2, averaged over images.

    attention [B, T, cells]; valid [B, T] marks real steps (words and <eos>, not padding).
    It pushes every cell to receive, over the whole caption, about as much attention as any
    other, so the decoder looks at all of the image rather than one spot.
    """
    total = (attention * valid.unsqueeze(-1).to(attention.dtype)).sum(dim=1)
    return ((1.0 - total) ** 2).sum(dim=1).mean()


def caption_loss(logits: torch.Tensor, targets: torch.Tensor,
                 pad_id: int) -> tuple[torch.Tensor, int]:
    """(cross-entropy per non-pad target token, number of such tokens)."""
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                           ignore_index=pad_id, reduction="sum")
    n = int((targets != pad_id).sum())
    return loss / max(n, 1), n

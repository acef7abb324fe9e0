"""Attention encoder-decoder (Bahdanau et al. 2014; Luong et al. 2015), JoeyNMT-style.

    source ids -> embedding -> bidirectional GRU/LSTM          -> memory [B, S, 2 He]
    final states of both directions -> bridge (linear + tanh)  -> decoder initial state
    decoder step t:  h_t = RNN(h_{t-1}, [embed(y_{t-1}) (; u_{t-1} with input feeding)])
                     c_t, w_t = attention(h_t, memory, mask)
                     u_t = tanh(W [h_t; c_t])                  (context with the state)
                     p(y_t) = softmax(V dropout(u_t))

The weights w_t are the ones that produced y_t, which is what the server returns per token.
The whole decoder state travels as ONE flat tensor [B, state_dim] so the exported step graph
has a single state input and output whatever the RNN: GRU layers' h, LSTM layers' (h, c), and
u_{t-1} when input feeding is on.

The backward direction of the encoder runs a forward RNN over each sentence reversed within its
own length, so right padding never reaches a real position in either direction: a sentence is
encoded the same alone or padded in a batch, in PyTorch and in the exported graph alike (no
packed sequences, which ONNX cannot express).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from training.models.attention import build_attention

RNN_TYPES = ("gru", "lstm")


@dataclass(frozen=True)
class Seq2SeqConfig:
    source_vocab: int
    target_vocab: int
    embedding_dim: int = 256
    hidden: int = 256  # decoder state size
    encoder_hidden: int = 128  # per direction; memory size is twice this
    layers: int = 1
    rnn: str = "gru"
    attention: str = "additive"
    attention_dim: int = 256  # additive attention's hidden layer
    dropout: float = 0.2
    input_feeding: bool = False
    tie_embeddings: bool = False  # output layer shares the target embedding (Press & Wolf)
    pad_id: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _rnn(kind: str, input_size: int, hidden: int, layers: int = 1,
         dropout: float = 0.0) -> nn.RNNBase:
    if kind not in RNN_TYPES:
        raise ValueError(f"unknown rnn {kind!r}; choose from {', '.join(RNN_TYPES)}")
    cls = nn.GRU if kind == "gru" else nn.LSTM
    return cls(input_size, hidden, num_layers=layers, batch_first=True,
               dropout=dropout if layers > 1 else 0.0)


def source_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """[B, S] bool, True on the real positions of right-padded sentences."""
    return torch.arange(max_len, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each row's first lengths[b] steps, leave its padding in place (an involution)."""
    pos = torch.arange(x.shape[1], device=x.device).unsqueeze(0)
    last = lengths.unsqueeze(1) - 1
    index = torch.where(pos <= last, last - pos, pos)
    return x.gather(1, index.unsqueeze(-1).expand_as(x))


class RecurrentEncoder(nn.Module):
    def __init__(self, cfg: Seq2SeqConfig) -> None:
        super().__init__()
        self.embed = nn.Embedding(cfg.source_vocab, cfg.embedding_dim, padding_idx=cfg.pad_id)
        sizes = [cfg.embedding_dim] + [2 * cfg.encoder_hidden] * (cfg.layers - 1)
        self.forward_rnns = nn.ModuleList(_rnn(cfg.rnn, n, cfg.encoder_hidden) for n in sizes)
        self.backward_rnns = nn.ModuleList(_rnn(cfg.rnn, n, cfg.encoder_hidden) for n in sizes)
        self.dropout = nn.Dropout(cfg.dropout)
        self.output_dim = 2 * cfg.encoder_hidden

    def forward(self, src: torch.Tensor,
                lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """src [B, S], lengths [B] -> (memory [B, S, 2 He] zero on padding, mask [B, S],
        final [B, 2 He]: the forward direction at the last real step, the backward at the first).
        """
        mask = source_mask(lengths, src.shape[1])
        x = self.dropout(self.embed(src))
        for i, (fwd, bwd) in enumerate(zip(self.forward_rnns, self.backward_rnns, strict=True)):
            if i:
                x = self.dropout(x)
            ahead, _ = fwd(x)
            behind, _ = bwd(reverse_padded(x, lengths))
            x = torch.cat([ahead, reverse_padded(behind, lengths)], dim=-1)
        memory = x * mask.unsqueeze(-1).to(x.dtype)
        last = (lengths - 1).view(-1, 1, 1).expand(-1, 1, x.shape[-1] // 2)
        final_forward = memory[..., :x.shape[-1] // 2].gather(1, last).squeeze(1)
        final = torch.cat([final_forward, memory[:, 0, x.shape[-1] // 2:]], dim=-1)
        return memory, mask, final


class RecurrentDecoder(nn.Module):
    def __init__(self, cfg: Seq2SeqConfig, memory_dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.target_vocab, cfg.embedding_dim, padding_idx=cfg.pad_id)
        rnn_input = cfg.embedding_dim + (cfg.hidden if cfg.input_feeding else 0)
        self.rnn = _rnn(cfg.rnn, rnn_input, cfg.hidden, cfg.layers, cfg.dropout)
        self.attention = build_attention(cfg.attention, cfg.hidden, memory_dim, cfg.attention_dim)
        self.combine = nn.Linear(cfg.hidden + memory_dim, cfg.hidden)
        self.output = nn.Linear(cfg.hidden, cfg.target_vocab)
        if cfg.tie_embeddings:
            if cfg.embedding_dim != cfg.hidden:
                raise ValueError(f"tied embeddings need embedding_dim == hidden, got "
                                 f"{cfg.embedding_dim} and {cfg.hidden}")
            self.output.weight = self.embed.weight
        self.dropout = nn.Dropout(cfg.dropout)

    # the flat state: [h of every layer | c of every layer (LSTM) | u_{t-1} (input feeding)]
    @property
    def rnn_state_dim(self) -> int:
        return self.cfg.layers * self.cfg.hidden * (2 if self.cfg.rnn == "lstm" else 1)

    @property
    def state_dim(self) -> int:
        return self.rnn_state_dim + (self.cfg.hidden if self.cfg.input_feeding else 0)

    def _to_layers(self, flat: torch.Tensor) -> torch.Tensor:
        """[B, L * H] -> [L, B, H], the layout nn.GRU / nn.LSTM take."""
        return flat.unflatten(1, (self.cfg.layers, self.cfg.hidden)).transpose(0, 1)

    @staticmethod
    def _from_layers(h: torch.Tensor) -> torch.Tensor:
        return h.transpose(0, 1).flatten(1)

    def unpack(self, state: torch.Tensor) -> tuple[Any, torch.Tensor | None]:
        n = self.cfg.layers * self.cfg.hidden
        if self.cfg.rnn == "lstm":
            rnn_state: Any = (self._to_layers(state[:, :n]).contiguous(),
                              self._to_layers(state[:, n:2 * n]).contiguous())
        else:
            rnn_state = self._to_layers(state[:, :n]).contiguous()
        feed = state[:, self.rnn_state_dim:] if self.cfg.input_feeding else None
        return rnn_state, feed

    def pack(self, rnn_state: Any, feed: torch.Tensor | None) -> torch.Tensor:
        parts = [self._from_layers(h) for h in
                 (rnn_state if isinstance(rnn_state, tuple) else (rnn_state,))]
        if feed is not None:
            parts.append(feed)
        return torch.cat(parts, dim=-1)

    def readout(self, hidden: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor,
                keys: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """hidden [B, T, H] -> (logits [B, T, V], u [B, T, H], weights [B, T, S])."""
        context, weights = self.attention(hidden, memory, mask, keys)
        u = torch.tanh(self.combine(torch.cat([hidden, context], dim=-1)))
        return self.output(self.dropout(u)), u, weights

    def step(self, prev_ids: torch.Tensor, state: torch.Tensor, memory: torch.Tensor,
             mask: torch.Tensor, keys: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One token: prev_ids [B] -> (logits [B, V], new state [B, D], weights [B, S]).
        keys: attention.keys(memory), computed once per source by a step-by-step caller."""
        rnn_state, feed = self.unpack(state)
        x = self.dropout(self.embed(prev_ids)).unsqueeze(1)
        if feed is not None:
            x = torch.cat([x, feed.unsqueeze(1)], dim=-1)
        hidden, rnn_state = self.rnn(x, rnn_state)
        logits, u, weights = self.readout(hidden, memory, mask, keys)
        new_feed = u.squeeze(1) if feed is not None else None
        return logits.squeeze(1), self.pack(rnn_state, new_feed), weights.squeeze(1)

    def forward(self, tgt_in: torch.Tensor, state: torch.Tensor, memory: torch.Tensor,
                mask: torch.Tensor,
                teacher_forcing: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """tgt_in [B, T] = BOS y_1 .. y_{T-1} -> (logits [B, T, V], weights [B, T, S]).

        With full teacher forcing and no input feeding every step's input is known, so the
        RNN runs over the whole sequence in one call (much faster than a Python loop); the
        step-by-step path computes the same function (tested).
        """
        if teacher_forcing >= 1.0 and not self.cfg.input_feeding:
            rnn_state, _ = self.unpack(state)
            hidden, _ = self.rnn(self.dropout(self.embed(tgt_in)), rnn_state)
            logits, _, weights = self.readout(hidden, memory, mask)
            return logits, weights
        logits_steps, weight_steps = [], []
        prev = tgt_in[:, 0]
        for t in range(tgt_in.shape[1]):
            logits, state, weights = self.step(prev, state, memory, mask)
            logits_steps.append(logits)
            weight_steps.append(weights)
            if t + 1 < tgt_in.shape[1]:
                prev = tgt_in[:, t + 1]
                if teacher_forcing < 1.0:
                    # scheduled sampling: each sentence feeds its own prediction with
                    # probability 1 - teacher_forcing
                    own = torch.rand(prev.shape, device=prev.device) >= teacher_forcing
                    prev = torch.where(own, logits.argmax(dim=-1), prev)
        return torch.stack(logits_steps, 1), torch.stack(weight_steps, 1)


class Seq2Seq(nn.Module):
    def __init__(self, cfg: Seq2SeqConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = RecurrentEncoder(cfg)
        self.decoder = RecurrentDecoder(cfg, self.encoder.output_dim)
        self.bridge = nn.Linear(self.encoder.output_dim, self.decoder.rnn_state_dim)

    @property
    def memory_dim(self) -> int:
        return self.encoder.output_dim

    @property
    def state_dim(self) -> int:
        return self.decoder.state_dim

    def encode(self, src: torch.Tensor,
               lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> (memory [B, S, M], mask [B, S], initial decoder state [B, state_dim])."""
        memory, mask, final = self.encoder(src, lengths)
        state = torch.tanh(self.bridge(final))
        if self.cfg.input_feeding:
            # no len(state): the exporter would freeze the batch size it was traced with
            feed = torch.zeros_like(state[:, :1]).expand(-1, self.cfg.hidden)
            state = torch.cat([state, feed], dim=-1)
        return memory, mask, state

    def step(self, prev_ids: torch.Tensor, state: torch.Tensor, memory: torch.Tensor,
             mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.decoder.step(prev_ids, state, memory, mask)

    # What the exported graphs pass from the encoder to every decoder step: the memory and,
    # when the attention has any, its keys, concatenated on the last axis [B, S, M + K]. The
    # search treats it as one opaque tensor (expanded per beam, rows dropped), so keys are
    # computed once per source instead of once per step and beam.
    def served_memory(self, memory: torch.Tensor) -> torch.Tensor:
        attention = self.decoder.attention
        return torch.cat([memory, attention.keys(memory)], dim=-1) \
            if attention.caches_keys else memory

    def served_step(self, prev_ids: torch.Tensor, state: torch.Tensor, served: torch.Tensor,
                    mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """step() over served_memory(memory)."""
        if not self.decoder.attention.caches_keys:
            return self.step(prev_ids, state, served, mask)
        memory, keys = served[..., :self.memory_dim], served[..., self.memory_dim:]
        return self.decoder.step(prev_ids, state, memory, mask, keys)

    def forward(self, src: torch.Tensor, lengths: torch.Tensor, tgt_in: torch.Tensor,
                teacher_forcing: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        memory, mask, state = self.encode(src, lengths)
        return self.decoder(tgt_in, state, memory, mask, teacher_forcing)

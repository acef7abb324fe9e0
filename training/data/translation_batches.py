"""Mini-batches of sentence pairs for teacher forcing, grouped by length to save padding."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from training.distributed import World, shard, world

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
POOL_BATCHES = 50  # sort this many batches' worth of pairs by length, then cut


def make_batch(sources: Sequence[Sequence[int]], targets: Sequence[Sequence[int]], pad_id: int,
               bos_id: int, eos_id: int, device: torch.device | str = "cpu") -> Batch:
    """-> src [B, S] right-padded, src_lengths [B], tgt_in [B, T] = BOS y.., tgt_out [B, T] =
    y.. EOS (padded with pad_id, which the loss ignores)."""
    n = len(sources)
    s_len = max(len(s) for s in sources)
    t_len = max(len(t) for t in targets) + 1
    src = torch.full((n, s_len), pad_id, dtype=torch.int64)
    tgt_in = torch.full((n, t_len), pad_id, dtype=torch.int64)
    tgt_out = torch.full((n, t_len), pad_id, dtype=torch.int64)
    for i, (s, t) in enumerate(zip(sources, targets, strict=True)):
        src[i, :len(s)] = torch.tensor(s, dtype=torch.int64)
        tgt_in[i, :len(t) + 1] = torch.tensor([bos_id, *t], dtype=torch.int64)
        tgt_out[i, :len(t) + 1] = torch.tensor([*t, eos_id], dtype=torch.int64)
    lengths = torch.tensor([len(s) for s in sources], dtype=torch.int64)
    return src.to(device), lengths.to(device), tgt_in.to(device), tgt_out.to(device)


class TranslationBatches:
    """batches(epoch) -> that epoch's batches, reproducible from (seed, epoch).

    Pairs are shuffled, sorted by length within pools of POOL_BATCHES batches (so a batch
    holds similar lengths and little padding), cut into batches, and the batches shuffled.
    Under torchrun every process builds the same global batches and keeps its shard of each.
    """

    def __init__(self, sources: Sequence[Sequence[int]], targets: Sequence[Sequence[int]],
                 batch_size: int, seed: int, pad_id: int, bos_id: int, eos_id: int,
                 device: torch.device | str = "cpu", current: World | None = None) -> None:
        if not sources or len(sources) != len(targets):
            raise ValueError("need equally many (and some) sources and targets")
        self.sources, self.targets = sources, targets
        self.batch_size, self.seed = batch_size, seed
        self.ids = (pad_id, bos_id, eos_id)
        self.device = device
        self.world = current if current is not None else world()

    def __call__(self, epoch: int) -> list[Batch]:
        return list(self._batches(epoch))

    def _batches(self, epoch: int) -> Iterator[Batch]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        order = torch.randperm(len(self.sources), generator=generator).tolist()
        pool = self.batch_size * POOL_BATCHES
        chunks = []
        for start in range(0, len(order), pool):
            part = sorted(order[start:start + pool],
                          key=lambda i: (len(self.sources[i]), len(self.targets[i])))
            chunks += [part[i:i + self.batch_size] for i in range(0, len(part),
                                                                  self.batch_size)]
        for k in torch.randperm(len(chunks), generator=generator).tolist():
            chunk = shard(chunks[k], self.world)
            yield make_batch([self.sources[i] for i in chunk], [self.targets[i] for i in chunk],
                             *self.ids, device=self.device)
